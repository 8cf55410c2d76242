import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, ServerHttp2Stream } from 'node:http2';
import { http2 } from '../io/node-http.ts';
import { errors, OciError } from '../oci/errors.ts';

/**
 * Response and request helpers. Every response carries an exact Content-Length (never chunked encoding)
 * and no charset parameters: the conformance suites and many clients compare these byte for byte.
 */
export const API_VERSION_HEADER = { 'Docker-Distribution-Api-Version': 'registry/2.0' } as const;

export type Headers = Record<string, string | number | string[]>;

export function send(res: ServerResponse, status: number, headers: Headers, body?: Buffer): void {
  // A 204 must not carry Content-Length, nor a 304 one that differs from the 200's; a 304 carries the
  // validators, not the representation's type (RFC 9110 §8.6, §15.4.5).
  if (status === 204 || status === 304) {
    const { 'Content-Type': _type, ...rest } = headers;
    res.writeHead(status, { ...API_VERSION_HEADER, ...(status === 304 ? rest : headers) });
    res.end();
    return;
  }
  res.writeHead(status, { ...API_VERSION_HEADER, ...headers, 'Content-Length': body ? body.length : 0 });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Headers = {}): void {
  send(res, status, { 'Content-Type': 'application/json', ...headers }, Buffer.from(JSON.stringify(value)));
}

/** The HTTP/2 stream under a response of Node's HTTP/2 compatibility API; undefined for HTTP/1. */
export function http2StreamOf(res: ServerResponse): ServerHttp2Stream | undefined {
  return (res as unknown as { stream?: ServerHttp2Stream }).stream;
}

/**
 * Drops a response without an answer, or without the rest of it: HTTP/1 closes the connection, HTTP/2
 * resets the stream with CANCEL (a reset with NO_ERROR, what destroying the stream sends, lets a client
 * take the bytes it got for the whole body).
 */
export function abort(res: ServerResponse): void {
  const stream = http2StreamOf(res);
  if (stream) stream.close(http2().constants.NGHTTP2_CANCEL);
  else res.destroy();
}

/** Renders any thrown value: OciErrors as spec JSON, anything else as a logged 500. */
export function sendError(res: ServerResponse, err: unknown, bodyUnread: boolean): void {
  if (res.headersSent) {
    // Too late for an error answer: the client must not take the part it got for the whole.
    abort(res);
    return;
  }
  const headers: Headers = bodyUnread ? { Connection: 'close' } : {};
  if (err instanceof OciError) {
    sendJson(res, err.status, err.toJSON(), { ...err.headers, ...headers });
    return;
  }
  const { code, errcode } = (err ?? {}) as { code?: string; errcode?: number };
  // ENOSPC/EDQUOT from the file system; SQLITE_FULL (13) from the metadata database.
  if (code === 'ENOSPC' || code === 'EDQUOT' || (code === 'ERR_SQLITE_ERROR' && errcode === 13)) {
    // Not the client's fault and not a bug: say so, so a push can be retried once space is freed.
    const message = 'the registry is out of storage space; nothing from this request was stored';
    sendJson(res, 507, { errors: [{ code: 'UNKNOWN', message }] }, headers);
    return;
  }
  sendJson(res, 500, { errors: [{ code: 'UNKNOWN', message: 'internal server error' }] }, headers);
}

/** True when the client waits for `100 Continue` before it sends the body. */
function expectsContinue(req: IncomingMessage): boolean {
  return /^\s*100-continue\s*$/i.test(req.headers.expect ?? '');
}

/**
 * The request body as chunks, read lazily. Its first read tells a client waiting on `Expect:
 * 100-continue` to send (the server's 'checkContinue' listener leaves that to this), so a request
 * refused before then (unknown upload, no credentials, too large) costs no upload. Stopping early (a
 * full disk, a size limit, a bad chunk length) does not destroy the request: the client is owed an answer.
 */
export function requestBody(req: IncomingMessage, res: ServerResponse): AsyncIterable<Buffer> {
  if (!hasBody(req)) return noBody();
  return {
    // The stream's own iterator, not a generator around it: no extra promise per chunk of a blob.
    [Symbol.asyncIterator]() {
      if (expectsContinue(req)) res.writeContinue();
      return req.iterator({ destroyOnReturn: false });
    },
  };
}

async function* noBody(): AsyncGenerator<Buffer> {}

/** Frees a buffer readBody allocated (its own ArrayBuffer, from allocUnsafeSlow) at once. */
function release(buffer: Buffer): void {
  (buffer.buffer as ArrayBuffer).transfer(0);
}

/** The first allocation of a body that arrives in more than one chunk (it doubles from there). */
const BODY_START_BYTES = 16 * 1024;

