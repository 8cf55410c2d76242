import { open } from 'node:fs/promises';
import type * as NodeHttp from 'node:http';
import type { ClientRequest } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sendFileRange } from '../io/file-sender.ts';
import { http, https } from '../io/node-http.ts';
import { download } from './download.ts';
import { proxyFor } from './proxy.ts';
import { HttpResponse, ResponseHeaders } from './response.ts';
import { TlsTrust } from './tls.ts';

/**
 * A request body that is the first `size` bytes of a file. It is sent through a few reused buffers, each
 * refilled only once the socket has taken it (`sendFileRange`, as the registry sends blobs), where a read
 * stream allocates a fresh buffer per read: a 1 GiB push spent 0.2–0.4 s less CPU this way.
 */
export class FileBody {
  readonly path: string;
  readonly size: number;
  /** Hears each piece the socket has taken, for progress. */
  readonly onSent: ((bytes: number) => void) | undefined;
  constructor(path: string, size: number, onSent?: (bytes: number) => void) {
    this.path = path;
    this.size = size;
    this.onSent = onSent;
  }
}

export type SendBody = Buffer | string | FileBody | Readable | AsyncIterable<Uint8Array>;

export interface SendOptions {
  method: string;
  headers?: Record<string, string>;
  body?: SendBody | undefined;
  /** Follow 3xx for GET and HEAD (blob downloads are often redirected to storage). Default true. */
  followRedirects?: boolean;
  /**
   * A GET for a large body (a blob): sent through `download`, whose body the response's `pour` lends
   * to a sink from reused buffers instead of node:http's fresh Buffer per socket read.
   */
  download?: boolean;
  /** How an `https:` server's certificate is checked, redirects included (default: as Node does). */
  trust?: TlsTrust;
}

/**
 * A kept-alive connection idle this long is closed by the client, or a second before the server's
 * `Keep-Alive: timeout=N` hint when that is shorter. Node reads the hint only when the agent has a
 * timeout of its own (measured: with none, an idle connection stayed open until the server closed
 * it). A request sent on a connection just as the server closes it fails with "socket hang up",
 * which a write cannot retry. Servers that send no hint (Go's, nginx, load balancers) keep idle
 * connections 60 s or more, so 15 s stays clear of them; a new connection costs one round trip
 * (and a TLS handshake). Requests in flight keep their own timeout (IDLE_TIMEOUT_MS below).
 */
const FREE_CONNECTION_TIMEOUT_MS = 15_000;
/** What every agent here is made with, proxied or not. */
const AGENT_OPTIONS = { keepAlive: true, timeout: FREE_CONNECTION_TIMEOUT_MS };
const httpAgent = new http.Agent(AGENT_OPTIONS);

/**
 * The kept-alive agents for HTTPS and for proxies, per TLS trust and then per proxy (`''`: direct), so
 * a connection is only reused under the trust it was made with. Agents are made on first use: TLS
 * costs ~10 ms of start-up, which a command that speaks plain HTTP need not pay.
 *
 * Proxied requests use Node's own proxy support (a CONNECT tunnel for `https:` targets, the absolute
 * URL as the request target for `http:` ones), given only the proxy: whether a request is proxied at
 * all is `proxyFor`'s decision, made with Go's rules, which Node's own NO_PROXY handling does not
 * follow (it proxies loopback addresses). Node applies an agent's TLS options to the target through
 * the tunnel, and its own defaults to an `https://` proxy.
 */
const agents = new WeakMap<TlsTrust, Map<string, NodeHttp.Agent>>();
function agentFor(url: URL, trust: TlsTrust): NodeHttp.Agent {
  const secure = url.protocol === 'https:';
  const proxy = proxyFor(url);
  if (!secure && !proxy) return httpAgent;
  // A plain-HTTP request makes no TLS connection of the registry's, whatever the trust.
  const owner = secure ? trust : TlsTrust.DEFAULT;
  let byProxy = agents.get(owner);
  if (!byProxy) {
    byProxy = new Map();
    agents.set(owner, byProxy);
  }
  const key = proxy?.href ?? '';
  let agent = byProxy.get(key);
  if (!agent) {
    agent = secure
      ? new (https().Agent)({
          ...AGENT_OPTIONS,
          ...owner.options,
          ...(proxy ? { proxyEnv: { HTTPS_PROXY: proxy.href } } : {}),
        })
      : new http.Agent({ ...AGENT_OPTIONS, proxyEnv: { HTTP_PROXY: proxy!.href } });
    byProxy.set(key, agent);
  }
  return agent;
}

