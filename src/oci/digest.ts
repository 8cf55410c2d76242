import { createHash, type Hash } from 'node:crypto';
import { errors } from './errors.ts';

/** Algorithms Tether can verify. The spec's grammar allows more; we refuse what we cannot check. */
export type DigestAlgorithm = 'sha256' | 'sha512';

const ENCODED_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };
const GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const LOWER_HEX = /^[a-f0-9]+$/;

export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
  /** `algorithm:hex`, the canonical string. */
  value: string;
}

export function isSupportedAlgorithm(alg: string): alg is DigestAlgorithm {
  return alg === 'sha256' || alg === 'sha512';
}

/** Parses a digest string, or returns undefined when it does not follow the grammar or is unsupported. */
export function tryParseDigest(value: string): Digest | undefined {
  if (value.length > 200 || !GRAMMAR.test(value)) return undefined;
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (!isSupportedAlgorithm(algorithm)) return undefined;
  if (hex.length !== ENCODED_LENGTH[algorithm] || !LOWER_HEX.test(hex)) return undefined;
  return { algorithm, hex, value };
}

/** Parses a digest or throws 400 DIGEST_INVALID. */
export function parseDigest(value: string): Digest {
  const digest = tryParseDigest(value);
  if (!digest) throw errors.digestInvalid('invalid or unsupported digest', { digest: value.slice(0, 200) });
  return digest;
}

/** True when the string looks like a digest at all (grammar only), used to tell digests from tags. */
export function looksLikeDigest(value: string): boolean {
  return value.includes(':');
}

export function createHasher(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm);
}

export function digestOf(algorithm: DigestAlgorithm, bytes: Uint8Array): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}
