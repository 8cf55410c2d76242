import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';

/** Read size: large enough for few syscalls per GiB, small enough to keep eight streams cheap. */
const BUFFER_SIZE = 1 << 20;
/**
 * While at most READ_AHEAD_TRANSFERS transfers run, each reads ahead: READ_AHEAD_BUFFERS buffers, two
 * of them being read while the third is in the socket. A blob that is not in the page cache (every blob
 * the ingest worker wrote with O_DIRECT, until its first pull) fills the cache faster with a second
 * read queued: measured on a freshly written 1 GiB blob, 510-684 MB/s with one read at a time, 811-833
 * with two, 864-917 with four. With more transfers each uses one buffer (read it, send it, read again
 * once the socket has taken it): the others keep the device and the socket busy meanwhile, and reading
 * ahead there only cost memory (8 x 1 GiB pulls: peak RSS 103 -> 114 MB, throughput level).
 */
const READ_AHEAD_TRANSFERS = 2;
const READ_AHEAD_BUFFERS = 3;
/** Idle buffers kept for reuse across transfers; more are left to the garbage collector. */
const MAX_IDLE_BUFFERS = 32;
/**
 * A paced transfer (see SendPace) falls back to writes of this size after a slow one (over
 * SLOW_WRITE_MS); each write that completes within SLOW_WRITE_MS doubles the next, up to a whole buffer.
 */
const SLOW_CLIENT_WRITE = 64 * 1024;
const SLOW_WRITE_MS = 250;

/**
 * What a transfer tells whoever watches it for stalls (the server's `limits.sendIdleSeconds`): `sent`
 * grows by each write's size when the socket has taken it. Node reports a write only once it is whole,
 * so a paced transfer sizes its writes to how fast they complete: a whole buffer (1 MiB) while the
 * receiver keeps up, pieces from 64 KiB up once a write was slow. A receiver taking 64 KiB a second is
 * then seen to make progress every second, not every 16 s. The first write is a whole buffer all the
 * same: starting every transfer at 64 KiB and doubling (five writes for the first MiB) cost a pull of
 * 1 MiB images 1.28x the server CPU and 0.91x the throughput (bench/ab.ts, 4 pairs). So a receiver must
 * take the first write, and the one in flight when it slows down, within the limit: 1 MiB in 60 s,
 * 17 KB/s, which is about what the kernel's own wake-up step on a full socket asks of an HTTP/1 client
 * anyway (docs/architecture.md). A fast transfer pays a clock read per write.
 *
 * `reading` is true while the transfer waits for a read from storage it cannot send without (two field
 * writes per 1 MiB buffer; a read already done when its turn comes is awaited on the microtask queue, so
 * a watcher on a timer never sees it): a stall then is the storage's, not the receiver's. The memory
 * store (storage/blob/memory.ts) has its bytes at hand and never sets it.
 */
export interface SendPace {
  sent: number;
  reading: boolean;
}

const idle: Buffer[] = [];
/** Transfers running in this process. */
let transfers = 0;

function acquire(): Buffer {
  return idle.pop() ?? Buffer.allocUnsafeSlow(BUFFER_SIZE);
}

function release(buffer: Buffer): void {
  if (idle.length < MAX_IDLE_BUFFERS) idle.push(buffer);
}

/** A read issued ahead: `want` bytes into `buffer`, from the file position after the previous one. */
interface PendingRead {
  buffer: Buffer;
  want: number;
  bytesRead: Promise<number>;
}

/**
 * Copies `length` bytes at `start` of an open file into `out`, then ends `out`.
 *
 * Why not `pipeline(createReadStream(), res)`: a read stream allocates a fresh buffer for every read,
 * so a 1 GiB pull allocates (and the kernel zeroes, and the collector frees) 1 GiB of memory. Here a
 * few buffers circulate: a buffer returns to the transfer only when the socket's write callback says the
 * kernel has taken its bytes, so it is never overwritten while queued, and the buffer count bounds what
 * one transfer holds. Measured on a 2 vCPU machine: eight parallel 1 GiB pulls 2.4 -> 4.1 GB/s and peak
 * RSS 158 -> 83 MB.
 *
 * Rejects when `out` is destroyed (the client went away) or a read fails; the caller closes `handle`.
 * `onSent`, when given, hears the size of each piece the socket has taken (upload progress); `pace`,
 * when given, is kept up to date and the writes are sized as it says.
 */
