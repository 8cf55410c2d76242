import { Worker } from 'node:worker_threads';
import type { IngestError, IngestReply, IngestRequest } from './ingest-protocol.ts';
import type { UploadHash } from './types.ts';

/**
 * Upload bodies are hashed and written on a worker thread, not on the event loop. On a push the event
 * loop was the bottleneck: sha256 alone took ~45 % of it, and with two cores the other one sat partly
 * idle. Node's HTTP parser hands every body chunk over in a buffer of its own, so the chunks are
 * *transferred* to the worker (no copy) in batches; the worker hashes them and writes them with the
 * same positional writev and early write-back as before. Measured in docs/performance.md.
 *
 * One worker serves every upload of a store. Since a transferred chunk is unusable afterwards, the
 * worker must both hash and write it; so the running hash of an upload lives there too, and the
 * registry holds only a handle to it (UploadHash).
 */
export class IngestWorker {
  #worker: Worker | undefined;
  /** Bumped when a worker is replaced: hashes that lived in the old one are gone. */
  #generation = 0;
  #nextId = 1;
  readonly #calls = new Map<number, { resolve: (digest?: string) => void; reject: (err: Error) => void }>();
  /** Per append, the acknowledgement of its batch in flight. */
  readonly #acks = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();

  /** A running hash of the first `length` bytes of the file at `path` (none of them when 0). */
  async createHash(algorithm: string, path: string, length: number): Promise<UploadHash> {
    const worker = this.#start();
    const id = this.#nextId++;
    const hash = new IngestHash(this, id, this.#generation, algorithm);
    if (length === 0) worker.postMessage({ op: 'hash', hash: id, algorithm, length } satisfies IngestRequest);
    else await this.#call({ op: 'hash', hash: id, algorithm, path, length });
    return hash;
  }

  /** The hex digest of a hash; the hash is consumed. */
  async digest(hash: IngestHash): Promise<string> {
    if (hash.final !== undefined) return hash.final;
    this.#checkAlive(hash);
    const digest = await this.#call({ op: 'digest', hash: hash.id });
    if (digest === undefined) throw new Error('ingest worker returned no digest');
    return digest;
  }

  free(hash: IngestHash): void {
    if (hash.generation === this.#generation) this.#worker?.postMessage({ op: 'free', hash: hash.id });
  }

  /**
   * Streams `source` into the file at `path` from `offset` (truncating there first), feeding `hash`;
   * resolves with the byte count once the worker has written everything (and synced it, with `fsync`).
   * The chunks are handed over: a chunk that owns its whole ArrayBuffer is transferred and unusable
   * afterwards; any other is copied first. With `digest`, the hash is finished with the append (the
   * caller publishes next): its digest comes back with the append's last reply instead of costing
   * another round trip, which small blobs notice.
   */
  async append(
    path: string,
    offset: number,
    hash: UploadHash,
    source: AsyncIterable<Buffer>,
    options: { fsync: boolean; batchBytes: () => number; digest?: boolean },
  ): Promise<number> {
    if (!(hash instanceof IngestHash) || hash.owner !== this) throw new Error('upload hash of another store');
    this.#checkAlive(hash);
    const worker = this.#start();
    const id = this.#nextId++;
    worker.postMessage({
      op: 'open',
      append: id,
      path,
      offset,
      hash: hash.id,
      fsync: options.fsync,
    } satisfies IngestRequest);
    let written = 0;
    let batch: Uint8Array<ArrayBuffer>[] = [];
    /** Memory the batch holds: its chunks, and the whole of each staging buffer in it. */
    let batchBytes = 0;
    /** Small chunks are copied into this, in order, instead of each being sent as an object of its own. */
    let stage: Uint8Array<ArrayBuffer> | undefined;
    let staged = 0;
    let inFlight: Promise<void> | undefined;
    /** Moves the staged bytes into the batch: the staging buffer itself when full, else a copy of them. */
    const unstage = () => {
      if (stage === undefined || staged === 0) return;
      if (staged === stage.length) {
        batch.push(stage);
        batchBytes += stage.length;
        stage = undefined;
      } else {
        batch.push(stage.slice(0, staged));
        batchBytes += staged;
      }
      staged = 0;
    };
    const send = () => {
      const chunks = batch;
      batch = [];
      batchBytes = 0;
      inFlight = new Promise<void>((resolve, reject) => this.#acks.set(id, { resolve, reject }));
      // A failed write may be reported while the loop still waits for body bytes; the next await of
      // `inFlight` throws it.
      inFlight.catch(() => {});
      this.#hold();
      worker.postMessage(
        { op: 'data', append: id, chunks } satisfies IngestRequest,
        chunks.map((c) => c.buffer),
      );
    };
    try {
      for await (const chunk of source) {
        written += chunk.length;
        if (chunk.length >= TRANSFER_FROM) {
          unstage();
          batch.push(owned(chunk));
          batchBytes += chunk.length;
        } else {
          let offset = 0;
          while (offset < chunk.length) {
            stage ??= new Uint8Array(STAGE_BYTES);
            const n = Math.min(chunk.length - offset, stage.length - staged);
            stage.set(chunk.subarray(offset, offset + n), staged);
            staged += n;
            offset += n;
            if (staged === stage.length) unstage();
          }
        }
        if (batchBytes >= options.batchBytes()) {
          // One batch in the worker while the next fills: receiving overlaps with hashing and writing.
          await inFlight;
          send();
        }
      }
      unstage();
      await inFlight;
      // The end waits for the last batch's write in the worker, and reports its failure.
      if (batchBytes > 0) send();
      const digest = await this.#call({ op: 'end', append: id, digest: options.digest === true });
      if (options.digest === true) hash.final = digest;
      else hash.digestSoFar = digest;
    } catch (err) {
      // The abort waits for the write in flight and closes the file before the caller truncates or
      // deletes it (a worker that is gone has closed everything already).
      if (this.#worker === worker) await this.#call({ op: 'abort', append: id }).catch(() => {});
      throw err;
    } finally {
      this.#acks.delete(id);
    }
    return written;
  }

  /** Hashes live in one worker: after it is replaced, theirs are gone. */
  #checkAlive(hash: IngestHash): void {
    if (hash.generation !== this.#generation) throw new Error('the upload hash was lost with its worker');
  }

  /** Stops the worker; hashes still held are lost (a later upload starts a new worker). */
  async close(): Promise<void> {
    const worker = this.#worker;
    if (!worker) return;
    this.#retire(worker, new Error('blob store closed'));
    await worker.terminate();
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const entry = import.meta.url.endsWith('.ts') ? './ingest-worker.ts' : './ingest-worker.js';
    const worker = new Worker(new URL(entry, import.meta.url), {
      // Its heap only holds small messages and handles; the body bytes are transferred ArrayBuffers.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
      // The process's flags are not the worker's business (`--input-type` would even refuse its entry).
      execArgv: [],
    });
    worker.on('message', (reply: IngestReply) => this.#receive(reply));
    worker.on('error', (err) => this.#retire(worker, err));
    worker.on('exit', (code) => this.#retire(worker, new Error(`ingest worker exited with code ${code}`)));
    worker.unref();
    this.#worker = worker;
    return worker;
  }

  /** Fails everything waiting on a worker that is gone; the next request starts a new one. */
  #retire(worker: Worker, err: Error): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    this.#generation++;
    this.#waiting = 0;
    for (const { reject } of this.#calls.values()) reject(err);
    for (const { reject } of this.#acks.values()) reject(err);
    this.#calls.clear();
    this.#acks.clear();
  }

  #receive(reply: IngestReply): void {
    if (reply.type === 'ack') {
      const waiter = this.#acks.get(reply.append);
      if (!waiter) return;
      this.#acks.delete(reply.append);
      this.#release();
      if (reply.error) waiter.reject(rebuild(reply.error));
      else waiter.resolve();
      return;
    }
    const call = this.#calls.get(reply.call);
    if (!call) return;
    this.#calls.delete(reply.call);
    this.#release();
    if (reply.error) call.reject(rebuild(reply.error));
    else call.resolve(reply.digest);
  }

  #call(
    request: DistributiveOmit<Extract<IngestRequest, { op: 'hash' | 'digest' | 'end' | 'abort' }>, 'call'>,
  ): Promise<string | undefined> {
    const worker = this.#start();
    const call = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#calls.set(call, { resolve, reject });
      this.#hold();
      worker.postMessage({ ...request, call });
    });
  }

  /** The worker keeps the process alive only while a request waits on it. */
  #waiting = 0;
  #hold(): void {
    if (this.#waiting++ === 0) this.#worker?.ref();
  }
  #release(): void {
    if (--this.#waiting === 0) this.#worker?.unref();
  }
}

/** An upload's running hash, living in the ingest worker. */
class IngestHash implements UploadHash {
  readonly owner: IngestWorker;
  readonly id: number;
  readonly generation: number;
  readonly algorithm: string;
  /** The digest, once an append finished the hash (see `append`'s `digest` option). */
  final: string | undefined;
  digestSoFar: string | undefined;

  constructor(owner: IngestWorker, id: number, generation: number, algorithm: string) {
    this.owner = owner;
    this.id = id;
    this.generation = generation;
    this.algorithm = algorithm;
  }

  digest(): Promise<string> {
    return this.owner.digest(this);
  }

  dispose(): void {
    this.owner.free(this);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * Chunks of at least this many bytes are transferred as they are (Node's socket reads, KiBs each); smaller
 * ones are copied into a staging buffer of STAGE_BYTES. Sent one by one, each chunk is an ArrayBuffer
 * and a view (~200 B of heap, and a transfer-list entry) whatever its size: a body of 1-byte chunks put
 * up to a million of them into one batch before the batch's byte count said it was full.
 */
const TRANSFER_FROM = 16 * 1024;
const STAGE_BYTES = 64 * 1024;

/** A chunk that can be transferred: one owning its whole (non-shared) ArrayBuffer, else a copy. */
function owned(chunk: Buffer): Uint8Array<ArrayBuffer> {
  const { buffer } = chunk;
  const whole = chunk.byteOffset === 0 && chunk.byteLength === buffer.byteLength;
  return whole && buffer instanceof ArrayBuffer ? new Uint8Array(buffer) : new Uint8Array(chunk);
}

function rebuild(error: IngestError): Error {
  return Object.assign(new Error(error.message), error);
}
