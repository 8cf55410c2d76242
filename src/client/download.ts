import type net from 'node:net';
import { http } from '../io/node-http.ts';
import type { BodySink } from './body-sink.ts';
import { bareHost, proxyAuthorization, proxyFor } from './proxy.ts';
import { ResponseHeaders } from './response.ts';
import { TlsTrust } from './tls.ts';
import { connectTo, openTunnel, readyEvent, tlsTo } from './tunnel.ts';

/**
 * An HTTP/1.1 GET whose response body is read into two reused buffers and lent to a `BodySink`.
 *
 * Why not node:http: its parser copies every 64 KiB a socket read into a fresh Buffer, so a 1 GiB
 * download allocates and collects 2 GiB. On a 1 GiB blob get that was ~0.5 s of CPU in the parser,
 * ~0.3 s of garbage collection and ~90 MB of peak memory; with this reader the CLI used ~0.8 s of CPU
 * in all (most of it sha256) and 60 MB (docs/performance.md, "Client transfers"). A socket with
 * `onread` reads into memory we own, and names the buffer for each next read, so one buffer can be
 * lent to the sink while the other receives.
 *
 * One request per connection (`Connection: close`): it is used for blob bodies, where a connection's
 * setup is small beside the transfer. It speaks what registries and object stores answer with:
 * Content-Length, chunked and close-delimited bodies, interim 1xx responses, TLS checked as `trust` says
 * (Node's CAs unless told otherwise).
 */

const READ_BUFFER_BYTES = 1024 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE_BYTES = 4096;
const CRLFCRLF = Buffer.from('\r\n\r\n');

export class DownloadError extends Error {
  override name = 'DownloadError';
  readonly code: string;
  constructor(message: string, code = 'EPROTO') {
    super(message);
    this.code = code;
  }
}

export interface DownloadHead {
  status: number;
  statusText: string;
  headers: ResponseHeaders;
  /** Null when the response has no body (HEAD, 1xx, 204, 304). */
  body: DownloadBody | null;
}

export interface DownloadBody {
  /** Lends the body's bytes to `sink`; resolves once every byte was taken. Call once. */
  pourInto(sink: BodySink): Promise<void>;
  /** Drops the body and the connection. */
  cancel(reason?: Error): void;
}

export async function download(
  url: URL,
  headers: Record<string, string>,
  idleTimeoutMs: number,
  timeoutError: () => Error,
  trust: TlsTrust = TlsTrust.DEFAULT,
): Promise<DownloadHead> {
  return new Exchange(url, headers, idleTimeoutMs, timeoutError, trust).head;
}

/** How the body's end is found (RFC 9112, section 6.3). */
interface Framing {
  /** Feeds bytes, emitting body pieces; stops early when a write asks to wait. */
  feed(data: Uint8Array, emit: BodySink): { used: number; wait?: Promise<void> };
  readonly complete: boolean;
  /** The connection closed: fine only for a body that runs to the close. */
  endOfInput(): void;
}

/** Emits all of `data` as one piece (framings whose bytes are all body). */
function emitAll(data: Uint8Array, emit: BodySink): { used: number; wait?: Promise<void> } {
  const wait = data.length > 0 ? emit.write(data) : undefined;
  return wait ? { used: data.length, wait } : { used: data.length };
}

