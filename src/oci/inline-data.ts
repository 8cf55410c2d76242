import { type DigestAlgorithm, digestOf } from './digest.ts';

/**
 * A descriptor's `data` member as the manifest has it (any JSON value), with where the descriptor is and
 * what the data must agree with. The digest is one `parseDescriptor` accepted (supported algorithm).
 */
export interface InlinedDescriptor {
  /** Where the descriptor is in the manifest: `config`, `layers[3]`, `manifests[0]`, `subject`. */
  where: string;
  digest: string;
  size: number;
  data: unknown;
}

/** Why a descriptor's `data` cannot be the content it references. */
export type InlineDataProblem =
  | { kind: 'type'; type: string }
  | { kind: 'encoding'; reason: string }
  | { kind: 'size'; decoded: number }
  | { kind: 'digest'; computed: string };

/**
 * Checks `data` against its descriptor: a string of standard base64 with padding (RFC 4648 §4), in its
 * canonical form, that decodes to exactly `size` bytes hashing to `digest`. The spec says the data MUST
 * be identical to the referenced content; anything else is a manifest that contradicts itself.
 *
 * Canonical means what `Buffer#toString('base64')` writes: Node's decoder takes the URL-safe alphabet,
 * whitespace, missing padding and stray bits after the last byte, and so do some clients', but Go's
 * `encoding/json` refuses the first and third, and Rust's `base64` crate the last. One linear decode, one
 * linear re-encode and one hash per descriptor: no lookups keyed by the data, no backtracking pattern.
 */
export function checkInlineData(descriptor: InlinedDescriptor): InlineDataProblem | undefined {
  const { data, digest, size } = descriptor;
  if (typeof data !== 'string') return { kind: 'type', type: data === null ? 'null' : typeof data };
  const bytes = Buffer.from(data, 'base64');
  if (bytes.toString('base64') !== data) return { kind: 'encoding', reason: encodingFault(data) };
  if (bytes.length !== size) return { kind: 'size', decoded: bytes.length };
  const algorithm = digest.slice(0, digest.indexOf(':')) as DigestAlgorithm;
  const computed = digestOf(algorithm, bytes);
  return computed === digest ? undefined : { kind: 'digest', computed };
}

/** What makes `data` other than canonical standard base64; only called once it is known not to be. */
function encodingFault(data: string): string {
  if (/[-_]/.test(data)) return 'it uses the URL-safe alphabet (- or _), not + and /';
  if (/\s/.test(data)) return 'it contains whitespace';
  if (/[^A-Za-z0-9+/=]/.test(data)) return 'it contains characters outside the base64 alphabet';
  if (data.length % 4 !== 0) return 'it is not padded with = to a multiple of 4 characters';
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(data))
    return 'it has = other than as one or two padding characters at the end';
  return 'its last character carries bits past the end of the data (not the canonical encoding)';
}