export async function sendFileRange(
  handle: FileHandle,
  start: number,
  length: number,
  out: Writable,
  options: { onSent?: (bytes: number) => void; pace?: SendPace } = {},
): Promise<void> {
  const { onSent, pace } = options;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const signal = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onClose = () => {
    if (!out.writableFinished) failure ??= new Error('the receiver closed before the blob was sent');
    signal();
  };
  const onError = (err: Error) => {
    failure ??= err;
    signal();
  };
  let needDrain = false;
  const onDrain = () => {
    needDrain = false;
    signal();
  };
  out.on('close', onClose);
  out.on('error', onError);
  out.on('drain', onDrain);
  // A receiver that went away before this call emits nothing more, and its end callback may never run.
  if (out.destroyed) onClose();
  const waitFor = (ready: () => boolean) =>
    new Promise<void>((resolve) => {
      if (ready() || failure) resolve();
      else wake = resolve;
    });
  const free: Buffer[] = [];
  const reads: PendingRead[] = [];
  let owned = 0;
  let position = start;
  let unread = length;
  let writeSize = BUFFER_SIZE;
  /** Issues reads, in file order, while this transfer has a buffer free or may take another. */
  const readAhead = () => {
    const buffers = transfers <= READ_AHEAD_TRANSFERS ? READ_AHEAD_BUFFERS : 1;
    while (unread > 0 && (free.length > 0 || owned < buffers)) {
      let buffer = free.pop();
      if (!buffer) {
        buffer = unread < BUFFER_SIZE && owned === 0 ? Buffer.allocUnsafeSlow(unread) : acquire();
        owned++;
      }
      const want = Math.min(buffer.length, unread);
      const bytesRead = handle.read(buffer, 0, want, position).then((r) => r.bytesRead);
      // Awaited in order below, or settled in `finally` if the transfer fails first.
      bytesRead.catch(() => {});
      reads.push({ buffer, want, bytesRead });
      position += want;
      unread -= want;
    }
  };
  transfers++;
  try {
    for (;;) {
      if (failure) throw failure;
      readAhead();
      const next = reads.shift();
      if (!next) {
        if (unread === 0) break;
        // This transfer's buffers are all in the socket: wait until it gives one back.
        await waitFor(() => free.length > 0);
        continue;
      }
      if (pace) pace.reading = true;
      const bytesRead = await next.bytesRead;
      if (pace) pace.reading = false;
      // A regular file's pread is short only at its end, so a short read means the file is shorter.
      if (bytesRead < next.want) throw new Error('blob file is shorter than its recorded size');
      const { buffer, want } = next;
      // A buffer goes out in one write, or in pieces for a paced transfer (each written once the one
      // before it has been taken, so that each reports on its own); it is free again once its last has.
      for (let offset = 0; offset < want; ) {
        while (needDrain && !failure) await waitFor(() => !needDrain);
        if (failure) throw failure;
        const size = Math.min(writeSize, want - offset);
        const piece = size === buffer.length ? buffer : buffer.subarray(offset, offset + size);
        offset += size;
        const last = offset === want;
        const written = pace ? performance.now() : 0;
        const accepted = out.write(piece, (err) => {
          // A failed write (the socket was destroyed) may leave the buffer referenced: not reused.
          if (err) failure ??= err;
          else {
            if (last) free.push(buffer);
            if (pace) {
              pace.sent += size;
              writeSize =
                performance.now() - written < SLOW_WRITE_MS
                  ? Math.min(writeSize * 2, BUFFER_SIZE)
                  : SLOW_CLIENT_WRITE;
            }
            onSent?.(size);
          }
          signal();
        });
        if (!accepted) needDrain = true;
      }
    }
    let ended = false;
    // The callback also runs, with an error, when the socket was destroyed before the end was sent.
    out.end((err?: Error | null) => {
      if (err) failure ??= err;
      else ended = true;
      signal();
    });
    while (!ended && !failure) await waitFor(() => ended);
    if (failure) throw failure;
  } finally {
    transfers--;
    // Buffers the socket gave back, and those of reads that never reached it, return to the pool: one
    // still queued in a destroyed socket may still be referenced there, so it is left to the collector.
    for (const read of reads) {
      await read.bytesRead.catch(() => {});
      free.push(read.buffer);
    }
    for (const b of free) if (b.length === BUFFER_SIZE) release(b);
    out.off('close', onClose);
    out.off('error', onError);
    out.off('drain', onDrain);
  }
}
