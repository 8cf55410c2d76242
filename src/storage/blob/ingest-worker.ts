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

/**
 * A durable append writes past its first DIRECT_FROM bytes with O_DIRECT: its page-aligned middle goes
 * from a reused, page-aligned staging slot straight to the device, and only the unaligned head and tail
 * go through the page cache (the final datasync covers those, the file's size and the device's cache).
 * Why: the acknowledgement waits for the bytes to reach the disk anyway, so caching them first buys
 * nothing, and it costs: copying gigabytes into newly allocated page-cache pages and writing them back
 * took this machine's kernel ~2 s of CPU per GiB on eight parallel 1 GiB pushes, and many times that
 * while the host was handing the guest fresh memory (docs/performance.md). Small blobs (one batch)
 * never get there and pay no second open. When the file system refuses O_DIRECT, or every slot is in
 * use, an append stays in the page cache with the early write-back above.
 */
const DIRECT_FROM = 2 << 20;
/** Offsets, lengths and memory of direct writes: a page, which covers 512 and 4096 byte sectors. */
const ALIGN = 4096;
const SLOT = 1 << 20;
const SLOTS = 16;

// The ES library types do not include WebAssembly; only its memory is used here.
declare const WebAssembly: { Memory: new (size: { initial: number }) => { buffer: ArrayBuffer } };

/** An append's O_DIRECT side. */
interface Direct {
  handle: FileHandle;
  slot: number;
  staging: Buffer;
  /** File position of staging[0], page-aligned. */
  at: number;
  /** Bytes in the staging slot not written yet (fewer than ALIGN between batches). */
  filled: number;
  /**
   * The write of the last batch's staged pages, still in flight: the batch is acknowledged once it is
   * in the slot, so the next one travels and is hashed while the device writes (one stream would
   * otherwise wait for the device once per batch). The next batch, and the finish, wait for it.
   */
  writing: Promise<void>;
}

interface Append {
  path: string;
  handle: Promise<FileHandle>;
  /** File position the append started at; direct writes start DIRECT_FROM bytes later. */
  start: number;
  /** Set at DIRECT_FROM; null when the append stays in the page cache. */
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
  if (append.direct) await append.direct.writing;
  if (append.direct === undefined && append.fsync && at - append.start >= DIRECT_FROM)
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

let slotMemory: Buffer | undefined;
const freeSlots = Array.from({ length: SLOTS }, (_, i) => SLOTS - 1 - i);
/** Set when the file system refused O_DIRECT; it is not asked again (one worker per store). */
let directRefused = false;

/**
 * Opens the O_DIRECT side of an append whose next byte goes at `at`, or null (no slot free, or no
 * O_DIRECT here). Staging slots are slices of one WebAssembly memory: V8 maps it with whole pages, so
 * every slot starts page-aligned, which direct I/O requires of memory and an ordinary Buffer does not
 * promise; pages a slot never touched take no memory.
 */
async function openDirect(path: string, at: number): Promise<Direct | null> {
  if (directRefused || constants.O_DIRECT === undefined) return null;
  const slot = freeSlots.pop();
  if (slot === undefined) return null;
  try {
    const handle = await open(path, constants.O_WRONLY | constants.O_DIRECT);
    slotMemory ??= Buffer.from(new WebAssembly.Memory({ initial: (SLOTS * SLOT) / 65536 }).buffer);
    const staging = slotMemory.subarray(slot * SLOT, (slot + 1) * SLOT);
    return {
      handle,
      slot,
      staging,
      at: Math.ceil(at / ALIGN) * ALIGN,
      filled: 0,
      writing: Promise.resolve(),
    };
  } catch (err) {
    freeSlots.push(slot);
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') directRefused = true;
    return null;
  }
}

/**
 * Writes a batch on the direct side: the bytes before its first page boundary through the page cache,
 * the rest through the staging slot, writing each full slot and, at the end of the batch, every whole
 * page staged; the last partial page waits in the slot for the next batch or the finish.
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
    buffers = dropPrefix(buffers, head);
  }
  for (let i = 0; i < buffers.length; i++) {
    const buffer = buffers[i]!;
    let offset = 0;
    while (offset < buffer.length) {
      const copied = buffer.copy(direct.staging, direct.filled, offset);
      direct.filled += copied;
      offset += copied;
      if (direct.filled < SLOT) continue;
      await writeStaged(append, direct, SLOT);
      if (append.direct !== direct) {
        // Refused: the staged bytes went through the page cache, and so does the rest of the batch.
        const rest = [buffer.subarray(offset), ...buffers.slice(i + 1)];
        const restBytes = rest.reduce((n, b) => n + b.length, 0);
        await writeAll(handle, rest, direct.at + direct.filled, restBytes);
        append.unsynced += restBytes;
        return;
      }
    }
  }
  const pages = direct.filled - (direct.filled % ALIGN);
  if (pages > 0) {
    direct.writing = writeStaged(append, direct, pages);
    // Its failure is kept by whoever awaits it next (the next batch's write or the finish).
    direct.writing.catch(() => {});
  }
}

/**
 * Writes the first `length` staged bytes (whole pages) at the direct side's position. If the kernel
 * refuses the direct write (EINVAL: an alignment this file system wants and did not advertise), every
 * staged byte goes through the page cache instead and the append stays there from now on.
 */
async function writeStaged(append: Append, direct: Direct, length: number) {
  try {
    let done = 0;
    while (done < length) {
      const { bytesWritten } = await direct.handle.write(
        direct.staging,
        done,
        length - done,
        direct.at + done,
      );
      done += bytesWritten;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    // Leaves direct.at and direct.filled as they were: the caller goes on after them.
    await closeDirect(append, true);
    append.unsynced += direct.filled;
    return;
  }
  direct.staging.copyWithin(0, length, direct.filled);
  direct.filled -= length;
  direct.at += length;
}

/** Writes what is left in the staging slot through the page cache (when `flush`), and lets the slot go. */
async function closeDirect(append: Append, flush = false): Promise<void> {
  const direct = append.direct;
  if (!direct) return;
  append.direct = null;
  try {
    if (flush && direct.filled > 0)
      await writeAll(
        await append.handle,
        [direct.staging.subarray(0, direct.filled)],
        direct.at,
        direct.filled,
      );
  } finally {
    freeSlots.push(direct.slot);
    await direct.handle.close();
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
    try {
      await append.direct?.writing;
    } catch (err) {
      append.failure ??= err;
    }
    try {
      await closeDirect(append, complete && append.failure === undefined);
    } catch (err) {
      append.failure ??= err;
    }
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
