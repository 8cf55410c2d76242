import { randomUUID } from 'node:crypto';
import { type Digest, type DigestAlgorithm, isSupportedAlgorithm } from '../oci/digest.ts';
import { errors, OciError } from '../oci/errors.ts';
import type { UploadHash } from '../storage/blob/types.ts';
import type { UploadRecord } from '../storage/meta/types.ts';
import type { RegistryContext } from './context.ts';
import { KeyedLock } from './keyed-lock.ts';

interface HashState {
  hash: UploadHash;
  algorithm: string;
  offset: number;
}

/**
 * Blob upload sessions. The BlobStore hashes bytes as it stores them, so finishing an upload costs no
 * second read. The running hash lives in memory; after a restart (or on another replica) it is rebuilt
 * from the staged bytes, so the acknowledged offset in the MetaStore stays the only durable state.
 */
export class Uploads {
  readonly #ctx: RegistryContext;
  readonly #hashes = new Map<string, HashState>();
  readonly #locks = new KeyedLock();

  constructor(ctx: RegistryContext) {
    this.#ctx = ctx;
  }

  async start(repo: string, algorithm: DigestAlgorithm = 'sha256'): Promise<UploadRecord> {
    const now = Date.now();
    const upload: UploadRecord = {
      id: randomUUID(),
      repo,
      offset: 0,
      algorithm,
      startedAt: now,
      updatedAt: now,
    };
    await this.#ctx.meta.createUpload(upload);
    await this.#ctx.blobs.createUpload(upload.id);
    const hash = await this.#ctx.blobs.uploadHash(upload.id, algorithm, 0);
    this.#hashes.set(upload.id, { hash, algorithm, offset: 0 });
    return upload;
  }

  /** Finds a live session of this repository, or throws 404 BLOB_UPLOAD_UNKNOWN. */
  async get(repo: string, id: string): Promise<UploadRecord> {
    const upload = /^[a-f0-9-]{36}$/.test(id) ? await this.#ctx.meta.getUpload(id) : undefined;
    if (!upload || upload.repo !== repo) throw errors.uploadUnknown(id);
    return upload;
  }

