import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHasher, tryParseDigest } from '../oci/digest.ts';
import type { BlobSource } from './blob-source.ts';
import { type BodySink, tap } from './body-sink.ts';
import { ClientError } from './errors.ts';

export class ContentMismatchError extends ClientError {
  override name = 'ContentMismatchError';
}

/**
 * Checks content as it passes: `update` fails as soon as there are more bytes than `size`, `finish`
 * unless the total is `size` and hashes to `digest`.
 */
export class ContentCheck {
  readonly #digest: string;
  readonly #size: number | undefined;
  readonly #what: string;
  readonly #algorithm: string;
  readonly #hash: ReturnType<typeof createHasher>;
  #seen = 0;

  constructor(digest: string, size: number | undefined, what = `blob ${digest}`) {
    const parsed = tryParseDigest(digest);
    if (!parsed) throw new ContentMismatchError(`${digest} is not a supported digest`);
    this.#digest = digest;
    this.#size = size;
    this.#what = what;
    this.#algorithm = parsed.algorithm;
    this.#hash = createHasher(parsed.algorithm);
  }

  update(chunk: Uint8Array): void {
    this.#seen += chunk.length;
    if (this.#size !== undefined && this.#seen > this.#size)
      throw new ContentMismatchError(`${this.#what}: more than the ${this.#size} bytes its descriptor says`);
    this.#hash.update(chunk);
  }

  /**
   * `pour`, with every byte it lends checked on the way: it fails unless the whole content matches.
   * When the size is known, the content is checked whole before its last chunk is handed on, so a sink
   * never receives all of content that does not match (the lent chunks cannot be held back, as
   * `verifying` holds its own: the source refills them): an upload fed from here stops short instead of
   * racing the registry's own DIGEST_INVALID.
   */
  checking(pour: (sink: BodySink) => Promise<void>): (sink: BodySink) => Promise<void> {
    return async (sink) => {
      let finished = false;
      await pour({
        write: (chunk) => {
          this.update(chunk);
          if (this.#seen === this.#size && chunk.length > 0) {
            this.finish();
            finished = true;
          }
          return sink.write(chunk);
        },
      });
      if (!finished) this.finish();
    };
  }

  finish(): void {
    if (this.#size !== undefined && this.#seen !== this.#size)
      throw new ContentMismatchError(`${this.#what}: ${this.#seen} bytes, its descriptor says ${this.#size}`);
    const actual = `${this.#algorithm}:${this.#hash.digest('hex')}`;
    if (actual !== this.#digest) throw new ContentMismatchError(`${this.#what}: content hashes to ${actual}`);
  }
}

/**
 * A pass-through that hashes what flows and fails the stream (instead of ending it) when the content
 * is longer or shorter than `size` or does not hash to `digest`. Consumers therefore never see a clean
 * end for bad bytes: a file being written is discarded, an upload being fed is aborted.
 *
 * The latest chunk is held back until the next one comes or the end checks out (the source's chunks
 * are its own, never refilled), so no consumer ever receives all of content that does not match. An
 * upload fed from here stops short of its last bytes; before, a registry that had them all could
 * answer DIGEST_INVALID before the abort, and which of the two errors a failed copy reported was a race.
 */
export function verifying(digest: string, size: number | undefined, what = `blob ${digest}`): Transform {
  const check = new ContentCheck(digest, size, what);
  let held: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        check.update(chunk);
      } catch (err) {
        callback(err as Error);
        return;
      }
      const previous = held;
      held = chunk;
      callback(null, previous);
    },
    flush(callback: TransformCallback) {
      try {
        check.finish();
      } catch (err) {
        callback(err as Error);
        return;
      }
      callback(null, held);
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

/** The same source, telling `onBytes` of every byte it gives, however it is read. */
export function countedSource(source: BlobSource, onBytes: (bytes: number) => void): BlobSource {
  return {
    ...source,
    open: async () => {
      const counted = counting(onBytes);
      // `pipeline`, not `.pipe()`: a source that fails (bytes that do not match their digest) must fail
      // the counted stream too, or its reader waits forever and the source's error goes unheard (an
      // uncaught 'error' event); and a reader that gives up must stop the source.
      pipeline(await source.open(), counted).catch(() => {});
      return counted;
    },
    ...(source.pour
      ? { pour: (sink: BodySink) => source.pour!(tap(sink, (chunk) => onBytes(chunk.length))) }
      : {}),
    ...(source.file ? { file: { ...source.file, onBytes } } : {}),
  };
}