/**
 * Reads a whole request body up to `limit` bytes (manifests, the token form); larger bodies answer 413
 * before reading. The bytes are copied into one buffer as they arrive, never kept as the chunks they came
 * in: Node hands over every chunk of chunked transfer coding as a Buffer of its own, so 4 MiB sent as
 * 1-byte chunks was 4 million objects (~100 B of heap each) and killed the process at its 128 MB heap.
 * The buffer grows with what arrived (doubling, at most to the declared length or the limit), so a
 * client that declares a large Content-Length and sends nothing holds nothing; the whole body must
 * arrive within `timeoutMs` (408 otherwise), so one sending a little now and then holds it no longer.
 */
export async function readBody(
  req: IncomingMessage,
  res: ServerResponse,
  limit: number,
  timeoutMs: number,
): Promise<Buffer> {
  const header = req.headers['content-length'];
  const declared = header === undefined ? undefined : Number(header);
  if (declared !== undefined && declared > limit) {
    throw errors.tooLarge('request body exceeds the size limit', limit);
  }
  const most = declared ?? limit;
  /** The one chunk of a body that came whole, kept without a copy until a second one arrives. */
  let first: Buffer | undefined;
  let buffer: Buffer | undefined;
  let size = 0;
  const chunks = requestBody(req, res)[Symbol.asyncIterator]();
  // The whole body within timeoutMs: a client that sends a little now and then holds its buffer no longer.
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new OciError(408, 'UNSUPPORTED', `request body not received within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
  });
  late.catch(() => {});
  try {
    for (;;) {
      const next = await Promise.race([chunks.next(), late]);
      if (next.done) break;
      const chunk = next.value;
      if (size + chunk.length > limit) throw errors.tooLarge('request body exceeds the size limit', limit);
      if (buffer === undefined && size === 0) {
        first = chunk;
        size = chunk.length;
        continue;
      }
      if (buffer === undefined || size + chunk.length > buffer.length) {
        let capacity = Math.max(buffer?.length ?? 0, BODY_START_BYTES);
        while (capacity < size + chunk.length) capacity *= 2;
        const grown = Buffer.allocUnsafeSlow(Math.min(capacity, Math.max(most, size + chunk.length)));
        if (buffer !== undefined) {
          buffer.copy(grown, 0, 0, size);
          release(buffer);
        } else if (first !== undefined) first.copy(grown);
        buffer = grown;
        first = undefined;
      }
      chunk.copy(buffer, size);
      size += chunk.length;
    }
  } catch (err) {
    // The client left, was too slow or sent too much: its bytes go now, not at some later collection
    // (an idle server may not collect for minutes; 400 stalled 4 MiB PUTs held 1.6 GB after they left).
    if (buffer !== undefined) release(buffer);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  if (buffer === undefined) return first ?? Buffer.alloc(0);
  return size === buffer.length ? buffer : buffer.subarray(0, size);
}

/**
 * True when the request carries a body: a non-zero Content-Length, chunked transfer encoding, or on
 * HTTP/2 (which has neither for a streamed body: its DATA frames end with a flag) a stream that did
 * not end with its headers.
 */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  if (req.httpVersionMajor >= 2) return !(req as unknown as Http2ServerRequest).stream.endAfterHeaders;
  return req.headers['transfer-encoding'] !== undefined;
}

/** Parses `If-Match` / `If-None-Match` entity tags (`"sha256:…"`, weak or strong) into digests. */
export function parseEntityTags(header: string | undefined): string[] | undefined {
  if (header === undefined) return undefined;
  return header
    .split(',')
    .map((t) => t.trim().replace(/^W\//, ''))
    .filter((t) => t.length > 0)
    .map((t) => (t.startsWith('"') && t.endsWith('"') && t.length >= 2 ? t.slice(1, -1) : t));
}

/**
 * Whether the request's `If-None-Match` names the entity tag `etag` (quoted, as sent in `ETag`) or is
 * `*`: a GET or HEAD then answers 304.
 */
export function notModified(req: IncomingMessage, etag: string): boolean {
  const etags = parseEntityTags(req.headers['if-none-match']);
  return etags !== undefined && (etags.includes('*') || etags.includes(etag.slice(1, -1)));
}

/** `Link` header for the next page, relative to this registry, as RFC 8288 writes it. */
export function nextLink(path: string, params: Record<string, string | string[] | undefined>): string {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) query.append(key, v);
  }
  return `<${path}?${query.toString()}>; rel="next"`;
}

/**
 * Parses the `n` page-size parameter: absent → `fallback`; a non-negative integer is clamped to `max`
 * (oversized values are clamped, never rejected: clients like Renovate ask for n=10000).
 */
export function parsePageSize(value: string | null, fallback: number, max: number): number {
  if (value === null || value === '') return fallback;
  if (!/^\d+$/.test(value))
    throw errors.badRequest('n must be a non-negative integer', { n: value.slice(0, 50) });
  return Math.min(Number(value), max);
}
