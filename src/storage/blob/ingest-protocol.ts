/**
 * Messages between the event loop and the ingest worker (see ingest.ts). Types only: both sides import
 * them, nothing here runs.
 */
export type IngestRequest =
  /**
   * A running hash; with `path`, seeded with the first `length` bytes of that file (a resumed upload).
   * Without `call` nothing is answered: a fresh hash cannot fail, and later requests queue behind it.
   */
  | { op: 'hash'; call?: number; hash: number; algorithm: string; path?: string; length: number }
  /** The hex digest of everything the hash has seen; the hash is gone afterwards. */
  | { op: 'digest'; call: number; hash: number }
  | { op: 'free'; hash: number }
  /** Opens `path` for an append at `offset` (truncating there); its bytes feed `hash`. */
  | { op: 'open'; append: number; path: string; offset: number; hash: number; fsync: boolean }
  /**
   * Body bytes, transferred: hashed, then written at the append's position. Acknowledged once written (or,
   * on the O_DIRECT side, once copied into its staging memory): the acknowledgement paces the sender; only
   * `end` says the bytes are durable.
   */
  | { op: 'data'; append: number; chunks: Uint8Array<ArrayBuffer>[] }
  /**
   * Every byte was sent: finish the writes, sync when asked, close. Answered with the hash's digest: with
   * `digest` the hash is finished (gone afterwards), without it the digest is of a copy (the hash goes on).
   */
  | { op: 'end'; call: number; append: number; digest: boolean }
  /** The body failed: wait for what is in flight and close, keeping nothing else. */
  | { op: 'abort'; call: number; append: number };

export type IngestReply =
  | { type: 'ack'; append: number; error?: IngestError }
  | { type: 'done'; call: number; digest?: string; error?: IngestError };

/** An error as it crosses the thread boundary (errno fields survive, so ENOSPC still maps to 507). */
export interface IngestError {
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
}
