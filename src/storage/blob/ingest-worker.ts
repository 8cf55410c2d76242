/**
 * The ingest worker: hashes and writes upload bodies off the event loop (see ingest.ts for why and for
 * the other side of the protocol). Each append takes one batch at a time; its acknowledgement is the
 * event loop's signal to send the next, so memory per upload stays at about two batches (plus, for a
 * large durable upload, two 1 MiB staging halves whose writes to the device run on past the ack).
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

/**
 * A durable append writes past the upload's first DIRECT_FROM bytes with O_DIRECT: its page-aligned
 * middle goes from reused, page-aligned staging memory straight to the device, and only the unaligned
 * head and tail go through the page cache (the final datasync covers those, the file's size and the
 * device's cache). Why: the acknowledgement waits for the bytes to reach the disk anyway, so caching
 * them first buys nothing, and it costs: copying gigabytes into newly allocated page-cache pages and
 * writing them back took this machine's kernel ~2 s of CPU per GiB on eight parallel 1 GiB pushes, and
 * many times that while the host was handing the guest fresh memory (docs/performance.md).
 * The threshold counts from the start of the upload, not of the append, so a PATCH of a chunked upload
 * past it goes direct as soon as it has a full staging half (HALF) to write: counted from the append's
 * start, each 5 MiB PATCH sent 2 MiB through the page cache (going direct made chunked 100 MB pushes
 * 1.2-1.4x faster for half the system CPU). Small blobs, and PATCHes shorter than a half, never get
 * there and pay no second open. When the file system refuses O_DIRECT, or all staging memory is in use,
 * an append stays in the page cache with the early write-back above.
 */
const DIRECT_FROM = 2 << 20;
/** Offsets, lengths and memory of direct writes: a page, which covers 512 and 4096 byte sectors. */
const ALIGN = 4096;
/**
 * Each direct append stages into two halves, each as large as the largest batch fs.ts sends: while the
 * device writes one half, the next batch is acknowledged, travels, is hashed and fills the other. With
 * a single staging buffer, one stream waited for the device about once per batch (one 1 GiB stream:
 * 1.44x faster with two). Only full halves are written while the body streams in, so writes stay 1 MiB
 * and at most two per upload are in flight: also writing each batch's whole pages at its end (more,
 * smaller writes at once) made eight parallel 256 MiB uploads 0.93x.
 */
const HALF = 1 << 20;
/** At most this many appends write directly at once (bounds staging memory); more use the page cache. */
const MAX_DIRECT = 16;
/**
 * Staging memory of ended direct appends kept for the next ones: a fresh 2 MiB costs ~1 ms of page
 * faults, and keeping every buffer would hold 32 MiB for good after a burst of large uploads.
 */
const IDLE_STAGING = 2;

/** An append's O_DIRECT side. */
interface Direct {
  handle: FileHandle;
  /** The halves' memory, kept for another append or unmapped when this one ends. */
  memory: ArrayBuffer;
  halves: [Buffer, Buffer];
  /** The write issued from each half and not yet awaited; a half is refilled only after it. */
  writes: [Promise<void>, Promise<void>];
  /** The half being filled. */
  half: 0 | 1;
  /** File position of the current half's first byte, page-aligned. */
  at: number;
  /** Bytes in the current half. */
  filled: number;
  /** Set when the kernel refused a direct write: the append goes on in the page cache. */
  refused: boolean;
}

