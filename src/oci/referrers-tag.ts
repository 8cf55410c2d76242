import type { Digest } from './digest.ts';

/**
 * The referrers tag schema (distribution-spec main, PR #563): algorithm truncated to 32 characters, `-`,
 * encoded part truncated to 64, characters a tag may not hold replaced by `-`.
 */
export function referrersTagFor(digest: Pick<Digest, 'algorithm' | 'hex'>): string {
  const raw = `${digest.algorithm.slice(0, 32)}-${digest.hex.slice(0, 64)}`;
  return raw.replace(/[^a-zA-Z0-9._-]/g, '-');
}
