import { type Authenticator, parseChallenge } from './auth.ts';
import { ClientError } from './errors.ts';
import type { HttpResponse } from './response.ts';
import { type TlsSettings, TlsTrust } from './tls.ts';
import { answeredAsTlsPort, notTlsReason, plainRequestMetTls } from './tls-port.ts';
import { isTransientNetworkError, type SendBody, send } from './transport.ts';

/**
 * HTTP to one registry host: picks the scheme (see `isLoopbackHost`), attaches what the
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
 * localhost, 127.0.0.0/8 and ::1: where a registry is usually a developer's own, often on plain HTTP.
 * Host names are case-insensitive: `LOCALHOST:5000` is loopback too.
 *
 * Such a host is asked in plain HTTP first, and over HTTPS from the first answer that shows its port
 * speaks TLS (`RegistryHttp.#settleScheme`), with its certificate checked as any registry's. Docker and
 * crane go the other way round: HTTPS first, then plain HTTP when the handshake fails. That costs every
 * command against a plain-HTTP registry (the usual local one) a failed handshake, and loading Node's
 * TLS (~10 ms of start-up); this order costs a TLS registry one refused request, once per command.
 * It never goes from HTTPS down to plain HTTP, and `plainHttp` (`--plain-http`) keeps to plain HTTP.
 */
export function isLoopbackHost(host: string): boolean {
  const name = (host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.split(':')[0]!).toLowerCase();
  return name === 'localhost' || /^127(\.\d{1,3}){3}$/.test(name) || name === '::1';
}

const RETRIES = 4;

export class RegistryHttp {
  /** `HOST[:PORT]` as the user named it. */
  readonly host: string;
  readonly auth: Authenticator;
  /** How this registry's certificates are checked, and its token realm's and redirects'. */
  readonly trust: TlsTrust;
  #scheme: 'http' | 'https';
  /** Plain HTTP as asked (`plainHttp`), not by default for a loopback host: never switched to HTTPS. */
  readonly #plainAsked: boolean;
  /** Until the host has answered, a plain-HTTP failure may mean its port speaks TLS. */
  #schemeSettled: boolean;

  constructor(
    host: string,
    auth: Authenticator,
    options: { plainHttp?: boolean; tls?: TlsSettings | undefined } = {},
  ) {
    this.host = host;
    this.trust = options.tls ? new TlsTrust(options.tls) : TlsTrust.DEFAULT;
    this.#plainAsked = options.plainHttp === true;
    this.#scheme = this.#plainAsked || isLoopbackHost(host) ? 'http' : 'https';
    this.#schemeSettled = this.#scheme === 'https';
    this.auth = auth;
  }

  /** `http://HOST` or `https://HOST`; a loopback host's turns to HTTPS when it answers as TLS. */
  get base(): string {
    return `${this.#scheme}://${this.host}`;
  }

  /** Sends a request; idempotent ones (GET, HEAD) are retried on 408, 429 and 5xx with backoff. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    if (!path.startsWith('/') || path.startsWith('//'))
      throw new Error(`request path must start with a single "/": ${path}`);
    const idempotent = method === 'GET' || method === 'HEAD';
    for (let retry = 0; ; retry++) {
      let res: HttpResponse;
      try {
        res = this.#schemeSettled
          ? await this.#once(this.base, method, path, options)
          : await this.#settleScheme(method, path, options);
      } catch (err) {
        // A reset or timed-out connection is worth another try for a read; a write may have landed.
        if (!idempotent || retry >= RETRIES || !isTransientNetworkError(err)) throw this.#explained(err);
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

  /**
   * A request before the host has answered: in plain HTTP, and when the answer is what a TLS port gives
   * a plain request, again over HTTPS (loopback hosts, see `isLoopbackHost`). Sending it twice cannot
   * do it twice: on a TLS port the plain request never reached the registry, and on a plain port the
   * HTTPS one cannot. Whatever answers settles the scheme: an HTTP response either way, or a TLS
   * handshake that got as far as refusing a certificate (that error is the one to report). HTTPS
   * answered with bytes that are not TLS means the port is plain after all, and the plain request's
   * own failure is reported (and retried) as before.
   */
  async #settleScheme(method: string, path: string, options: RequestOptions): Promise<HttpResponse> {
    let plain: HttpResponse | undefined;
    let plainFailure: unknown;
    try {
      plain = await this.#once(this.base, method, path, options);
    } catch (err) {
      if (!plainRequestMetTls(err)) throw err;
      plainFailure = err;
    }
    if (plain && !(await answeredAsTlsPort(plain))) {
      this.#schemeSettled = true;
      return plain;
    }
    if (plain && this.#plainAsked) {
      throw new ClientError(
        `${this.host} answered plain HTTP with a 400, as HTTPS servers do: if it serves HTTPS, leave out --plain-http`,
        400,
      );
    }
    if (this.#plainAsked) throw plainFailure;
    try {
      const res = await this.#once(`https://${this.host}`, method, path, options);
      this.#useHttps();
      return res;
    } catch (err) {
      if (notTlsReason(err)) this.#schemeSettled = true;
      else if (!isTransientNetworkError(err)) {
        // A TLS port that refused the handshake (an untrusted certificate, say): that is the news.
        this.#useHttps();
        throw err;
      }
      if (plain) return plain;
      throw plainFailure;
    }
  }

  #useHttps(): void {
    this.#scheme = 'https';
    this.#schemeSettled = true;
  }

  /**
   * A failure to report. With `plainHttp`, a first request that failed as plain HTTP fails on a TLS
   * port gets the hint to leave the flag out (without it, a loopback host was asked over HTTPS already).
   */
  #explained(err: unknown): unknown {
    if (this.#schemeSettled || !this.#plainAsked || !plainRequestMetTls(err)) return err;
    return new ClientError(
      `${this.host} did not answer plain HTTP (${(err as Error).message}): if it serves HTTPS, leave out --plain-http`,
    );
  }

  async #once(base: string, method: string, path: string, options: RequestOptions): Promise<HttpResponse> {
    let authorization = this.auth.headerFor(options.scope);
    for (let attempt = 0; ; attempt++) {
      const body = typeof options.body === 'function' ? await options.body() : options.body;
      const res = await send(new URL(path, base), {
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
