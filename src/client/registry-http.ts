import { type Authenticator, parseChallenge } from './auth.ts';
import type { HttpResponse } from './response.ts';
import { type TlsSettings, TlsTrust } from './tls.ts';
import { isTransientNetworkError, type SendBody, send } from './transport.ts';

/**
 * HTTP to one registry host: picks plain HTTP for loopback hosts (or when asked), attaches what the
 * Authenticator knows, and on a 401 answers the challenge and retries, so scope upgrades and tokens
 * that expire mid-transfer are handled where every request passes. Bodies must be replayable (a Buffer or
 * a function returning a fresh body) because a refused request is sent again.
 */
type BodyValue = SendBody;
export type Body = Buffer | string | (() => BodyValue | Promise<BodyValue>);

export interface RequestOptions {
  headers?: Record<string, string>;
  body?: Body;
  /** The scope this request needs, e.g. `repository:team/app:pull,push`; sent to token endpoints. */
  scope?: string;
  /** A GET for a blob body: read through `download` (see `SendOptions.download`). */
  download?: boolean;
}

/**
 * localhost, 127.0.0.0/8 and ::1 speak plain HTTP by default (as Docker and crane treat them). Host
 * names are case-insensitive: `LOCALHOST:5000` is loopback too.
 */
export function isLoopbackHost(host: string): boolean {
  const name = (host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.split(':')[0]!).toLowerCase();
  return name === 'localhost' || /^127(\.\d{1,3}){3}$/.test(name) || name === '::1';
}

const RETRIES = 4;

export class RegistryHttp {
  /** `HOST[:PORT]` as the user named it. */
  readonly host: string;
  readonly base: string;
  readonly auth: Authenticator;
  /** How this registry's certificates are checked, and its token realm's and redirects'. */
  readonly trust: TlsTrust;

  constructor(
    host: string,
    auth: Authenticator,
    options: { plainHttp?: boolean; tls?: TlsSettings | undefined } = {},
  ) {
    this.host = host;
    this.trust = options.tls ? new TlsTrust(options.tls) : TlsTrust.DEFAULT;
    this.base = `${options.plainHttp || isLoopbackHost(host) ? 'http' : 'https'}://${host}`;
    this.auth = auth;
  }

  /** Sends a request; idempotent ones (GET, HEAD) are retried on 408, 429 and 5xx with backoff. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    if (!path.startsWith('/') || path.startsWith('//'))
      throw new Error(`request path must start with a single "/": ${path}`);
    const idempotent = method === 'GET' || method === 'HEAD';
    for (let retry = 0; ; retry++) {
      let res: HttpResponse;
      try {
        res = await this.#once(method, path, options);
      } catch (err) {
        // A reset or timed-out connection is worth another try for a read; a write may have landed.
        if (!idempotent || retry >= RETRIES || !isTransientNetworkError(err)) throw err;
        await new Promise((r) => setTimeout(r, 100 * 2 ** retry + Math.random() * 100));
        continue;
      }
      const transient = res.status === 408 || res.status === 429 || res.status >= 500;
      if (!idempotent || !transient || retry >= RETRIES) return res;
      await res.discard();
      const after = Number(res.headers.get('retry-after'));
      const backoff = Number.isFinite(after) && after > 0 ? Math.min(after, 30) * 1000 : 100 * 2 ** retry;
      await new Promise((r) => setTimeout(r, backoff + Math.random() * 100));
    }
  }

  /**
   * Follows a URL the registry handed out (an upload `Location`, a `Link`). On the registry's own origin
   * it is an ordinary request; elsewhere (a storage backend) it goes without our credentials, which
   * belong to the registry alone.
   */
  async requestUrl(method: string, location: string, options: RequestOptions = {}): Promise<HttpResponse> {
    const url = new URL(location, this.base);
    if (url.origin === new URL(this.base).origin)
      return this.request(method, url.pathname + url.search, options);
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new Error(`refusing to follow ${url.protocol} location ${location}`);
    const body = typeof options.body === 'function' ? await options.body() : options.body;
    return send(url, {
      method,
      ...(options.headers ? { headers: options.headers } : {}),
      body,
      trust: this.trust,
    });
  }

  async #once(method: string, path: string, options: RequestOptions): Promise<HttpResponse> {
    let authorization = this.auth.headerFor(options.scope);
    for (let attempt = 0; ; attempt++) {
      const body = typeof options.body === 'function' ? await options.body() : options.body;
      const res = await send(new URL(path, this.base), {
        method,
        headers: { ...options.headers, ...(authorization ? { Authorization: authorization } : {}) },
        body,
        ...(options.download ? { download: true } : {}),
        trust: this.trust,
      });
      if (res.status !== 401 || attempt >= 2) return res;
      // Read before asking a token endpoint: an unread body would hold this connection (and, should
      // the token request fail, the process) open. The bytes stay for the caller's error message.
      await res.bytes().catch(() => {});
      const challenge = parseChallenge(res.headers.get('www-authenticate'));
      const next = challenge
        ? await this.auth.respond(challenge, options.scope, authorization, this.trust)
        : undefined;
      if (!next) return res;
      authorization = next;
    }
  }
}
