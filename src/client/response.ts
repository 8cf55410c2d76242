import type { IncomingMessage } from 'node:http';
import { http } from '../io/node-http.ts';
import { type BodySink, collect, pourReadable } from './body-sink.ts';
import type { DownloadBody } from './download.ts';
import { ClientError } from './errors.ts';

const MiB = 1024 * 1024;
/** What `bytes()` reads into memory unless told otherwise: manifests, lists and error bodies are far smaller. */
const DEFAULT_MAX_BYTES = 64 * MiB;
/** A discarded body up to this size is read to its end to keep its connection. */
const DRAIN_MAX_BYTES = 64 * 1024;

/**
 * Response headers by lower-case name, read as fetch's `Headers` reads them: `get` joins a repeated
 * header's values with ", " and answers null for a missing one.
 */
export class ResponseHeaders {
  readonly #values = new Map<string, string>();

  /** Throws, as node:http does, for a name that is not a token or a value with CR, LF or NUL. */
  append(name: string, value: string): void {
    http.validateHeaderName(name);
    http.validateHeaderValue(name, value);
    const key = name.toLowerCase();
    const before = this.#values.get(key);
    this.#values.set(key, before === undefined ? value : `${before}, ${value}`);
  }

  get(name: string): string | null {
    return this.#values.get(name.toLowerCase()) ?? null;
  }

  has(name: string): boolean {
    return this.#values.has(name.toLowerCase());
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.#values.entries();
  }

  /** From node:http's parsed headers, which it has already checked. */
  static fromIncoming(incoming: IncomingMessage): ResponseHeaders {
    const headers = new ResponseHeaders();
    for (const [name, value] of Object.entries(incoming.headers)) {
      if (value === undefined) continue;
      headers.#values.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    return headers;
  }
}

/**
 * A registry's answer: status, headers and a body that is read once, into memory (`bytes`, `text`,
 * `json`), into a sink (`pour`), or not at all (`discard`).
 *
 * Why not fetch's `Response`: it would load undici (35 ms of every CLI command's start-up, for
 * requests that node:http sends) and wrap each body in a web stream the blob paths then had to
 * unwrap.
 */
export class HttpResponse {
  readonly status: number;
  readonly statusText: string;
  readonly headers: ResponseHeaders;
  /** The unread body; undefined for a response without one, and once it was taken. */
  #body: IncomingMessage | DownloadBody | undefined;
  /** Whether `pour`, `bytes` or `discard` has taken the body. */
  #taken = false;
  #read: Promise<Buffer> | undefined;

  constructor(
    status: number,
    statusText: string,
    headers: ResponseHeaders,
    body?: IncomingMessage | DownloadBody,
  ) {
    this.status = status;
    this.statusText = statusText;
    this.headers = headers;
    this.#body = body;
  }

  get ok(): boolean {
    return this.status >= 200 && this.status <= 299;
  }

  /**
   * The whole body, read once: later calls answer the same bytes. Fails, dropping the connection, once
   * the body passes `maxBytes`, so a registry cannot fill the client's memory; `what` names the body
   * in that error.
   */
  bytes(maxBytes = DEFAULT_MAX_BYTES, what = 'a response body'): Promise<Buffer> {
    if (!this.#read) {
      if (this.#taken) return Promise.reject(new Error('the response body was already read'));
      this.#read = this.#collect(this.#take(), maxBytes, what);
    }
    return this.#read;
  }

  async text(): Promise<string> {
    return (await this.bytes()).toString('utf8');
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  /** Lends the body's bytes to `sink` (see `BodySink`), from the buffers they arrived in. Once per response. */
  async pour(sink: BodySink): Promise<void> {
    const body = this.#take();
    if (body) await pourBody(body, sink);
  }

  /**
   * Ends the body without keeping it. A short body on a kept-alive connection (an error, an empty
   * 201) is read to its end so the connection serves the next request; a longer or unsized one closes
   * its connection rather than pull bytes nobody wants, as does a download, whose connection is its own.
   */
  async discard(): Promise<void> {
    if (this.#read) {
      await this.#read.catch(() => {});
      return;
    }
    if (this.#taken) return;
    const body = this.#take();
    if (!body) return;
    if ('pourInto' in body) return body.cancel();
    if (body.readableEnded || body.destroyed) return;
    // Read to its end even when all of it arrived: only then does node:http free the connection.
    const length = Number(body.headers['content-length']);
    if (!body.complete && !(length <= DRAIN_MAX_BYTES)) {
      body.destroy();
      return;
    }
    await new Promise<void>((resolve) => {
      body
        .once('end', resolve)
        .once('close', resolve)
        .once('error', () => resolve());
      body.resume();
    });
  }

  /** The body, once: a second reader is a bug, and would otherwise see an empty body. */
  #take(): IncomingMessage | DownloadBody | undefined {
    if (this.#taken) throw new Error('the response body was already read');
    this.#taken = true;
    const body = this.#body;
    this.#body = undefined;
    return body;
  }

  async #collect(
    body: IncomingMessage | DownloadBody | undefined,
    maxBytes: number,
    what: string,
  ): Promise<Buffer> {
    if (!body) return Buffer.alloc(0);
    return collect(
      (sink) => pourBody(body, sink),
      maxBytes,
      () => new ClientError(`${what} is larger than ${maxBytes} bytes`),
      // node:http gives each chunk memory of its own; a download lends its buffers only for the call.
      { owned: !('pourInto' in body) },
    );
  }
}

/** Lends a body's bytes to `sink`: a download from its reused buffers, node:http's as they come. */
function pourBody(body: IncomingMessage | DownloadBody, sink: BodySink): Promise<void> {
  return 'pourInto' in body ? body.pourInto(sink) : pourReadable(body, sink);
}
