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
  /**
   * Requests in progress per session (waiting for its lock included) and per staged file of a whole
   * blob being pushed: the sweep leaves them alone, however old their row or file looks.
   */
  readonly #busy = new Map<string, number>();
  /**
   * When the last body streamed into a session failed, in this process: activity its row does not show
   * (a PATCH that streamed for a long time and then broke off commits no offset). Forgotten with the
   * session.
   */
  readonly #failedAt = new Map<string, number>();

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
    // The staged file first, then the row that announces the session: a session never exists without a
    // place for its bytes. Should the row fail, the file goes; should the process stop in between, it
    // is a staged file no session owns, which the sweep removes.
    this.#enter(upload.id);
    try {
      await this.#ctx.blobs.createUpload(upload.id);
      let created: boolean;
      try {
        created = await this.#ctx.meta.createUpload(upload, this.#ctx.options.maxUploadSessions);
      } catch (err) {
        await this.#ctx.blobs.deleteUpload(upload.id).catch(() => {});
        throw err;
      }
      if (!created) {
        await this.#ctx.blobs.deleteUpload(upload.id).catch(() => {});
        throw new OciError(
          429,
          'TOOMANYREQUESTS',
          `${this.#ctx.options.maxUploadSessions} upload sessions are open (uploads.maxSessions); finish or cancel one, or retry later`,
          undefined,
          { 'Retry-After': '60' },
        );
      }
    } finally {
      this.#leave(upload.id);
    }
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
   * A session for a status request. One this process holds a running hash for has its bytes staged (it
   * wrote them); any other (after a restart) is checked first, and its bytes restored if need be, so the
   * `Range` it is answered with is one the next request can go on from.
   */
  async status(repo: string, id: string): Promise<UploadRecord> {
    const upload = await this.get(repo, id);
    if (this.#hashes.has(id)) return upload;
    return this.#session(id, async () => {
      const current = await this.get(repo, id);
      if (!this.#hashes.has(id)) await this.#recoverStaged(current);
      return current;
    });
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
    return this.#session(id, async () => {
      const upload = await this.get(repo, id);
      await this.#write(upload, body, { range });
      await this.#ctx.meta.setUploadOffset(id, upload.offset, upload.updatedAt, upload.contentDigest);
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
    return this.#session(id, async () => {
      const upload = await this.get(repo, id);
      const acknowledged = upload.offset;
      if (final) await this.#write(upload, final.body, { range: final.range, publishing: true });
      await this.#verify(upload, digest);
      // Publishing moves the staged bytes away before the link is committed. Should the process stop in
      // between, acknowledged bytes must be found again by a retry (see #recoverStaged), in a blob the
      // session's row names. It names the digest of exactly those bytes since the last PATCH, so when
      // that is the digest published (every byte was PATCHed, as docker and containerd do) nothing more
      // is written; when a last chunk came with this request, the digest published is noted, durably,
      // first. A session with nothing acknowledged before this request needs neither: a retry sends all
      // of its bytes again.
      if (acknowledged > 0 && upload.contentDigest !== digest.value)
        await this.#ctx.meta.markUploadPublishing(id, digest.value);
      await this.#ctx.blobs.commitUpload(id, digest.value, upload.offset);
      await this.#ctx.meta.completeUpload(id, digest.value, upload.offset);
      this.#failedAt.delete(id);
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
    // Its staged file has no session row: only this mark keeps the sweep away from it, since its time
    // of modification moves only when a batch is written (a slow client may take long over one).
    this.#enter(upload.id);
    try {
      await this.#ctx.blobs.createUpload(upload.id);
      const hash = await this.#ctx.blobs.uploadHash(upload.id, digest.algorithm, 0);
      this.#hashes.set(upload.id, { hash, algorithm: digest.algorithm, offset: 0 });
      await this.#write(upload, body, { publishing: true });
      await this.#verify(upload, digest);
      await this.#ctx.blobs.commitUpload(upload.id, digest.value, upload.offset);
      await this.#ctx.meta.linkBlob(repo, digest.value, upload.offset);
      return { size: upload.offset };
    } finally {
      this.#forgetHash(upload.id);
      this.#failedAt.delete(upload.id);
      await this.#ctx.blobs.deleteUpload(upload.id).catch(() => {});
      this.#leave(upload.id);
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
      this.#failedAt.set(id, Date.now());
      throw err;
    }
    if (range && written !== range.end - range.start + 1) {
      this.#forgetHash(id);
      this.#failedAt.set(id, Date.now());
      throw errors.sizeInvalid('chunk length does not match Content-Range', {
        expected: range.end - range.start + 1,
        received: written,
      });
    }
    upload.offset += written;
    upload.updatedAt = Date.now();
    state.offset = upload.offset;
    const soFar = state.hash.digestSoFar;
    if (!publishing && soFar !== undefined) upload.contentDigest = `${state.algorithm}:${soFar}`;
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
    await this.#session(id, async () => {
      await this.get(repo, id);
      await this.#discard(id);
    });
  }

  /**
   * Removes sessions idle for longer than the TTL, and staged files no session owns. A session is idle
   * when no request on it is in progress or waiting, its last committed activity is older than the TTL
   * and no request on it failed since; that is checked when it is listed and again under its lock
   * (a request may have used it in between), so a session in use is never removed.
   */
  async sweep(now = Date.now()): Promise<number> {
    const cutoff = now - this.#ctx.options.uploadTtlMs;
    const idle = (upload: UploadRecord) =>
      !this.#busy.has(upload.id) && Math.max(upload.updatedAt, this.#failedAt.get(upload.id) ?? 0) < cutoff;
    let removed = 0;
    for (;;) {
      const stale = await this.#ctx.meta.listStaleUploads(cutoff, 100);
      let progress = 0;
      for (const listed of stale) {
        if (!idle(listed)) continue;
        const discarded = await this.#locks
          .run(listed.id, async () => {
            const upload = await this.#ctx.meta.getUpload(listed.id);
            if (!upload || !idle(upload)) return false;
            await this.#discard(upload.id);
            return true;
          })
          .catch((err: unknown) => {
            // One that cannot be removed (a full disk) does not keep the others.
            this.#ctx.log.warn({ err, upload: listed.id }, 'could not remove an expired upload session');
            return false;
          });
        if (discarded) progress++;
      }
      removed += progress;
      // Sessions skipped as busy are listed again: stop once a full page gave nothing.
      if (stale.length < 100 || progress === 0) break;
    }
    for await (const staged of this.#ctx.blobs.listUploads()) {
      if (staged.modifiedAt.getTime() >= cutoff || this.#busy.has(staged.id)) continue;
      if (await this.#ctx.meta.hasUpload(staged.id)) continue;
      // A request may have started on it while the row was looked up.
      if (this.#busy.has(staged.id)) continue;
      try {
        await this.#ctx.blobs.deleteUpload(staged.id);
        removed++;
      } catch (err) {
        this.#ctx.log.warn({ err, upload: staged.id }, 'could not remove a staged upload file');
      }
    }
    return removed;
  }

  /** Runs a request on a session: under its lock, marked busy from its arrival (see sweep). */
  async #session<T>(id: string, fn: () => Promise<T>): Promise<T> {
    this.#enter(id);
    try {
      return await this.#locks.run(id, fn);
    } finally {
      this.#leave(id);
    }
  }

  #enter(id: string): void {
    this.#busy.set(id, (this.#busy.get(id) ?? 0) + 1);
  }

  #leave(id: string): void {
    const count = (this.#busy.get(id) ?? 1) - 1;
    if (count === 0) this.#busy.delete(id);
    else this.#busy.set(id, count);
  }

  /**
   * Removes a session: its staged file first, so that its space comes back even when the row cannot be
   * deleted (a full disk refuses that write too); a row left without its file is then a session that
   * lost its bytes (see #recoverStaged), and the next cancel or sweep deletes it.
   */
  async #discard(id: string): Promise<void> {
    this.#forgetHash(id);
    this.#failedAt.delete(id);
    await this.#ctx.blobs.deleteUpload(id);
    await this.#ctx.meta.deleteUpload(id);
  }

  /** The running hash for `algorithm` at the acknowledged offset, rebuilt from staged bytes if needed. */
  async #hashState(upload: UploadRecord, algorithm: string): Promise<HashState> {
    const cached = this.#hashes.get(upload.id);
    if (cached && cached.algorithm === algorithm && cached.offset === upload.offset) return cached;
    if (!isSupportedAlgorithm(algorithm)) throw errors.digestInvalid('unsupported digest algorithm');
    this.#forgetHash(upload.id);
    // Not in memory: the process restarted, or the last request on the session failed. Either way the
    // staged bytes are checked before anything builds on them.
    await this.#recoverStaged(upload);
    const hash = await this.#ctx.blobs.uploadHash(upload.id, algorithm, upload.offset);
    const state = { hash, algorithm, offset: upload.offset };
    this.#hashes.set(upload.id, state);
    return state;
  }

  /**
   * Makes sure a session's acknowledged bytes are staged. They are not when the process stopped after
   * publishing them and before linking them (finish): the session's row names the blob they went to
   * (`contentDigest`), and they are copied back from its start, so a retried PUT, or a PATCH, goes on
   * as if nothing had happened. A session with nothing acknowledged just gets a new, empty staged file.
   * A session whose bytes are gone for good (removed from outside, or lost to a power loss with
   * `storage.fsync: false`) cannot go on: it is removed, and the client told so (404
   * BLOB_UPLOAD_UNKNOWN) rather than given an offset it cannot build on.
   */
  async #recoverStaged(upload: UploadRecord): Promise<void> {
    const { blobs, log } = this.#ctx;
    const staged = await blobs.uploadSize(upload.id);
    if (staged !== undefined && staged >= upload.offset) return;
    if (staged === undefined) {
      if (upload.offset === 0) {
        await blobs.createUpload(upload.id);
        return;
      }
      const holder = upload.contentDigest;
      if (holder !== undefined && ((await blobs.stat(holder)) ?? -1) >= upload.offset) {
        await blobs.restoreUpload(upload.id, holder, upload.offset);
        log.warn(
          { upload: upload.id, digest: holder, offset: upload.offset },
          'upload session restored from the blob it was published as before a restart',
        );
        return;
      }
    }
    log.warn(
      { upload: upload.id, offset: upload.offset, staged: staged ?? null },
      'upload session lost its staged bytes; removed',
    );
    await this.#discard(upload.id).catch((err: unknown) =>
      log.error({ err, upload: upload.id }, 'could not remove an upload session'),
    );
    throw new OciError(404, 'BLOB_UPLOAD_UNKNOWN', 'blob upload lost its data; start a new upload', {
      id: upload.id,
    });
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
