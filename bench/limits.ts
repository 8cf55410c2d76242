/**
 * Physical limits of this machine, the ceilings the registry numbers are compared against:
 * single-core sha256 throughput, durable write speed of the data disk (1 GiB written into a new file
 * and fdatasync'ed), and a loopback socket copy of 1 GiB from another process. "MB" here is MiB
 * (2^20 bytes), and MB/s MiB/s, as everywhere in bench/. Two more figures explain what those three
 * hide on a virtual machine:
 * - "disk write": the same 1 GiB written again over the same file and fdatasync'ed. Its pages are
 *   already in the page cache, so this is the device (plus one memory copy). On a guest whose free
 *   memory is handed back to the host (free page reporting), the first write into fresh page-cache
 *   pages can cost several times more than the disk itself: docs/performance.md, "This machine's memory".
 * - "ingest": the CPU work every registry must do for each pushed byte, chained: another process sends
 *   1 GiB over a loopback socket, this one hashes it with sha256 and writes it over that same file
 *   (no sync, no HTTP, no metadata). The three limits are each measured alone on an idle machine; a
 *   push pays all of them at once on the same cores, so one pushed stream cannot beat ingest.
 *   node bench/limits.ts [--dir DATA_DIR] [--size-mb 1024]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const MB = 1024 * 1024;

export interface Limits {
  sha256MBps: number;
  durableWriteMBps: number;
  loopbackMBps: number;
  diskWriteMBps: number;
  ingestMBps: number;
}

/** The lowest of the three limits (ingest is reported beside it, not part of it). */
export const lowestLimit = (l: Limits) => Math.min(l.sha256MBps, l.durableWriteMBps, l.loopbackMBps);

export async function measureLimits(dir: string, sizeMb = 1024): Promise<Limits> {
  const chunk = randomBytes(4 * MB);
  const chunks = Math.ceil((sizeMb * MB) / chunk.length);
  const bytes = chunks * chunk.length;
  const rate = (ms: number) => Math.round(bytes / MB / (ms / 1000));

  let t = performance.now();
  const hash = createHash('sha256');
  for (let i = 0; i < chunks; i++) hash.update(chunk);
  hash.digest();
  const sha256MBps = rate(performance.now() - t);

  const scratch = await mkdtemp(join(dir, 'tether-limits-'));
  try {
    const path = join(scratch, 'write-test');
    const file = await open(path, 'w');
    let durableWriteMBps = 0;
    let diskWriteMBps = 0;
    try {
      // Pass 1 fills new pages (the figure); pass 2 rewrites them in place (the device's).
      for (const pass of [1, 2]) {
        t = performance.now();
        for (let i = 0; i < chunks; i++) await file.write(chunk, 0, chunk.length, i * chunk.length);
        await file.datasync();
        if (pass === 1) durableWriteMBps = rate(performance.now() - t);
        else diskWriteMBps = rate(performance.now() - t);
      }
    } finally {
      await file.close();
    }

    // The sender is another process, as a registry's client is: one event loop sending and another
    // receiving, on the machine's two cores, not one loop doing both.
    const loopbackMBps = await receiveFromSender(bytes, (socket) => countReceived(socket, bytes));
    // A short unmeasured pass first, so the measured one runs compiled (as a warm registry does).
    await measureIngest(path, 64 * MB);
    const ingestMBps = await measureIngest(path, bytes);
    return { sha256MBps, durableWriteMBps, loopbackMBps, diskWriteMBps, ingestMBps };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The sender: a separate process, as a registry's client is, writing `bytes` of random data. */
const SENDER = `
const net = require('node:net');
const chunk = require('node:crypto').randomBytes(4 * 1024 * 1024);
const [port, bytes] = process.argv.slice(1).map(Number);
const socket = net.connect(port, '127.0.0.1', async () => {
  for (let sent = 0; sent < bytes; sent += chunk.length)
    if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
  socket.end();
});`;

/**
 * Listens on loopback, has SENDER (another process) send `bytes`, and hands the connection to `receive`;
 * resolves with what `receive` resolves. No sender is left writing and no server left listening after.
 */
async function receiveFromSender<T>(bytes: number, receive: (socket: net.Socket) => Promise<T>): Promise<T> {
  const server = net.createServer();
  let sender: ChildProcess | undefined;
  try {
    return await new Promise<T>((resolve, reject) => {
      server.on('connection', (socket) => {
        socket.on('error', reject);
        receive(socket).then(resolve, reject);
      });
      server.on('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as net.AddressInfo).port;
        sender = spawn(process.execPath, ['-e', SENDER, String(port), String(bytes)], { stdio: 'ignore' });
        sender.on('error', reject);
        sender.on('exit', (code) => {
          if (code !== 0) reject(new Error(`the sender exited with ${code}`));
        });
      });
    });
  } finally {
    sender?.kill();
    server.close();
  }
}

/** The loopback copy: bytes counted as they arrive, timed from the connection to the sender's end. */
function countReceived(socket: net.Socket, bytes: number): Promise<number> {
  const started = performance.now();
  let received = 0;
  return new Promise((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      received += d.length;
    });
    socket.on('end', () => {
      if (received !== bytes) reject(new Error(`loopback copy: received ${received} of ${bytes} bytes`));
      else resolve(Math.round(received / MB / ((performance.now() - started) / 1000)));
    });
  });
}

/**
 * Socket → sha256 → file, the way a careful Node server would do it: hashing on the event loop, writes
 * on the thread pool (one writev in flight, gathering what arrives meanwhile), the socket paused while
 * 8 MiB wait. It writes over the existing file from offset 0, into pages already in the cache, and does
 * not sync: the disk and fresh memory are the other figures' business. Timed from the connection to
 * the last write's return.
 */
async function measureIngest(path: string, bytes: number): Promise<number> {
  const file = await open(path, 'r+');
  try {
    return await receiveFromSender(
      bytes,
      (socket) =>
        new Promise<number>((resolve, reject) => {
          const started = performance.now();
          const hash = createHash('sha256');
          let pending: Buffer[] = [];
          let pendingBytes = 0;
          let writing: Promise<void> | undefined;
          const flush = (): Promise<void> => {
            const batch = pending;
            pending = [];
            pendingBytes = 0;
            return file.writev(batch).then(() => {
              writing = pendingBytes > 0 ? flush() : undefined;
              if (socket.isPaused()) socket.resume();
              return writing;
            });
          };
          socket.on('data', (d: Buffer) => {
            hash.update(d);
            pending.push(d);
            pendingBytes += d.length;
            if (!writing) {
              writing = flush();
              // A failed write ends the measurement at once, not at the socket's end.
              writing.catch(reject);
            }
            if (pendingBytes >= 8 * MB) socket.pause();
          });
          socket.on('end', async () => {
            try {
              // Each finished write starts the next while bytes are pending, so this drains everything.
              while (writing) await writing;
              hash.digest();
              resolve(Math.round(bytes / MB / ((performance.now() - started) / 1000)));
            } catch (err) {
              reject(err);
            }
          });
        }),
    );
  } finally {
    await file.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { dir: { type: 'string', default: tmpdir() }, 'size-mb': { type: 'string', default: '1024' } },
  });
  console.log(JSON.stringify(await measureLimits(values.dir, Number(values['size-mb'])), null, 2));
}