const MAX_REDIRECTS = 5;
/** A connection silent this long (no bytes either way) is given up; reads are then retried. */
const IDLE_TIMEOUT_MS = 120_000;

const TRANSIENT = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
]);

export function isTransientNetworkError(err: unknown): boolean {
  return TRANSIENT.has((err as { code?: string })?.code ?? '');
}

export class TransportTimeoutError extends Error {
  override name = 'TransportTimeoutError';
  readonly code = 'ETIMEDOUT';
}

/**
 * One HTTP exchange over node:http(s).
 *
 * Why not `fetch`: Node's fetch reads a streamed request body far ahead of the socket (a 1 GiB upload
 * grew the client to 1.2 GB resident in bench runs), while node:http respects backpressure (140 MB
 * for the same upload, and 40% faster). Blobs must stream, so every request goes through here.
 *
 * Redirects of GET/HEAD are followed; credentials (`Authorization`) go only to the original origin.
 */
export async function send(url: URL, options: SendOptions): Promise<HttpResponse> {
  let target = url;
  let headers = { ...options.headers };
  for (let hop = 0; ; hop++) {
    const trust = options.trust ?? TlsTrust.DEFAULT;
    const res =
      options.download && options.method === 'GET' && options.body === undefined
        ? await downloadOnce(target, headers, trust)
        : await once(target, options.method, headers, options.body, trust);
    const redirect = res.status >= 300 && res.status < 400 && res.headers.get('location');
    const follow =
      options.followRedirects !== false && (options.method === 'GET' || options.method === 'HEAD');
    if (!redirect || !follow || hop >= MAX_REDIRECTS) return res;
    await res.discard();
    const next = new URL(redirect, target);
    if (next.protocol !== 'http:' && next.protocol !== 'https:') return res;
    if (next.origin !== url.origin) {
      const { Authorization: _a, authorization: _b, ...rest } = headers;
      headers = rest;
    }
    target = next;
  }
}

function once(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: SendBody | undefined,
  trust: TlsTrust,
) {
  return new Promise<HttpResponse>((resolve, reject) => {
    const secure = url.protocol === 'https:';
    const agent = agentFor(url, trust);
    const request = secure
      ? https().request(url, { method, headers, agent })
      : http.request(url, { method, headers, agent });
    request.on('error', reject);
    request.setTimeout(IDLE_TIMEOUT_MS, () => request.destroy(idleTimeoutError(method, url)));
    request.on('response', (incoming) => {
      const status = incoming.statusCode ?? 502;
      // Statuses whose responses have no body (and HEAD has none on the wire).
      const bodiless = method === 'HEAD' || status === 204 || status === 304 || status < 200;
      if (bodiless) incoming.resume();
      resolve(
        new HttpResponse(
          validStatus(status),
          incoming.statusMessage ?? '',
          ResponseHeaders.fromIncoming(incoming),
          bodiless ? undefined : incoming,
        ),
      );
    });
    if (body === undefined) {
      request.end();
    } else if (typeof body === 'string' || Buffer.isBuffer(body)) {
      request.end(body);
    } else if (body instanceof FileBody) {
      sendFile(body, request).catch((err: unknown) => {
        request.destroy(err as Error);
        reject(err);
      });
    } else {
      const stream = body instanceof Readable ? body : Readable.from(body as AsyncIterable<Uint8Array>);
      pipeline(stream, request).catch((err: unknown) => {
        request.destroy(err as Error);
        reject(err);
      });
    }
  });
}

async function downloadOnce(
  url: URL,
  headers: Record<string, string>,
  trust: TlsTrust,
): Promise<HttpResponse> {
  const head = await download(url, headers, IDLE_TIMEOUT_MS, () => idleTimeoutError('GET', url), trust);
  return new HttpResponse(validStatus(head.status), head.statusText, head.headers, head.body ?? undefined);
}

/** What a request whose connection stayed silent for IDLE_TIMEOUT_MS fails with. */
function idleTimeoutError(method: string, url: URL): TransportTimeoutError {
  return new TransportTimeoutError(`${method} ${url.host}: no data for ${IDLE_TIMEOUT_MS / 1000} s`);
}

/** A status outside 200-599 (or a missing one) is the peer's fault: answered as 502, Bad Gateway. */
function validStatus(status: number): number {
  return status < 200 || status > 599 ? 502 : status;
}

async function sendFile(body: FileBody, request: ClientRequest): Promise<void> {
  const handle = await open(body.path, 'r');
  try {
    await sendFileRange(handle, 0, body.size, request, { onSent: body.onSent });
  } finally {
    await handle.close();
  }
}
