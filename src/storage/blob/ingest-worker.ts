/**
 * The ingest worker: hashes and writes upload bodies off the event loop (see ingest.ts for why and for
 * the other side of the protocol). Each append keeps one write in flight; its acknowledgement is the
 * event loop's signal to send the next batch, so memory per upload stays at about two batches.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants, type FileHandle, open } from 'node:fs/promises';
import { parentPort } from 'node:worker_threads';
import type { IngestError, IngestReply, IngestRequest } from './ingest-protocol.ts';

/**
 * Write-back starts every 2 MiB an upload receives (one sync in flight per upload), so the disk works
 * while the body streams in and the sync an acknowledgement waits for has at most a few MiB left. With
 * 64 MiB, a chunked PATCH of 5 MiB never started early and paid its whole flush after the last byte;
 * 2 MiB made chunked 100 MB pushes ~20 % faster and large streams no slower (docs/performance.md).
 */
const EARLY_SYNC = 2 << 20;
const SEED_READ = 1 << 20;

interface Append {
  handle: Promise<FileHandle>;
  hashId: number;
  hash: Hash | undefined;
  fsync: boolean;
  /** File position of the next batch. */
  position: number;
  /** The last batch's write (and the early sync it waited for); never rejects. */
  writing: Promise<void>;
  syncing: Promise<void> | undefined;
  unsynced: number;
  /** The first write or sync failure; every later acknowledgement carries it. */
  failure: unknown;
}

const port = parentPort;
if (!port) throw new Error('ingest-worker runs as a worker thread');
const hashes = new Map<number, Hash>();
const appends = new Map<number, Append>();
const reply = (message: IngestReply) => port.postMessage(message);

port.on('message', (request: IngestRequest) => {
  switch (request.op) {
    case 'hash':
      return answer(request.call, () =>
        createSeededHash(request.hash, request.algorithm, request.path, request.length),
      );
    case 'digest':
      return answer(request.call, async () => takeDigest(request.hash));
    case 'free':
      hashes.delete(request.hash);
      return;
    case 'open':
      return openAppend(request);
    case 'data':
      return receive(request.append, request.chunks);
    case 'end':
      return answer(request.call, () => finish(request.append, true, request.digest));
    case 'abort':
      return answer(request.call, () => finish(request.append, false, false));
  }
});

/** Runs one request; with a `call` number, its outcome goes back (the event loop awaits it). */
async function answer(call: number | undefined, work: () => Promise<string | undefined>): Promise<void> {
  try {
    const digest = await work();
    if (call !== undefined) reply({ type: 'done', call, ...(digest === undefined ? {} : { digest }) });
  } catch (err) {
    if (call !== undefined) reply({ type: 'done', call, error: describe(err) });
  }
}

async function createSeededHash(id: number, algorithm: string, path: string | undefined, length: number) {
  const hash = createHash(algorithm);
  if (path !== undefined && length > 0) {
    const handle = await open(path, 'r');
    try {
      const buffer = Buffer.allocUnsafe(Math.min(SEED_READ, length));
      let position = 0;
      while (position < length) {
        const want = Math.min(buffer.length, length - position);
        const { bytesRead } = await handle.read(buffer, 0, want, position);
        if (bytesRead === 0)
          throw new Error(`staged upload is shorter than its acknowledged ${length} bytes`);
        hash.update(buffer.subarray(0, bytesRead));
        position += bytesRead;
      }
    } finally {
      await handle.close();
    }
  }
  hashes.set(id, hash);
  return undefined;
}

function openAppend(request: Extract<IngestRequest, { op: 'open' }>): void {
  const hash = hashes.get(request.hash);
  const handle = (async () => {
    if (!hash) throw new Error('unknown upload hash');
    // From the start, the open truncates (one trip through the thread pool fewer for every blob).
    if (request.offset === 0) return open(request.path, constants.O_RDWR | constants.O_TRUNC);
    const opened = await open(request.path, 'r+');
    try {
      await opened.truncate(request.offset);
    } catch (err) {
      await opened.close();
      throw err;
    }
    return opened;
  })();
  const append: Append = {
    handle,
    hashId: request.hash,
    hash,
    fsync: request.fsync,
    position: request.offset,
    writing: Promise.resolve(),
    syncing: undefined,
    unsynced: 0,
    failure: undefined,
  };
  append.writing = handle.then(
    () => {},
    (err: unknown) => {
      append.failure = err;
    },
  );
  appends.set(request.append, append);
}

