import type { Credentials } from './docker-config.ts';
import { TlsTrust } from './tls.ts';
import { send } from './transport.ts';

/**
 * Registry authentication as clients speak it: answer a `WWW-Authenticate` challenge with Basic
 * credentials, or fetch a Bearer token from the challenge's realm for the scopes needed, cache it per
 * scope set until shortly before it expires, upgrade scopes (pull → pull,push) when the registry asks for
 * more, and start over when a token is refused (expired or revoked) mid-transfer.
 */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (quoted or token values, commas inside quotes). */
export function parseChallenge(header: string | null | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9-]*)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g)) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/** The token endpoint refused the credentials (`rejected`) or is throttling failed logins. */
export class AuthError extends Error {
  override name = 'AuthError';
  readonly kind: 'rejected' | 'throttled';
  constructor(kind: 'rejected' | 'throttled', message: string) {
    super(message);
    this.kind = kind;
  }
}

export class Authenticator {
  readonly #credentials: () => Promise<Credentials | undefined>;
  /** The clock tokens expire by (milliseconds since the epoch); tests move it instead of waiting. */
  readonly #now: () => number;
  /** Tokens by "realm service sorted-scopes". */
  readonly #tokens = new Map<string, CachedToken>();
  #basic: string | undefined;
  #lastChallenge: Challenge | undefined;
  #sentCredentials = false;
  /** How often a token was fetched (tests and diagnostics). */
  tokenRequests: string[] = [];

  constructor(credentials: () => Promise<Credentials | undefined>, options: { now?: () => number } = {}) {
    this.#credentials = credentials;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Whether credentials were sent: as Basic, or to the token service for a token. A refusal after that
   * is about rights, not about a missing login (see `refusal`).
   */
  get sentCredentials(): boolean {
    return this.#sentCredentials;
  }

  /** The Authorization header to send proactively for `scope`, if one is known. */
  headerFor(scope: string | undefined): string | undefined {
    if (this.#basic) return this.#basic;
    const challenge = this.#lastChallenge;
    if (challenge?.scheme !== 'bearer') return undefined;
    const cached = this.#tokens.get(this.#key(challenge, mergeScopes(scope ? [scope] : [])));
    return cached && cached.expiresAt > this.#now() ? `Bearer ${cached.token}` : undefined;
  }

  #key(challenge: Challenge, scopes: string[]): string {
    return `${challenge.params.realm} ${challenge.params.service ?? ''} ${scopes.join(' ')}`;
  }

  /**
   * Answers a 401: returns the header to retry with, or undefined when there is nothing new to try
   * (no credentials, or the same credentials were just refused). A token realm is asked under the
   * registry's `trust` (it is often the registry itself, or shares its private CA).
   */
  async respond(
    challenge: Challenge,
    scopeHint: string | undefined,
    refused: string | undefined,
    trust: TlsTrust = TlsTrust.DEFAULT,
  ): Promise<string | undefined> {
    this.#lastChallenge = challenge;
    if (challenge.scheme === 'basic') {
      const creds = await this.#credentials();
      // An identity token is for a token service; a Basic registry has no use for it.
      if (!creds || creds.identityToken) return undefined;
      const header = basicAuthorization(creds);
      if (header === refused) return undefined;
      this.#basic = header;
      this.#sentCredentials = true;
      return header;
    }
    if (challenge.scheme !== 'bearer' || !challenge.params.realm) return undefined;
    const scopes = mergeScopes([
      ...(challenge.params.scope ? challenge.params.scope.split(' ') : []),
      ...(scopeHint ? [scopeHint] : []),
    ]);
    const key = this.#key(challenge, scopes);
    const cached = this.#tokens.get(key);
    if (cached && cached.expiresAt > this.#now() && `Bearer ${cached.token}` !== refused)
      return `Bearer ${cached.token}`;
    this.#tokens.delete(key);
    const token = await this.#fetchToken(challenge, scopes, trust);
    if (!token) return undefined;
    const header = `Bearer ${token.token}`;
    if (header === refused) return undefined;
    this.#tokens.set(key, token);
    return header;
  }

  async #fetchToken(
    challenge: Challenge,
    scopes: string[],
    trust: TlsTrust,
  ): Promise<CachedToken | undefined> {
    const url = new URL(challenge.params.realm!);
    if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const creds = await this.#credentials();
    this.tokenRequests.push(scopes.join(' '));
    const res = creds?.identityToken
      ? await send(new URL(challenge.params.realm!), { ...refreshGrant(url, creds.identityToken), trust })
      : await send(url, {
          method: 'GET',
          trust,
          headers: creds ? { Authorization: basicAuthorization(creds) } : {},
        });
    // Every way out below reads or drops the body: an unread body holds its connection, and the
    // process, open.
    if (!res.ok) await res.discard();
    if (res.status === 401 || res.status === 403)
      throw new AuthError(
        'rejected',
        `the registry refused the credentials (HTTP ${res.status} from ${url.origin}${url.pathname}): run \`tether login\` again, or check -u and the password`,
      );
    if (res.status === 429)
      throw new AuthError(
        'throttled',
        `too many failed logins; retry after ${res.headers.get('retry-after') ?? 'a while'} seconds`,
      );
    if (!res.ok) throw new Error(`token endpoint answered HTTP ${res.status}`);
    const body = (await res.json()) as { token?: string; access_token?: string; expires_in?: number };
    const token = body.token ?? body.access_token;
    if (!token) return undefined;
    if (creds) this.#sentCredentials = true;
    // Refresh 10 s early so a token does not expire between our check and the registry's.
    const lifetime = Math.max(10, body.expires_in ?? 60) * 1000;
    return { token, expiresAt: this.#now() + lifetime - Math.min(10_000, lifetime / 2) };
  }
}

/** HTTP Basic credentials, for a registry or for a token realm. */
function basicAuthorization(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
}

/**
 * The OAuth2 refresh-token grant Docker's token specification defines for identity tokens: a form POST
 * to the realm with the service and scopes that the GET would carry in `tokenUrl`'s query.
 */
function refreshGrant(tokenUrl: URL, refreshToken: string) {
  const form = new URLSearchParams({
    grant_type: 'refresh_token',
    refresh_token: refreshToken,
    client_id: 'tether',
    service: tokenUrl.searchParams.get('service') ?? '',
    scope: tokenUrl.searchParams.getAll('scope').join(' '),
  });
  return {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form.toString(),
  };
}

/** `repository:a:pull` + `repository:a:push` → `repository:a:pull,push`, one entry per resource. */
export function mergeScopes(scopes: string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const scope of scopes) {
    const last = scope.lastIndexOf(':');
    if (last <= 0) continue;
    const resource = scope.slice(0, last);
    if (!byResource.has(resource)) byResource.set(resource, new Set());
    for (const a of scope.slice(last + 1).split(',')) if (a) byResource.get(resource)!.add(a);
  }
  return [...byResource].map(([r, a]) => `${r}:${[...a].sort().join(',')}`).sort();
}
