import { createHash, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { SendPace } from '../../io/file-sender.ts';
import type { BlobReader, BlobStore, UploadHash } from './types.ts';

/** What the memory store sends a blob in: small enough that a watched transfer shows progress often. */
const PIECE = 64 * 1024;

/**
 * A blob's bytes in pieces (views, no copies), each counted in `pace` as it is taken: the stream pulls the
 * next piece only once `out` has room, so a client that stops reading stops the count (send-idle.ts).
 */
function* pieces(bytes: Buffer, pace?: SendPace): Generator<Buffer> {
  for (let at = 0; at < bytes.length; at += PIECE) {
    const piece = bytes.subarray(at, Math.min(at + PIECE, bytes.length));
    if (pace) pace.sent += piece.length;
    yield piece;
  }
}

/**
 * In-memory BlobStore for tests and embedded test registries. It holds whole blobs in memory by design;
 * production storage streams (see fs.ts).
 */
export class MemoryBlobStore implements BlobStore {
  readonly #blobs = new Map<string, Buffer>();
  readonly #uploads = new Map<string, { chunks: Buffer[]; modifiedAt: Date }>();

  async stat(digest: string): Promise<number | undefined> {
    return this.#blobs.get(digest)?.length;
  }

  async read(digest: string, range?: { start: number; end: number }): Promise<BlobReader> {
    const blob = this.#blobs.get(digest);
    if (!blob) throw Object.assign(new Error('blob not found'), { code: 'ENOENT' });
    const bytes = range ? blob.subarray(range.start, range.end + 1) : blob;
    return {
      length: bytes.length,
      sendTo: (out, pace) => pipeline(Readable.from(pieces(bytes, pace)), out),
      close: async () => {},
    };
  }

  async delete(digest: string): Promise<void> {
    this.#blobs.delete(digest);
  }

  async createUpload(id: string): Promise<void> {
    this.#uploads.set(id, { chunks: [], modifiedAt: new Date() });
  }

  async uploadSize(id: string): Promise<number | undefined> {
    return this.#uploads.get(id)?.chunks.reduce((size, chunk) => size + chunk.length, 0);
  }

  async restoreUpload(id: string, digest: string, length: number): Promise<void> {
    const blob = this.#blobs.get(digest);
    if (!blob || blob.length < length)
      throw new Error(`blob ${digest} is missing or shorter than ${length} bytes`);
    this.#uploads.set(id, { chunks: [Buffer.from(blob.subarray(0, length))], modifiedAt: new Date() });
  }

  #upload(id: string) {
    const upload = this.#uploads.get(id);
    if (!upload) throw Object.assign(new Error('upload not found'), { code: 'ENOENT' });
    return upload;
  }

  async uploadHash(id: string, algorithm: string, length: number): Promise<UploadHash> {
    const hash = new LocalUploadHash(algorithm);
    if (length > 0) hash.update(Buffer.concat(this.#upload(id).chunks).subarray(0, length));
    return hash;
  }

  async appendUpload(
    id: string,
    offset: number,
    source: AsyncIterable<Buffer>,
    hash: UploadHash,
  ): Promise<number> {
    if (!(hash instanceof LocalUploadHash)) throw new Error('upload hash of another store');
    const upload = this.#upload(id);
    upload.chunks = [Buffer.concat(upload.chunks).subarray(0, offset)];
    let written = 0;
    for await (const chunk of source) {
      hash.update(chunk);
      upload.chunks.push(Buffer.from(chunk));
      written += chunk.length;
    }
    hash.noteProgress();
    upload.modifiedAt = new Date();
    return written;
  }

  async commitUpload(id: string, digest: string, length: number): Promise<void> {
    const upload = this.#upload(id);
    this.#blobs.set(digest, Buffer.concat(upload.chunks).subarray(0, length));
    this.#uploads.delete(id);
  }

  async deleteUpload(id: string): Promise<void> {
    this.#uploads.delete(id);
  }

  async *listUploads(): AsyncIterable<{ id: string; modifiedAt: Date }> {
    for (const [id, upload] of this.#uploads) yield { id, modifiedAt: upload.modifiedAt };
  }

  async close(): Promise<void> {
    this.#blobs.clear();
    this.#uploads.clear();
  }
}

/** A running hash on the event loop: the memory store hashes where it stores. */
class LocalUploadHash implements UploadHash {
  readonly algorithm: string;
  readonly #hash: Hash;
  digestSoFar: string | undefined;

  constructor(algorithm: string) {
    this.algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  update(chunk: Buffer): void {
    this.#hash.update(chunk);
  }

  /** An append completed: its digest so far, from a copy. */
  noteProgress(): void {
    this.digestSoFar = this.#hash.copy().digest('hex');
  }

  async digest(): Promise<string> {
    return this.#hash.digest('hex');
  }

  dispose(): void {}
}
