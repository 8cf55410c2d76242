import { Readable } from 'node:stream';
import type { BlobSource } from './blob-source.ts';

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
 * Lends a stream's chunks to `sink`, one at a time, waiting for each write; a sink that throws ends the
 * iteration, which destroys the stream.
 */
export async function pourReadable(readable: AsyncIterable<unknown>, sink: BodySink): Promise<void> {
  for await (const chunk of readable) await sink.write(chunk as Uint8Array);
}

/** Lends a blob source's bytes to `sink`: through its `pour` when it has one, else from its stream. */
export async function pourSource(source: BlobSource, sink: BodySink): Promise<void> {
  if (source.pour) return source.pour(sink);
  return pourReadable(await source.open(), sink);
}

/**
 * What `pour` lends, gathered into one Buffer. Once the bytes pass `maxBytes` the sink throws
 * `tooLarge()`, which ends the pour. Each chunk is copied, since it is valid only during the call,
 * unless `owned` says the source gives every chunk memory of its own (node:http's body).
 */
export async function collect(
  pour: (sink: BodySink) => Promise<void>,
  maxBytes: number,
  tooLarge: () => Error,
  options: { owned?: boolean } = {},
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  await pour({
    write(chunk) {
      total += chunk.length;
      if (total > maxBytes) throw tooLarge();
      chunks.push(options.owned ? (chunk as Buffer) : Buffer.from(chunk));
    },
  });
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
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
