import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Readable } from 'node:stream';
import { http, http2 } from '../io/node-http.ts';
import { OciError } from '../oci/errors.ts';

/**
 * Request bodies as Node's parsers hand them over, made safe against tiny chunks. llhttp gives every
 * piece of chunked transfer coding a Buffer of its own (nghttp2 every DATA frame), even a 1-byte one,
 * and a stream's buffer counts bytes, not objects: a body read later (after authentication, behind an
 * upload's lock) held ~75 000 1-byte chunks per connection, 10 MB of heap, so a dozen connections ended
 * the process at its 128 MB heap; read at once, 1 MiB of them cost seconds of CPU in stream machinery.
 *
 * So: past a body's first PASS_SMALL chunks, chunks under SMALL_CHUNK bytes are copied together into
 * one buffer before the stream sees them (flushed when it fills, before a large chunk, at the body's
 * end, and after the socket read that brought them), and a body whose chunks stay absurdly small is refused: past its first FREE_CHUNKS chunks, they
 * must average MIN_AVERAGE_CHUNK bytes. Chunks of a normal body (socket reads of KiBs) pass untouched.
 */
export const SMALL_CHUNK = 1024;
/**
 * The first chunks of a body go through whatever their size: a small body (a manifest, a token form)
 * is one or two chunks, and copying it through a fresh 16 KiB buffer is a cost every manifest PUT paid.
 */
const PASS_SMALL = 16;
const COALESCE_BYTES = 16 * 1024;
export const FREE_CHUNKS = 1024;
export const MIN_AVERAGE_CHUNK = 64;

/** What the request handler does with a body that broke the chunk rule (answer, then close). */
export type RefusalHandler = (err: OciError) => void;

/** The state of one body; `push` runs in place of the stream's own. */
class BodyChunks {
  pending: Buffer | undefined;
  pendingLength = 0;
  flushQueued = false;
  chunks = 0;
  bytes = 0;
  refused = false;
  onRefusal: RefusalHandler | undefined;
}

type Push = (chunk: unknown, encoding?: BufferEncoding) => boolean;

function guardedPush(
  stream: Readable,
  state: BodyChunks,
  push: Push,
  chunk: unknown,
  encoding: BufferEncoding | undefined,
): boolean {
  if (chunk === null) {
    flush(state, push);
    return push(null);
  }
  if (state.refused) return false;
  // Parsers push Buffers; anything else (never seen) goes through as it is.
  if (!Buffer.isBuffer(chunk)) return push(chunk, encoding);
  const buffer = chunk;
  const length = buffer.length;
  state.chunks++;
  state.bytes += length;
  if (state.chunks > FREE_CHUNKS && state.bytes < state.chunks * MIN_AVERAGE_CHUNK) {
    refuse(stream, state);
    return false;
  }
  if (length >= SMALL_CHUNK || (state.chunks <= PASS_SMALL && state.pendingLength === 0)) {
    if (state.pendingLength > 0) flush(state, push);
    return push(buffer);
  }
  state.pending ??= Buffer.allocUnsafe(COALESCE_BYTES);
  if (state.pendingLength + length > COALESCE_BYTES) flush(state, push);
  state.pending ??= Buffer.allocUnsafe(COALESCE_BYTES);
  buffer.copy(state.pending, state.pendingLength);
  state.pendingLength += length;
  if (!state.flushQueued) {
    state.flushQueued = true;
    // After the parser is through with this socket read: a consumer waiting for bytes gets them.
    process.nextTick(() => {
      state.flushQueued = false;
      flush(state, push);
    });
  }
  return stream.readableLength + state.pendingLength < stream.readableHighWaterMark;
}

/** Hands the coalesced bytes to the stream: the buffer itself when full, else an exact copy. */
function flush(state: BodyChunks, push: Push): void {
  const { pending, pendingLength } = state;
  if (pending === undefined || pendingLength === 0 || state.refused) return;
  state.pendingLength = 0;
  if (pendingLength === pending.length) {
    state.pending = undefined;
    push(pending);
  } else {
    push(Buffer.from(pending.subarray(0, pendingLength)));
  }
}

function refuse(stream: Readable, state: BodyChunks): void {
  state.refused = true;
  state.pending = undefined;
  state.pendingLength = 0;
  const err = new OciError(
    400,
    'UNSUPPORTED',
    `request body refused: its chunks average under ${MIN_AVERAGE_CHUNK} bytes`,
    { chunks: state.chunks, bytes: state.bytes },
  );
  // Not from inside the parser's callback.
  process.nextTick(() => {
    if (state.onRefusal) state.onRefusal(err);
    else stream.destroy(err);
  });
}

/** A request whose body is guarded: see the module comment. */
export interface GuardedRequest {
  /** Called once if the body breaks the chunk rule; without it the request is destroyed. */
  onBodyRefused(handler: RefusalHandler): void;
}

export function isGuarded(req: unknown): req is GuardedRequest {
  return typeof (req as Partial<GuardedRequest>).onBodyRefused === 'function';
}

// A mixin needs a constructor type with `any[]` arguments (TS2545); nothing is called through it.
// biome-ignore lint/suspicious/noExplicitAny: the mixin constructor signature TypeScript requires
type ReadableClass = new (...args: any[]) => Readable;

/**
 * `Base` (node:http's `IncomingMessage` or node:http2's `Http2ServerRequest`) with its `push` guarded:
 * the one guarded request class, over either parser.
 */
function guarded<T extends ReadableClass>(Base: T) {
  return class Guarded extends Base implements GuardedRequest {
    readonly #state = new BodyChunks();
    override push(chunk: unknown, encoding?: BufferEncoding): boolean {
      return guardedPush(this, this.#state, (c, e) => super.push(c, e), chunk, encoding);
    }
    onBodyRefused(handler: RefusalHandler): void {
      this.#state.onRefusal = handler;
    }
  };
}

let h1Class: typeof IncomingMessage | undefined;
let h2Class: typeof Http2ServerRequest | undefined;

/** The HTTP/1 request class servers are created with (their `IncomingMessage` option). */
export function guardedRequestClass(): typeof IncomingMessage {
  h1Class ??= guarded(http.IncomingMessage);
  return h1Class;
}

/** The HTTP/2 request class (the `Http2ServerRequest` option), built on first use: http2 is for TLS only. */
export function guardedHttp2RequestClass(): typeof Http2ServerRequest {
  h2Class ??= guarded(http2().Http2ServerRequest);
  return h2Class;
}