interface Append {
  path: string;
  handle: Promise<FileHandle>;
  /** File position the append started at. */
  start: number;
  /** Set once direct writes start (see DIRECT_FROM); null when the append stays in the page cache. */
  direct: Direct | null | undefined;
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
    path: request.path,
    handle,
    start: request.offset,
    direct: undefined,
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
  if (append.direct?.refused) await closeDirect(append, handle, true);
  if (append.direct === undefined && append.fsync && at >= DIRECT_FROM && at + bytes - append.start >= HALF)
    append.direct = await openDirect(append.path, at);
  if (append.direct) return writeDirect(append, handle, append.direct, buffers, at, bytes);
  await writeAll(handle, buffers, at, bytes);
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

/** Writes every byte of `buffers` at `at` through the page cache (writev returns short writes). */
async function writeAll(handle: FileHandle, buffers: Buffer[], at: number, bytes: number): Promise<void> {
  let remaining = bytes;
  let position = at;
  while (remaining > 0) {
    const { bytesWritten } = await handle.writev(buffers, position);
    position += bytesWritten;
    remaining -= bytesWritten;
    if (remaining > 0) buffers = dropPrefix(buffers, bytesWritten);
  }
}

let directAppends = 0;
const idleStaging: ArrayBuffer[] = [];
/** Set when the file system refused O_DIRECT; it is not asked again (one worker per store). */
let directRefused = false;

/**
 * Opens the O_DIRECT side of an append whose next byte goes at `at`, or null (too many direct appends
 * already, or no O_DIRECT here). The staging memory is a resizable ArrayBuffer: V8 reserves those from
 * its page allocator, so they start page-aligned, which direct I/O requires of memory and an ordinary
 * Buffer (malloc'd) does not promise, and transfer(0) unmaps one at once, where a WebAssembly memory
 * (the other page-aligned kind) stays until a collection. (Were one ever unaligned, each write would
 * be refused with EINVAL and go through the page cache.)
 */
async function openDirect(path: string, at: number): Promise<Direct | null> {
  if (directRefused || constants.O_DIRECT === undefined || directAppends >= MAX_DIRECT) return null;
  directAppends++;
  try {
    const handle = await open(path, constants.O_WRONLY | constants.O_DIRECT);
    const memory = idleStaging.pop() ?? new ArrayBuffer(2 * HALF, { maxByteLength: 2 * HALF });
    return {
      handle,
      memory,
      halves: [Buffer.from(memory, 0, HALF), Buffer.from(memory, HALF, HALF)],
      writes: [Promise.resolve(), Promise.resolve()],
      half: 0,
      at: Math.ceil(at / ALIGN) * ALIGN,
      filled: 0,
      refused: false,
    };
  } catch (err) {
    directAppends--;
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') directRefused = true;
    return null;
  }
}

/**
 * Writes a batch on the direct side: the bytes before its first page boundary through the page cache,
 * the rest into the current half, issuing the half's write when it is full; what is staged past the
 * last full half waits for the next batch or the finish. Issued writes run on while the batch is
 * acknowledged; refilling a half waits only for that half's earlier write.
 */
async function writeDirect(
  append: Append,
  handle: FileHandle,
  direct: Direct,
  buffers: Buffer[],
  at: number,
  bytes: number,
) {
  if (at < direct.at) {
    const head = Math.min(direct.at - at, bytes);
    await writeAll(handle, takePrefix(buffers, head), at, head);
    append.unsynced += head;
    buffers = dropPrefix(buffers, head);
  }
  for (const buffer of buffers) {
    let offset = 0;
    while (offset < buffer.length) {
      const copied = buffer.copy(direct.halves[direct.half], direct.filled, offset);
      direct.filled += copied;
      offset += copied;
      if (direct.filled < HALF) continue;
      issue(append, handle, direct, HALF);
      direct.half = direct.half === 0 ? 1 : 0;
      direct.at += HALF;
      direct.filled = 0;
      await settle(direct, direct.half);
    }
  }
}

/**
 * Starts writing the first `end` bytes (whole pages) of the current half, which holds no write in
 * flight: it was settled when it became current, and is written once, when full or at the finish.
 */
function issue(append: Append, handle: FileHandle, direct: Direct, end: number): void {
  if (end === 0) return;
  const write = writeRegion(append, handle, direct, direct.halves[direct.half].subarray(0, end), direct.at);
  // Its failure is kept by whoever settles this half next (a later batch or the finish).
  write.catch(() => {});
  direct.writes[direct.half] = write;
}

/** Waits for the write issued from a half, if any; its failure throws. */
async function settle(direct: Direct, half: 0 | 1): Promise<void> {
  const writes = direct.writes[half];
  direct.writes[half] = Promise.resolve();
  await writes;
}

/**
 * Writes `region` (whole pages of a half) at `position` with O_DIRECT. If the kernel refuses (EINVAL:
 * an alignment this file system wants and did not advertise), the region goes through the page cache
 * instead, and the append moves there before its next batch.
 */
async function writeRegion(
  append: Append,
  handle: FileHandle,
  direct: Direct,
  region: Buffer,
  position: number,
): Promise<void> {
  let done = 0;
  try {
    while (done < region.length && !direct.refused) {
      const { bytesWritten } = await direct.handle.write(region, done, region.length - done, position + done);
      done += bytesWritten;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    direct.refused = true;
  }
  if (done === region.length) return;
  await writeAll(handle, [region.subarray(done)], position + done, region.length - done);
  append.unsynced += region.length - done;
}

/**
 * Ends the direct side and lets its halves go. With `flush`, the whole pages still staged are written
 * directly and the last partial page through the page cache. The first write failure throws, after
 * every issued write has ended (the halves' memory is not reused or unmapped while the kernel reads it).
 */
async function closeDirect(append: Append, handle: FileHandle, flush: boolean): Promise<void> {
  const direct = append.direct;
  if (!direct) return;
  append.direct = null;
  try {
    const pages = flush ? direct.filled - (direct.filled % ALIGN) : 0;
    issue(append, handle, direct, pages);
    const settled = await Promise.allSettled([settle(direct, 0), settle(direct, 1)]);
    for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
    const rest = direct.filled - pages;
    if (flush && rest > 0) {
      await writeAll(
        handle,
        [direct.halves[direct.half].subarray(pages, direct.filled)],
        direct.at + pages,
        rest,
      );
      append.unsynced += rest;
    }
  } finally {
    directAppends--;
    if (idleStaging.length < IDLE_STAGING) idleStaging.push(direct.memory);
    else direct.memory.transfer(0);
    await direct.handle.close();
  }
}

/**
 * Ends an append: with `complete`, its bytes are made durable (when syncing) before it resolves with
 * the hash's digest so far; with `digest` as well, that digest finishes the hash (gone afterwards).
 * Otherwise, or when it fails, the file is cut back to where the append started.
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
  let stored = false;
  try {
    try {
      await closeDirect(append, handle, complete && append.failure === undefined);
    } catch (err) {
      append.failure ??= err;
    }
    if (complete && append.failure !== undefined) throw append.failure;
    if (complete && append.fsync) await handle.datasync();
    stored = complete;
  } finally {
    // An append that failed (a full disk, a client gone, a size limit) leaves nothing past the offset
    // it started at: the next append would cut it off anyway, but until then those bytes hold space
    // that a full disk needs back.
    if (!stored) await handle.truncate(append.start).catch(() => {});
    await handle.close();
  }
  if (!complete) return undefined;
  return digest ? takeDigest(append.hashId) : peekDigest(append.hashId);
}

/** The hex digest of what a hash has seen so far, from a copy: the hash goes on. */
function peekDigest(id: number): string | undefined {
  return hashes.get(id)?.copy().digest('hex');
}

/** The hex digest of a hash, which is gone afterwards. */
function takeDigest(id: number): string {
  const hash = hashes.get(id);
  if (!hash) throw new Error('unknown upload hash');
  hashes.delete(id);
  return hash.digest('hex');
}

/** The first `bytes` of the buffers. */
function takePrefix(buffers: Buffer[], bytes: number): Buffer[] {
  const head: Buffer[] = [];
  let want = bytes;
  for (const b of buffers) {
    if (want === 0) break;
    head.push(want >= b.length ? b : b.subarray(0, want));
    want -= Math.min(want, b.length);
  }
  return head;
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