class LengthFraming implements Framing {
  #left: number;
  constructor(length: number) {
    this.#left = length;
  }
  get complete() {
    return this.#left === 0;
  }
  feed(data: Uint8Array, emit: BodySink) {
    if (data.length > this.#left)
      throw new DownloadError(`the server sent more than its Content-Length (${this.#left} left)`);
    this.#left -= data.length;
    return emitAll(data, emit);
  }
  endOfInput() {
    if (this.#left > 0)
      throw new DownloadError(
        `the connection closed ${this.#left} bytes before the body's end`,
        'ECONNRESET',
      );
  }
}

class CloseFraming implements Framing {
  #closed = false;
  get complete() {
    return this.#closed;
  }
  feed(data: Uint8Array, emit: BodySink) {
    return emitAll(data, emit);
  }
  endOfInput() {
    this.#closed = true;
  }
}

class ChunkedFraming implements Framing {
  #state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  #line = '';
  #left = 0;
  get complete() {
    return this.#state === 'done';
  }
  feed(data: Uint8Array, emit: BodySink) {
    let at = 0;
    while (at < data.length && this.#state !== 'done') {
      if (this.#state === 'data') {
        const take = Math.min(this.#left, data.length - at);
        const piece = data.subarray(at, at + take);
        at += take;
        this.#left -= take;
        if (this.#left === 0) this.#state = 'data-end';
        const wait = emit.write(piece);
        if (wait) return { used: at, wait };
        continue;
      }
      // Size lines, the CRLF after each chunk and trailer lines are read a line at a time.
      const newline = data.indexOf(0x0a, at);
      const end = newline < 0 ? data.length : newline;
      this.#line += Buffer.from(data.buffer, data.byteOffset + at, end - at).toString('latin1');
      if (this.#line.length > MAX_CHUNK_LINE_BYTES)
        throw new DownloadError('a chunked body has an over-long line');
      at = end;
      if (newline < 0) break;
      at += 1;
      const line = this.#line.endsWith('\r') ? this.#line.slice(0, -1) : this.#line;
      this.#line = '';
      this.#onLine(line);
    }
    return { used: at };
  }
  #onLine(line: string) {
    if (this.#state === 'data-end') {
      if (line !== '') throw new DownloadError('a chunk of a chunked body does not end with CRLF');
      this.#state = 'size';
    } else if (this.#state === 'size') {
      const match = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
      if (!match) throw new DownloadError(`a chunked body has a bad chunk size line "${line.slice(0, 40)}"`);
      this.#left = Number.parseInt(match[1]!, 16);
      this.#state = this.#left === 0 ? 'trailer' : 'data';
    } else if (this.#state === 'trailer' && line === '') {
      this.#state = 'done';
    }
  }
  endOfInput() {
    if (this.#state !== 'done')
      throw new DownloadError('the connection closed before the chunked body ended', 'ECONNRESET');
  }
}

/** One request and its response on a connection of its own. */
class Exchange implements DownloadBody {
  readonly head: Promise<DownloadHead>;
  #resolveHead!: (head: DownloadHead) => void;
  #rejectHead!: (err: Error) => void;
  /** Set once connected (through a proxy's tunnel: once the proxy opened it). */
  #socket: net.Socket | undefined;
  #buffers = [Buffer.allocUnsafeSlow(READ_BUFFER_BYTES), Buffer.allocUnsafeSlow(READ_BUFFER_BYTES)];
  /** The read buffer whose bytes a sink still holds, or whose rest waits to be fed. */
  #lent: Buffer | undefined;
  #headBytes: Buffer = Buffer.alloc(0);
  #framing: Framing | undefined;
  /** Copies of bytes that arrived while the sink was busy (TLS delivers what it has decrypted). */
  #queued: Buffer[] = [];
  #sink: BodySink | undefined;
  #busy = true;
  #eof = false;
  #finished = false;
  #error: Error | undefined;
  #resolveBody: (() => void) | undefined;
  #rejectBody: ((err: Error) => void) | undefined;

  constructor(
    url: URL,
    headers: Record<string, string>,
    idleTimeoutMs: number,
    timeoutError: () => Error,
    trust: TlsTrust,
  ) {
    this.head = new Promise<DownloadHead>((resolve, reject) => {
      this.#resolveHead = resolve;
      this.#rejectHead = reject;
    });
    const secure = url.protocol === 'https:';
    const proxy = proxyFor(url);
    // Built (and its headers checked) before anything connects. A plain-HTTP target behind a proxy
    // is named by its whole URL, to the proxy.
    const request = requestHead(url, headers, secure ? undefined : proxy);
    const onread = {
      // Asked before every read: never the buffer a sink still holds.
      buffer: () => (this.#lent === this.#buffers[0] ? this.#buffers[1]! : this.#buffers[0]!),
      callback: (bytes: number, buffer: Uint8Array) => this.#onRead(buffer as Buffer, bytes),
    };
    const attach = (socket: net.Socket, readsWithOnread = true) =>
      this.#attach(socket, request, idleTimeoutMs, timeoutError, readsWithOnread);
    // Direct, or (plain HTTP) to the proxy, which is sent the request itself. The registry's trust is
    // for the registry's certificate, not a proxy's.
    if (!proxy) attach(connectTo(url, onread, trust));
    else if (!secure) attach(connectTo(proxy, onread));
    else {
      const host = bareHost(url.hostname);
      openTunnel(proxy, host, Number(url.port) || 443, idleTimeoutMs).then(
        (tunnel) => {
          if (this.#error) tunnel.destroy();
          // TLS over the tunnel reads into fresh buffers (see `tlsTo`): no `onread`.
          else attach(tlsTo(host, { ...trust.options, socket: tunnel }), false);
        },
        (err: Error) => this.#fail(err),
      );
    }
  }

  /**
   * Sends the request on `socket` once it is ready and reads the response from it: through `onread`,
   * or (`readsWithOnread` false) from 'data' events, whose fresh buffers may be lent to the sink as well.
   */
  #attach(
    socket: net.Socket,
    request: string,
    idleTimeoutMs: number,
    timeoutError: () => Error,
    readsWithOnread: boolean,
  ): void {
    this.#socket = socket;
    if (!readsWithOnread)
      socket.on('data', (data: Buffer) => {
        if (!this.#onRead(data, data.length)) socket.pause();
      });
    socket.setNoDelay(true);
    socket.setTimeout(idleTimeoutMs, () => this.#fail(timeoutError()));
    socket.once(readyEvent(socket), () => socket.write(request));
    socket.on('error', (err) => this.#fail(err));
    // The end of input decides only once every byte before it was fed (see #continue).
    const onEnd = () => {
      this.#eof = true;
      if (!this.#framing)
        this.#fail(new DownloadError('the connection closed before the response ended', 'ECONNRESET'));
      else this.#continue();
    };
    socket.on('end', onEnd);
    socket.on('close', onEnd);
  }

  pourInto(sink: BodySink): Promise<void> {
    if (this.#sink) return Promise.reject(new Error('a response body can be read once'));
    this.#sink = sink;
    const done = new Promise<void>((resolve, reject) => {
      this.#resolveBody = resolve;
      this.#rejectBody = reject;
    });
    if (this.#error) this.#rejectBody!(this.#error);
    else if (this.#finished) this.#resolveBody!();
    else {
      this.#busy = false;
      this.#continue();
    }
    return done;
  }

  cancel(reason?: Error): void {
    this.#fail(reason ?? new DownloadError('the response body was cancelled', 'ECANCELED'));
  }

  /** Returns false to pause the socket. */
  #onRead(buffer: Buffer, bytes: number): boolean {
    if (this.#error || this.#finished) return false;
    const data = buffer.subarray(0, bytes);
    try {
      if (!this.#framing) return this.#readHead(data);
      if (this.#busy) {
        this.#queued.push(Buffer.from(data));
        return false;
      }
      return this.#feed(data, buffer);
    } catch (err) {
      this.#fail(err as Error);
      return false;
    }
  }

  #readHead(data: Buffer): boolean {
    const seen = this.#headBytes.length;
    this.#headBytes = Buffer.concat([this.#headBytes, data]);
    const end = this.#headBytes.indexOf(CRLFCRLF, Math.max(0, seen - 3));
    if (end < 0) {
      if (this.#headBytes.length > MAX_HEAD_BYTES)
        throw new DownloadError(`the response head is larger than ${MAX_HEAD_BYTES} bytes`);
      return true;
    }
    const rest = this.#headBytes.subarray(end + 4);
    const head = parseHead(this.#headBytes.subarray(0, end).toString('latin1'));
    this.#headBytes = Buffer.alloc(0);
    if (head.status < 200) return rest.length > 0 ? this.#readHead(rest) : true;
    this.#framing = framingFor(head.status, head.headers);
    if (rest.length > 0) this.#queued.push(rest);
    if (!this.#framing) {
      this.#finish();
      this.#resolveHead({ ...head, body: null });
      return false;
    }
    this.#resolveHead({ ...head, body: this });
    // Wait for a consumer before reading on.
    return false;
  }

  /** Feeds bytes to the sink; when it asks to wait, holds `buffer` (if the bytes are in one) until then. */
  #feed(data: Uint8Array, buffer: Buffer | undefined): boolean {
    const { used, wait } = this.#framing!.feed(data, this.#sink!);
    if (!wait) {
      if (used < data.length) throw new DownloadError('the server sent bytes after the body ended');
      if (this.#framing!.complete) this.#finish();
      return !this.#finished;
    }
    this.#busy = true;
    this.#lent = buffer;
    wait.then(
      () => {
        this.#lent = undefined;
        this.#busy = false;
        try {
          // The rest of the same read: still valid, since its buffer was not handed out again.
          if (used < data.length && !this.#feed(data.subarray(used), buffer)) return;
          this.#continue();
        } catch (err) {
          this.#fail(err as Error);
        }
      },
      (err: unknown) => this.#fail(err as Error),
    );
    return false;
  }

  /** Drains what was queued, then resumes reading (or ends the body at the connection's end). */
  #continue(): void {
    try {
      while (!this.#busy && this.#sink && !this.#finished && !this.#error) {
        const next = this.#queued.shift();
        if (next) {
          if (!this.#feed(next, undefined)) return;
          continue;
        }
        // Throws unless the body runs to the connection's close.
        if (this.#eof && !this.#framing!.complete) this.#framing!.endOfInput();
        if (this.#framing!.complete) this.#finish();
        else this.#socket!.resume();
        return;
      }
    } catch (err) {
      this.#fail(err as Error);
    }
  }

  #finish(): void {
    if (this.#finished || this.#error) return;
    this.#finished = true;
    this.#socket?.destroy();
    this.#resolveBody?.();
  }

  #fail(err: Error): void {
    if (this.#finished || this.#error) return;
    this.#error = err;
    this.#socket?.destroy();
    this.#rejectHead(err);
    this.#rejectBody?.(err);
  }
}

/** The request's head; sent to `proxy` (a plain-HTTP target), it names the absolute URL. */
function requestHead(url: URL, headers: Record<string, string>, proxy?: URL): string {
  const target = `${proxy ? url.origin : ''}${url.pathname}${url.search}`;
  let head = `GET ${target} HTTP/1.1\r\nHost: ${url.host}\r\n`;
  const authorization = proxy && proxyAuthorization(proxy);
  if (authorization) head += `Proxy-Authorization: ${authorization}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower === 'host' || lower === 'connection' || lower === 'proxy-authorization') continue;
    // Throws for names that are not tokens and for values with CR, LF or NUL, as node:http does.
    http.validateHeaderName(name);
    http.validateHeaderValue(name, value);
    head += `${name}: ${value}\r\n`;
  }
  return `${head}Connection: close\r\n\r\n`;
}

function parseHead(text: string): { status: number; statusText: string; headers: ResponseHeaders } {
  const lines = text.split('\r\n');
  const statusLine = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]!);
  if (!statusLine) throw new DownloadError(`not an HTTP/1.1 response: "${lines[0]!.slice(0, 40)}"`);
  const headers = new ResponseHeaders();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || line[0] === ' ' || line[0] === '\t')
      throw new DownloadError(`a bad response header line "${line.slice(0, 40)}"`);
    try {
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    } catch {
      throw new DownloadError(`a bad response header line "${line.slice(0, 40)}"`);
    }
  }
  return { status: Number(statusLine[1]), statusText: statusLine[2] ?? '', headers };
}

function framingFor(status: number, headers: ResponseHeaders): Framing | undefined {
  if (status === 204 || status === 304) return undefined;
  const coding = headers.get('transfer-encoding');
  if (coding !== null) {
    const last = coding.split(',').pop()!.trim().toLowerCase();
    return last === 'chunked' ? new ChunkedFraming() : new CloseFraming();
  }
  const length = headers.get('content-length');
  if (length === null) return new CloseFraming();
  const values = new Set(length.split(',').map((v) => v.trim()));
  const only = values.size === 1 ? [...values][0]! : '';
  if (!/^\d{1,15}$/.test(only)) throw new DownloadError(`a bad Content-Length "${length.slice(0, 40)}"`);
  const bytes = Number(only);
  return bytes === 0 ? undefined : new LengthFraming(bytes);
}
