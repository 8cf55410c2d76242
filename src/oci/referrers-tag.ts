import type { Digest } from './digest.ts';

/**
 * The referrers tag schema (distribution-spec main, PR #563): algorithm truncated to 32 characters, `-`,
 * encoded part truncated to 64, characters a tag may not hold replaced by `-`.
 */
export function referrersTagFor(digest: Pick<Digest, 'algorithm' | 'hex'>): string {
  const raw = `${digest.algorithm.slice(0, 32)}-${digest.hex.slice(0, 64)}`;
  return raw.replace(/[^a-zA-Z0-9._-]/g, '-');
}

const REFERRERS_TAG = /^(sha256|sha512)-([a-f0-9]{64})$/;

/**
 * Recognises a referrers-schema tag of an algorithm Tether verifies. Returns the subject digest prefix it
 * stands for: the whole digest for sha256, the first 64 hex characters for sha512 (the schema truncates).
 */
export function parseReferrersTag(tag: string): { digestPrefix: string; complete: boolean } | undefined {
  const m = REFERRERS_TAG.exec(tag);
  if (!m) return undefined;
  return { digestPrefix: `${m[1]}:${m[2]}`, complete: m[1] === 'sha256' };
}
