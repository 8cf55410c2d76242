import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobReader, BlobStore } from './types.ts';

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
      sendTo: (out) => pipeline(Readable.from([bytes]), out),
      close: async () => {},
    };
  }

  async delete(digest: string): Promise<void> {
    this.#blobs.delete(digest);
  }

  async createUpload(id: string): Promise<void> {
    this.#uploads.set(id, { chunks: [], modifiedAt: new Date() });
  }

  #upload(id: string) {
    const upload = this.#uploads.get(id);
    if (!upload) throw Object.assign(new Error('upload not found'), { code: 'ENOENT' });
    return upload;
  }

  async appendUpload(
    id: string,
    offset: number,
    source: AsyncIterable<Buffer>,
    onData: (chunk: Buffer) => void,
  ): Promise<number> {
    const upload = this.#upload(id);
    upload.chunks = [Buffer.concat(upload.chunks).subarray(0, offset)];
    let written = 0;
    for await (const chunk of source) {
      onData(chunk);
      upload.chunks.push(Buffer.from(chunk));
      written += chunk.length;
    }
    upload.modifiedAt = new Date();
    return written;
  }

  async readUpload(id: string, length: number): Promise<Readable> {
    return Readable.from([Buffer.concat(this.#upload(id).chunks).subarray(0, length)]);
  }

  async commitUpload(id: string, digest: string, length: number): Promise<void> {
    const upload = this.#upload(id);
    if (!this.#blobs.has(digest)) this.#blobs.set(digest, Buffer.concat(upload.chunks).subarray(0, length));
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
