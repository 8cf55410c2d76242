import type { Writable } from 'node:stream';
import type { SendPace } from '../../io/file-sender.ts';

/** An opened published blob (or a byte range of it), ready to be sent. */
export interface BlobReader {
  /** Bytes this reader sends. */
  readonly length: number;
  /**
   * Writes the bytes into `out` under its backpressure, ends `out` and releases the reader. Rejects when
   * `out` fails or closes early (a client that went away) or storage fails mid-way. `pace`, when given,
   * hears what `out` has taken (the server's watch for stalled downloads).
   */
  sendTo(out: Writable, pace?: SendPace): Promise<void>;
  /** Releases a reader that will not be sent. */
  close(): Promise<void>;
}

/**
 * The running digest of an upload's bytes, kept by the store that writes them (the file store hashes
 * and writes on the same worker thread, see ingest.ts). The registry decides when to ask for it.
 */
export interface UploadHash {
  readonly algorithm: string;
  /**
   * The hex digest of every byte fed so far, as of the last append that completed (not one that
   * publishes: that one's digest is `digest()`); undefined before. It costs no read: the store takes
   * it from a copy of the running hash as the append ends.
   */
  readonly digestSoFar: string | undefined;
  /** The hex digest of every byte fed so far. Consumes the hash. */
  digest(): Promise<string>;
  /** Releases a hash that will not be digested. */
  dispose(): void;
}

/**
 * Content-addressed bytes. The BlobStore knows nothing about repositories, tags or which digest a blob
 * must have: it hashes what it stores, the registry compares, and the MetaStore decides who may see a
 * blob.
 *
 * Uploads are staged objects named by an opaque, validated id. Appends are positional: `append` first
 * truncates the staged object to `offset`, so bytes from a request that crashed or failed halfway are
 * dropped and the acknowledged offset (kept by the MetaStore) stays the single truth.
 */
export interface BlobStore {
  /** Size in bytes of a published blob, or undefined when absent. */
  stat(digest: string): Promise<number | undefined>;
  /**
   * Opens a published blob, optionally a byte range (inclusive `end`). Opening first lets a missing
   * blob fail before any response header is sent.
   */
  read(digest: string, range?: { start: number; end: number }): Promise<BlobReader>;
  /** Removes a published blob (garbage collection only; repositories drop links, not bytes). */
  delete(digest: string): Promise<void>;

  createUpload(id: string): Promise<void>;
  /** How many bytes an upload has staged, or undefined when its staged object does not exist. */
  uploadSize(id: string): Promise<number | undefined>;
  /**
   * Stages the first `length` bytes of the published blob `digest` as upload `id` (replacing nothing:
   * the upload's staged object is gone). For a session whose bytes were published but not linked when
   * the process stopped: its acknowledged bytes are the start of that blob. Atomic: a crash midway leaves
   * no staged object under `id`.
   */
  restoreUpload(id: string, digest: string, length: number): Promise<void>;
  /**
   * A running hash of the first `length` staged bytes of an upload (0 for a new one; more when an upload
   * resumes after a restart or on another replica, since running hashes live in memory only).
   */
  uploadHash(id: string, algorithm: string, length: number): Promise<UploadHash>;
  /**
   * Writes `source` at `offset` (after truncating to it) and makes it durable before resolving with the
   * number of bytes written: the bytes, and the staged object itself, since an acknowledged chunk must
   * survive a crash. With `publishing` (the caller publishes the upload next, with commitUpload) only the
   * bytes must be durable, and `hash` takes no more bytes: only its digest is asked for next. Every chunk
   * also feeds `hash` (one of this store's), in order. The store takes
   * the chunks over: the caller must not touch them afterwards (the file store transfers them to another
   * thread). On failure `hash` has seen bytes that were not stored: dispose it and ask for a new one.
   */
  appendUpload(
    id: string,
    offset: number,
    source: AsyncIterable<Buffer>,
    hash: UploadHash,
    options?: { publishing?: boolean },
  ): Promise<number>;
  /**
   * Publishes staged bytes as `digest` atomically. A blob already there is replaced by them (they were
   * verified; a stored file may have been damaged since it was written).
   */
  commitUpload(id: string, digest: string, length: number): Promise<void>;
  deleteUpload(id: string): Promise<void>;
  /** Staged uploads with their last modification time, for sweeping orphans. */
  listUploads(): AsyncIterable<{ id: string; modifiedAt: Date }>;
  close(): Promise<void>;
}
