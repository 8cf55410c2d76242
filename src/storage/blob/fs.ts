import { createReadStream } from 'node:fs';
import { mkdir, open, opendir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { tryParseDigest } from '../../oci/digest.ts';
import { GroupSync } from '../group-sync.ts';
import { syncDirectory } from '../sync-directory.ts';
import { sendFileRange } from './file-sender.ts';
import type { BlobReader, BlobStore } from './types.ts';

const UPLOAD_ID = /^[a-f0-9-]{36}$/;
const WRITE_BUFFER = 1 << 20;
const MIN_WRITE_BUFFER = 256 << 10;
/**
 * Request chunks held by all uploads together (each holds a batch being written and one filling): a batch
 * is this budget over twice the number of uploads in progress, between 256 KiB and 1 MiB. One stream gets
 * 1 MiB batches (fewest syscalls); eight get 512 KiB ones, which kept the server's peak RSS at ~120
 * instead of ~140 MB for 8 parallel pushes at the same throughput (within 3 %).
 */
const WRITE_BUDGET = 8 << 20;
/**
 * Write-back starts every 2 MiB an upload receives (one sync in flight per upload), so the disk works
 * while the body streams in and the sync an acknowledgement waits for has at most a few MiB left. With
 * 64 MiB, a chunked PATCH of 5 MiB never started early and paid its whole flush after the last byte;
 * 2 MiB made chunked 100 MB pushes ~20 % faster and large streams no slower (docs/performance.md).
 */
const EARLY_SYNC = 2 << 20;

/**
 * Filesystem BlobStore. Layout: `blobs/<alg>/<first two hex>/<hex>` for published blobs and
 * `uploads/<id>` for staged ones. A blob becomes visible only by an atomic rename of a fully written and
 * fsynced file, followed by an fsync of the directory, so a crash never exposes half a blob.
 * Paths are built only from parsed digests and ids checked against a strict pattern.
 */
export class FsBlobStore implements BlobStore {
  readonly #blobs: string;
  readonly #uploads: string;
  readonly #fsync: boolean;
  /** One directory sync covers every staged file created before it starts (see appendUpload). */
  readonly #uploadsSync = new GroupSync(() => syncDirectory(this.#uploads));
  #appending = 0;

  private constructor(root: string, fsync: boolean) {
    this.#blobs = join(root, 'blobs');
    this.#uploads = join(root, 'uploads');
    this.#fsync = fsync;
  }

  /**
   * `fsync: false` skips every data and directory sync (the kernel writes back on its own schedule):
   * renames stay atomic, so a process crash is still safe, but a power loss may lose acknowledged blobs.
   */
  static async open(root: string, options: { fsync?: boolean } = {}): Promise<FsBlobStore> {
    const store = new FsBlobStore(root, options.fsync ?? true);
    await mkdir(store.#blobs, { recursive: true });
    await mkdir(store.#uploads, { recursive: true });
    return store;
  }

  #blobPath(digest: string): { dir: string; file: string } {
    const parsed = tryParseDigest(digest);
    if (!parsed) throw new Error(`refusing to build a path from an invalid digest`);
    const dir = join(this.#blobs, parsed.algorithm, parsed.hex.slice(0, 2));
    return { dir, file: join(dir, parsed.hex) };
  }

  #uploadPath(id: string): string {
    if (!UPLOAD_ID.test(id)) throw new Error('refusing to build a path from an invalid upload id');
    return join(this.#uploads, id);
  }

  async stat(digest: string): Promise<number | undefined> {
    try {
      return (await stat(this.#blobPath(digest).file)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async read(digest: string, range?: { start: number; end: number }): Promise<BlobReader> {
    const handle = await open(this.#blobPath(digest).file, 'r');
    let start = 0;
    let length: number;
    try {
      const size = (await handle.stat()).size;
      start = range ? range.start : 0;
      length = range ? Math.min(range.end, size - 1) - range.start + 1 : size;
    } catch (err) {
      await handle.close();
      throw err;
    }
    return {
      length,
      sendTo: async (out) => {
        try {
          await sendFileRange(handle, start, length, out);
        } finally {
          await handle.close();
        }
      },
      close: () => handle.close(),
    };
  }

  async delete(digest: string): Promise<void> {
    await rm(this.#blobPath(digest).file, { force: true });
  }

  async createUpload(id: string): Promise<void> {
    const handle = await open(this.#uploadPath(id), 'wx');
    await handle.close();
  }

  async appendUpload(
    id: string,
    offset: number,
    source: AsyncIterable<Buffer>,
    onData: (chunk: Buffer) => void,
    options: { publishing?: boolean } = {},
  ): Promise<number> {
    const handle = await open(this.#uploadPath(id), 'r+');
    let written = 0;
    let writing: Promise<void> = Promise.resolve();
    let syncing: Promise<void> | undefined;
    this.#appending++;
    try {
      await handle.truncate(offset);
      let position = offset;
      // Small network chunks are gathered and written with one writev: few syscalls, no copying.
      // One write is in flight while the next buffer fills (double buffering), so receiving and
      // hashing overlap with the disk instead of taking turns with it.
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const writeAll = async (buffers: Buffer[], at: number, bytes: number) => {
        let remaining = bytes;
        let offsetInFile = at;
        while (remaining > 0) {
          const { bytesWritten } = await handle.writev(buffers, offsetInFile);
          offsetInFile += bytesWritten;
          remaining -= bytesWritten;
          if (remaining > 0) buffers = dropPrefix(buffers, bytesWritten);
        }
      };
      const flush = async () => {
        await writing;
        if (pendingBytes === 0) return;
        const buffers = pending;
        const bytes = pendingBytes;
        const at = position;
        position += bytes;
        pending = [];
        pendingBytes = 0;
        writing = writeAll(buffers, at, bytes);
        // A failed write must surface: keep the rejection for the next await of `writing`.
        writing.catch(() => {});
      };
      // Start write-back every EARLY_SYNC bytes while the rest still streams in, so the final
      // datasync (which the acknowledgement waits for) has little left to flush. Waiting for the
      // previous early sync before starting the next bounds each upload's unsynced bytes.
      let unsynced = 0;
      for await (const chunk of source) {
        onData(chunk);
        written += chunk.length;
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= this.#batchBytes()) {
          unsynced += pendingBytes;
          await flush();
          if (this.#fsync && unsynced >= EARLY_SYNC) {
            await syncing;
            syncing = handle.datasync();
            unsynced = 0;
          }
        }
      }
      await flush();
      await writing;
      await syncing;
      if (this.#fsync) {
        // The first bytes acknowledged in a staged file need its name to be durable too: fdatasync makes
        // the data durable, not the directory entry `createUpload` made. The two syncs run at once, and
        // concurrent uploads share directory syncs. Bytes about to be published need no staged name:
        // commitUpload renames them and syncs the blob's directory.
        const firstBytes = offset === 0 && written > 0 && !options.publishing;
        await Promise.all([handle.datasync(), firstBytes ? this.#uploadsSync.after() : undefined]);
      }
    } finally {
      this.#appending--;
      // Never close under a write or an early sync still in flight (an aborted body ends the loop
      // early and fails the append with its own error; a sync's failure must not go unhandled).
      await writing.catch(() => {});
      await syncing?.catch(() => {});
      await handle.close();
    }
    return written;
  }

  /** This moment's write batch size: the shared budget split over the uploads in progress. */
  #batchBytes(): number {
    return Math.min(WRITE_BUFFER, Math.max(MIN_WRITE_BUFFER, WRITE_BUDGET / (2 * this.#appending)));
  }

  async readUpload(id: string, length: number): Promise<Readable> {
    if (length === 0) return Readable.from([]);
    return createReadStream(this.#uploadPath(id), { start: 0, end: length - 1, highWaterMark: WRITE_BUFFER });
  }

  async commitUpload(id: string, digest: string, length: number): Promise<void> {
    const source = this.#uploadPath(id);
    const { dir, file } = this.#blobPath(digest);
    const existing = await this.stat(digest);
    if (existing !== undefined) {
      await unlink(source).catch(() => {});
      return;
    }
    if ((await stat(source)).size !== length) {
      // Drop anything past the verified length (an aborted append may have left extra bytes).
      const handle = await open(source, 'r+');
      try {
        await handle.truncate(length);
        if (this.#fsync) await handle.datasync();
      } finally {
        await handle.close();
      }
    }
    await mkdir(dir, { recursive: true });
    await rename(source, file);
    if (this.#fsync) await syncDirectory(dir);
  }

  async deleteUpload(id: string): Promise<void> {
    await rm(this.#uploadPath(id), { force: true });
  }

  async *listUploads(): AsyncIterable<{ id: string; modifiedAt: Date }> {
    const dir = await opendir(this.#uploads);
    for await (const entry of dir) {
      if (!entry.isFile() || !UPLOAD_ID.test(entry.name)) continue;
      try {
        const info = await stat(join(this.#uploads, entry.name));
        yield { id: entry.name, modifiedAt: info.mtime };
      } catch {
        // Removed while listing.
      }
    }
  }

  async close(): Promise<void> {}
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
