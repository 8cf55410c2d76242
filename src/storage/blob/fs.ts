import { randomUUID } from 'node:crypto';
import { mkdir, open, opendir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sendFileRange } from '../../io/file-sender.ts';
import { tryParseDigest } from '../../oci/digest.ts';
import { GroupSync } from '../group-sync.ts';
import { syncDirectory } from '../sync-directory.ts';
import { IngestWorker } from './ingest.ts';
import type { BlobReader, BlobStore, UploadHash } from './types.ts';

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
  /** Hashes and writes upload bodies on a worker thread (ingest.ts). */
  readonly #ingest = new IngestWorker();
  /** Blob directories known to exist (see #renameInto). */
  readonly #blobDirs = new Set<string>();
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
      sendTo: async (out, pace) => {
        try {
          await sendFileRange(handle, start, length, out, { pace });
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

  async uploadSize(id: string): Promise<number | undefined> {
    try {
      return (await stat(this.#uploadPath(id))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Copied under a new upload id first, synced, then renamed to `id`: a crash midway leaves a staged
   * file no session owns (swept once it is older than the TTL), never a short one under `id`. Only
   * after a crash, so a plain copy loop does.
   */
  async restoreUpload(id: string, digest: string, length: number): Promise<void> {
    const target = this.#uploadPath(id);
    const temporary = this.#uploadPath(randomUUID());
    const source = await open(this.#blobPath(digest).file, 'r');
    try {
      const copy = await open(temporary, 'wx');
      try {
        const buffer = Buffer.allocUnsafe(Math.min(WRITE_BUFFER, Math.max(1, length)));
        for (let at = 0; at < length; ) {
          const { bytesRead } = await source.read(buffer, 0, Math.min(buffer.length, length - at), at);
          if (bytesRead === 0) throw new Error(`blob ${digest} is shorter than ${length} bytes`);
          for (let done = 0; done < bytesRead; ) {
            done += (await copy.write(buffer, done, bytesRead - done, at + done)).bytesWritten;
          }
          at += bytesRead;
        }
        if (this.#fsync) await copy.datasync();
      } finally {
        await copy.close();
      }
      await rename(temporary, target);
    } catch (err) {
      await rm(temporary, { force: true });
      throw err;
    } finally {
      await source.close();
    }
    if (this.#fsync) await syncDirectory(this.#uploads);
  }

  uploadHash(id: string, algorithm: string, length: number): Promise<UploadHash> {
    return this.#ingest.createHash(algorithm, this.#uploadPath(id), length);
  }

  async appendUpload(
    id: string,
    offset: number,
    source: AsyncIterable<Buffer>,
    hash: UploadHash,
    options: { publishing?: boolean } = {},
  ): Promise<number> {
    // The first bytes acknowledged in a staged file need its name to be durable too: fdatasync makes the
    // data durable, not the directory entry `createUpload` made. That sync runs while the body streams
    // in (the entry exists already), and concurrent uploads share directory syncs. Bytes about to be
    // published need no staged name: commitUpload renames them and syncs the blob's directory.
    const nameDurable =
      this.#fsync && offset === 0 && !options.publishing ? this.#uploadsSync.after() : undefined;
    // A failure is reported by the await below, or (with nothing written) by the next sync: it is final.
    nameDurable?.catch(() => {});
    this.#appending++;
    try {
      const written = await this.#ingest.append(this.#uploadPath(id), offset, hash, source, {
        fsync: this.#fsync,
        batchBytes: () => this.#batchBytes(),
        digest: options.publishing === true,
      });
      if (written > 0) await nameDurable;
      return written;
    } finally {
      this.#appending--;
    }
  }

  /** This moment's write batch size: the shared budget split over the uploads in progress. */
  #batchBytes(): number {
    return Math.min(WRITE_BUFFER, Math.max(MIN_WRITE_BUFFER, WRITE_BUDGET / (2 * this.#appending)));
  }

  /**
   * The verified bytes always take the blob's name, replacing a file already there: a file damaged
   * behind Tether's back (short after a power loss with `fsync: false`, or altered) is repaired by
   * pushing the blob again, and a rename costs what dropping the staged copy did. Whether the new name
   * must be synced depends on what was there: nothing, or a file of another size (damaged), and the
   * acknowledgement depends on it; a file of the right size was most likely intact, and either file is
   * right, so that replacement becomes durable with the file system's next commit, saving a sync on
   * every push of a blob the store already holds.
   */
  async commitUpload(id: string, digest: string, length: number): Promise<void> {
    const source = this.#uploadPath(id);
    const { dir, file } = this.#blobPath(digest);
    // Both questions at once, since each is a trip through the thread pool: what size is the blob there
    // already, if any, and does the staged file hold exactly `length` bytes?
    const stagedSize = stat(source).then((info) => info.size);
    stagedSize.catch(() => {});
    const existing = await this.stat(digest);
    if ((await stagedSize) !== length) {
      // Drop anything past the verified length (an aborted append may have left extra bytes).
      const handle = await open(source, 'r+');
      try {
        await handle.truncate(length);
        if (this.#fsync) await handle.datasync();
      } finally {
        await handle.close();
      }
    }
    await this.#renameInto(dir, source, file);
    if (this.#fsync && existing !== length) await syncDirectory(dir);
  }

  /**
   * Moves a file into a blob directory, creating the directory the first time. Directories are never
   * removed here, so each is created (and checked) once per process instead of once per blob; one
   * removed from outside is created again.
   */
  async #renameInto(dir: string, source: string, file: string): Promise<void> {
    if (!this.#blobDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.#blobDirs.add(dir);
    }
    try {
      await rename(source, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(dir, { recursive: true });
      await rename(source, file);
    }
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

  async close(): Promise<void> {
    await this.#ingest.close();
  }
}
