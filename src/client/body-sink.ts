import { Readable } from 'node:stream';

/**
 * Where the bytes of a body go, pushed by their source. A chunk is lent: it stays valid until `write`
 * returns or, when `write` returns a promise, until that promise settles; afterwards the source reuses
 * its memory. A returned promise also asks the source to wait before the next chunk (backpressure);
 * a rejection ends the transfer with that error.
 *
 * Why not a Node stream: a stream's chunks belong to whoever holds them, so every network read needs
 * fresh memory. Downloads lend one reused read buffer instead (see `download.ts`), which on a 1 GiB blob
 * saved about half the client's CPU and most of its peak memory.
 */
export interface BodySink {
  write(chunk: Uint8Array): void | Promise<void>;
}

/** A sink that passes each chunk to `observe` (hashing, counting) before `next` takes it. */
export function tap(next: BodySink, observe: (chunk: Uint8Array) => void): BodySink {
  return {
    write(chunk) {
      observe(chunk);
      return next.write(chunk);
    },
  };
}

/**
 * A Node stream fed by `pour`, for consumers that need one (pipelines, small reads). Each chunk is
 * copied, since a stream's chunks must outlive the call; the stream's backpressure pauses the source.
 * Destroying the stream ends the transfer.
 */
export function sinkReadable(pour: (sink: BodySink) => Promise<void>): Readable {
  let resume: (() => void) | undefined;
  let stop: ((err: Error) => void) | undefined;
  const readable = new Readable({
    read() {
      const go = resume;
      resume = undefined;
      stop = undefined;
      go?.();
    },
    destroy(err, callback) {
      stop?.(err ?? new Error('the stream was closed before the body ended'));
      callback(err);
    },
  });
  pour({
    write(chunk) {
      if (readable.destroyed) throw new Error('the stream was closed before the body ended');
      if (readable.push(Buffer.from(chunk))) return;
      return new Promise<void>((resolve, reject) => {
        resume = resolve;
        stop = reject;
      });
    },
  }).then(
    () => readable.push(null),
    (err: unknown) => readable.destroy(err as Error),
  );
  return readable;
}