  /**
   * Appends a request body at the session's offset. With `range` (from Content-Range) the chunk must start
   * exactly at the current offset and have the declared length; otherwise 416 and nothing changes.
   */
  async append(
    repo: string,
    id: string,
    body: AsyncIterable<Buffer>,
    range?: { start: number; end: number },
  ): Promise<UploadRecord> {
    return this.#locks.run(id, async () => {
      const upload = await this.get(repo, id);
      await this.#write(upload, body, { range });
      await this.#ctx.meta.setUploadOffset(id, upload.offset, upload.updatedAt);
      return upload;
    });
  }

  /**
   * Verifies the whole blob against `digest` and publishes it into the session's repository; `final` is a
   * last chunk sent with the finishing request (its offset is never committed on its own: the blob is).
   */
  async finish(
    repo: string,
    id: string,
    digest: Digest,
    final?: { body: AsyncIterable<Buffer>; range?: { start: number; end: number } },
  ): Promise<{ size: number }> {
    return this.#locks.run(id, async () => {
      const upload = await this.get(repo, id);
      if (final) await this.#write(upload, final.body, { range: final.range, publishing: true });
      await this.#verify(upload, digest);
      await this.#ctx.blobs.commitUpload(id, digest.value, upload.offset);
      await this.#ctx.meta.completeUpload(id, digest.value, upload.offset);
      return { size: upload.offset };
    });
  }

  /**
   * A whole blob in one request (POST with `digest`): staged, hashed, published and linked without an
   * upload session row, since nothing about it is acknowledged before it is complete. A crash leaves at
   * most a staged file that no session owns, which the sweep removes.
   */
  async putWhole(repo: string, digest: Digest, body: AsyncIterable<Buffer>): Promise<{ size: number }> {
    const now = Date.now();
    const upload: UploadRecord = {
      id: randomUUID(),
      repo,
      offset: 0,
      algorithm: digest.algorithm,
      startedAt: now,
      updatedAt: now,
    };
    await this.#ctx.blobs.createUpload(upload.id);
    const hash = await this.#ctx.blobs.uploadHash(upload.id, digest.algorithm, 0);
    this.#hashes.set(upload.id, { hash, algorithm: digest.algorithm, offset: 0 });
    try {
      await this.#write(upload, body, { publishing: true });
      await this.#verify(upload, digest);
      await this.#ctx.blobs.commitUpload(upload.id, digest.value, upload.offset);
      await this.#ctx.meta.linkBlob(repo, digest.value, upload.offset);
      return { size: upload.offset };
    } finally {
      this.#forgetHash(upload.id);
      await this.#ctx.blobs.deleteUpload(upload.id).catch(() => {});
    }
  }

  /**
   * Streams a body to the staged bytes at the session's offset, hashing on the way; updates `upload`.
   * `publishing`: the bytes are published right after, never acknowledged as a chunk of their own.
   */
  async #write(
    upload: UploadRecord,
    body: AsyncIterable<Buffer>,
    { range, publishing = false }: { range?: { start: number; end: number }; publishing?: boolean } = {},
  ): Promise<void> {
    const { id, repo } = upload;
    if (range && range.start !== upload.offset) {
      throw errors.rangeNotSatisfiable('chunk does not start at the end of the uploaded data', {
        Location: uploadLocation(repo, id),
        Range: rangeHeader(upload.offset),
        'Docker-Upload-UUID': id,
      });
    }
    const state = await this.#hashState(upload, upload.algorithm);
    const limit = this.#ctx.options.blobMaxBytes;
    let written: number;
    try {
      written = await this.#ctx.blobs.appendUpload(
        id,
        upload.offset,
        limitBody(body, upload.offset, limit),
        state.hash,
        { publishing },
      );
    } catch (err) {
      // The hash has seen bytes the offset does not acknowledge: rebuild it from storage next time.
      this.#forgetHash(id);
      throw err;
    }
    if (range && written !== range.end - range.start + 1) {
      this.#forgetHash(id);
      throw errors.sizeInvalid('chunk length does not match Content-Range', {
        expected: range.end - range.start + 1,
        received: written,
      });
    }
    upload.offset += written;
    upload.updatedAt = Date.now();
    state.offset = upload.offset;
  }

  /** Compares the running hash with `digest`; on mismatch the session is discarded and 400 thrown. */
  async #verify(upload: UploadRecord, digest: Digest): Promise<void> {
    const state = await this.#hashState(upload, digest.algorithm);
    // Digesting consumes the hash: whatever happens next, the session needs a new one.
    this.#hashes.delete(upload.id);
    const actual = `${digest.algorithm}:${await state.hash.digest()}`;
    if (actual !== digest.value) {
      await this.#discard(upload.id);
      throw errors.digestInvalid('uploaded content does not match the digest', {
        expected: digest.value,
        actual,
        size: upload.offset,
      });
    }
  }

  async cancel(repo: string, id: string): Promise<void> {
    await this.#locks.run(id, async () => {
      await this.get(repo, id);
      await this.#discard(id);
    });
  }

  /** Removes sessions idle for longer than the TTL, and staged files no session owns. */
  async sweep(now = Date.now()): Promise<number> {
    const cutoff = now - this.#ctx.options.uploadTtlMs;
    let removed = 0;
    for (;;) {
      const stale = await this.#ctx.meta.listStaleUploads(cutoff, 100);
      for (const upload of stale) {
        await this.#locks.run(upload.id, () => this.#discard(upload.id));
        removed++;
      }
      if (stale.length < 100) break;
    }
    for await (const staged of this.#ctx.blobs.listUploads()) {
      if (staged.modifiedAt.getTime() < cutoff && !(await this.#ctx.meta.hasUpload(staged.id))) {
        await this.#ctx.blobs.deleteUpload(staged.id);
        removed++;
      }
    }
    return removed;
  }

  async #discard(id: string): Promise<void> {
    this.#forgetHash(id);
    await this.#ctx.meta.deleteUpload(id);
    await this.#ctx.blobs.deleteUpload(id);
  }

  /** The running hash for `algorithm` at the acknowledged offset, rebuilt from staged bytes if needed. */
  async #hashState(upload: UploadRecord, algorithm: string): Promise<HashState> {
    const cached = this.#hashes.get(upload.id);
    if (cached && cached.algorithm === algorithm && cached.offset === upload.offset) return cached;
    if (!isSupportedAlgorithm(algorithm)) throw errors.digestInvalid('unsupported digest algorithm');
    this.#forgetHash(upload.id);
    const hash = await this.#ctx.blobs.uploadHash(upload.id, algorithm, upload.offset);
    const state = { hash, algorithm, offset: upload.offset };
    this.#hashes.set(upload.id, state);
    return state;
  }

  #forgetHash(id: string): void {
    this.#hashes.get(id)?.hash.dispose();
    this.#hashes.delete(id);
  }
}

export function uploadLocation(repo: string, id: string): string {
  return `/v2/${repo}/blobs/uploads/${id}`;
}

/** The upload `Range` header: inclusive end of the data so far, `0-0` when empty (as Distribution does). */
export function rangeHeader(offset: number): string {
  return `0-${Math.max(0, offset - 1)}`;
}

async function* limitBody(body: AsyncIterable<Buffer>, offset: number, limit: number): AsyncIterable<Buffer> {
  let total = offset;
  for await (const chunk of body) {
    total += chunk.length;
    if (limit > 0 && total > limit)
      throw new OciError(413, 'SIZE_INVALID', 'blob exceeds the size limit', { limit });
    yield chunk;
  }
}
