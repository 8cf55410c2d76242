import { Transform, type TransformCallback } from 'node:stream';
import { createHasher, tryParseDigest } from '../oci/digest.ts';
import { ClientError } from './errors.ts';

export class ContentMismatchError extends ClientError {
  override name = 'ContentMismatchError';
}

/**
 * A pass-through that hashes what flows and fails the stream (instead of ending it) when the content
 * is longer or shorter than `size` or does not hash to `digest`. Consumers therefore never see a clean
 * end for bad bytes: a file being written is discarded, an upload being fed is aborted.
 */
export function verifying(digest: string, size: number | undefined, what = `blob ${digest}`): Transform {
  const parsed = tryParseDigest(digest);
  if (!parsed) throw new ContentMismatchError(`${digest} is not a supported digest`);
  const hash = createHasher(parsed.algorithm);
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      if (size !== undefined && seen > size) {
        callback(new ContentMismatchError(`${what}: more than the ${size} bytes its descriptor says`));
        return;
      }
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      if (size !== undefined && seen !== size) {
        callback(new ContentMismatchError(`${what}: ${seen} bytes, its descriptor says ${size}`));
        return;
      }
      const actual = `${parsed.algorithm}:${hash.digest('hex')}`;
      if (actual !== digest) {
        callback(new ContentMismatchError(`${what}: content hashes to ${actual}`));
        return;
      }
      callback();
    },
  });
}

/** Counts bytes as they pass, for progress reporting. */
export function counting(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      onBytes(chunk.length);
      callback(null, chunk);
    },
  });
}