function receive(id: number, chunks: Uint8Array<ArrayBuffer>[]): void {
  const append = appends.get(id);
  if (!append) return;
  const buffers = chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  let bytes = 0;
  for (const buffer of buffers) {
    append.hash?.update(buffer);
    bytes += buffer.length;
  }
  const at = append.position;
  append.position += bytes;
  append.writing = append.writing.then(async () => {
    if (append.failure === undefined) {
      try {
        await write(append, buffers, at, bytes);
      } catch (err) {
        append.failure = err;
      }
    }
    // Free the bytes now: detaching drops the memory at once, where waiting for this thread's
    // collector let tens of MB of written chunks pile up (V8 collects for external memory late).
    for (const chunk of chunks) chunk.buffer.transfer(0);
    const failure = append.failure;
    reply({ type: 'ack', append: id, ...(failure === undefined ? {} : { error: describe(failure) }) });
  });
}

async function write(append: Append, buffers: Buffer[], at: number, bytes: number): Promise<void> {
  const handle = await append.handle;
  let remaining = bytes;
  let position = at;
  while (remaining > 0) {
    const { bytesWritten } = await handle.writev(buffers, position);
    position += bytesWritten;
    remaining -= bytesWritten;
    if (remaining > 0) buffers = dropPrefix(buffers, bytesWritten);
  }
  // Start write-back every EARLY_SYNC bytes while the rest still streams in, so the final datasync
  // (which the acknowledgement waits for) has little left to flush. Waiting for the previous early
  // sync before starting the next bounds each upload's unsynced bytes.
  append.unsynced += bytes;
  if (append.fsync && append.unsynced >= EARLY_SYNC) {
    await append.syncing;
    append.syncing = handle.datasync();
    // Its failure is kept by whoever awaits it next (the next early sync or the finish).
    append.syncing.catch(() => {});
    append.unsynced = 0;
  }
}

/**
 * Ends an append: with `complete`, its bytes are made durable (when syncing) before it resolves, and
 * with `digest` as well, it resolves with the hash's digest (the hash is gone afterwards).
 */
async function finish(id: number, complete: boolean, digest: boolean): Promise<string | undefined> {
  const append = appends.get(id);
  if (!append) throw new Error('unknown append');
  appends.delete(id);
  await append.writing;
  try {
    await append.syncing;
  } catch (err) {
    append.failure ??= err;
  }
  let handle: FileHandle;
  try {
    handle = await append.handle;
  } catch (err) {
    if (complete) throw err;
    return undefined;
  }
  try {
    if (complete && append.failure !== undefined) throw append.failure;
    if (complete && append.fsync) await handle.datasync();
  } finally {
    await handle.close();
  }
  return digest ? takeDigest(append.hashId) : undefined;
}

/** The hex digest of a hash, which is gone afterwards. */
function takeDigest(id: number): string {
  const hash = hashes.get(id);
  if (!hash) throw new Error('unknown upload hash');
  hashes.delete(id);
  return hash.digest('hex');
}

/** The buffers that remain after the first `bytes` of them were written (a short writev). */
function dropPrefix(buffers: Buffer[], bytes: number): Buffer[] {
  const rest: Buffer[] = [];
  let skip = bytes;
  for (const b of buffers) {
    if (skip >= b.length) skip -= b.length;
    else {
      rest.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
  }
  return rest;
}

function describe(err: unknown): IngestError {
  const { message, code, errno, syscall } = (err ?? {}) as Partial<NodeJS.ErrnoException>;
  return {
    message: typeof message === 'string' ? message : String(err),
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof errno === 'number' ? { errno } : {}),
    ...(typeof syscall === 'string' ? { syscall } : {}),
  };
}
