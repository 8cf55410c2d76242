import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AccessPolicy, type Principal } from '../auth/access.ts';
import { Htpasswd } from '../auth/htpasswd.ts';
import { type AccessEntry, type Action, formatScope, parseScope } from '../auth/scope.ts';
import { LoginThrottle } from '../auth/throttle.ts';
import type { TokenService } from '../auth/tokens.ts';
import { TrustedProxies } from '../auth/trusted-proxies.ts';
import type { TetherConfig } from '../config.ts';
import { OciError } from '../oci/errors.ts';
import { isValidRepositoryName } from '../oci/reference.ts';
import { readBody, sendJson } from './http.ts';
import type { RouteMatch } from './router.ts';

/** What the HTTP layer knows about the caller of one request. */
export interface Caller {
  user?: string;
  /** May the caller do `action` on `repo`? (Used for mounts and listings beyond the route's own check.) */
  may(repo: string, action: Action): boolean;
  /**
   * May the caller read `repo` as a mount source? With tokens: a grant in the token, or the access
   * policy for the token's user (who could get that grant anyway), so mounts work with the
   * target-only tokens clients request, without revealing anything beyond the caller's own rights.
   */
  canMountFrom(repo: string): boolean;
  /** Filter for the catalog: undefined means "everything". */
  canList?: (repo: string) => boolean;
}

export const OPEN_CALLER: Caller = { may: () => true, canMountFrom: () => true };

export const TOKEN_PATH = '/auth/token';
export const JWKS_PATH = '/auth/jwks.json';
/** Largest `POST /auth/token` form accepted (413 above it). */
export const TOKEN_FORM_MAX_BYTES = 16 * 1024;

/** The action a route needs on its repository; undefined: only authentication (base, catalog). */
function requiredAction(match: RouteMatch, method: string): Action | undefined {
  switch (match.route) {
    case 'base':
    case 'catalog':
      return undefined;
    case 'manifest':
      return method === 'PUT' ? 'push' : method === 'DELETE' ? 'delete' : 'pull';
    case 'blob':
      return method === 'DELETE' ? 'delete' : 'pull';
    case 'uploadStart':
    case 'upload':
      return 'push';
    case 'tags':
    case 'referrers':
      return 'pull';
  }
}

function challengeActions(action: Action): string {
  return action === 'push' ? 'pull,push' : action;
}

function decodeBasic(header: string | undefined): { user: string; password: string } | undefined {
  if (!header || !/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function bearer(header: string | undefined): string | undefined {
  return header && /^bearer /i.test(header) ? header.slice(7).trim() : undefined;
}

function unauthorized(challenge: string, message = 'authentication required'): OciError {
  return new OciError(401, 'UNAUTHORIZED', message, undefined, { 'WWW-Authenticate': challenge });
}

/** Retry-After of a login refused because the client's other attempts under way may lock it out. */
const IN_FLIGHT_RETRY_MS = 1000;

function tooMany(retryAfterMs: number): OciError {
  return new OciError(429, 'TOOMANYREQUESTS', 'too many failed logins; try again later', undefined, {
    'Retry-After': String(Math.ceil(retryAfterMs / 1000)),
  });
}

/**
 * Authentication and authorization for `auth.mode` basic or token. Every check happens before the
 * registry is asked anything, so a refused request never reveals whether content exists.
 */
export class Authorizer {
  readonly #config: TetherConfig['auth'];
  readonly #tls: boolean;
  readonly #htpasswd: Htpasswd;
  readonly #throttle: LoginThrottle;
  readonly #proxies: TrustedProxies;
  readonly #policy: AccessPolicy;
  readonly #tokens: TokenService | undefined;
  readonly #log: Logger;
  readonly #bodyTimeoutMs: number;

  private constructor(config: TetherConfig, tokens: TokenService | undefined, log: Logger) {
    this.#config = config.auth;
    this.#tls = config.tls.cert !== '';
    this.#htpasswd = new Htpasswd(config.auth.htpasswd || join(config.data, 'htpasswd'));
    this.#proxies = new TrustedProxies(config.auth.trustedProxies);
    this.#throttle = new LoginThrottle({
      clientFailures: config.auth.throttle.clientFailures,
      userFailures: config.auth.throttle.userFailures,
    });
    this.#policy = new AccessPolicy(config.auth.access, config.auth.groups, config.auth.admins);
    this.#tokens = tokens;
    this.#log = log;
    this.#bodyTimeoutMs = config.limits.bodyTimeoutSeconds * 1000;
  }

  static async create(config: TetherConfig, log: Logger): Promise<Authorizer | undefined> {
    if (config.auth.mode === 'none') return undefined;
    // Loaded only in token mode: the JOSE library is the largest module the server would otherwise hold.
    const tokens =
      config.auth.mode === 'token'
        ? await (await import('../auth/tokens.ts')).TokenService.open({
            keyFile: config.auth.token.keyFile || join(config.data, 'auth', 'token-key.jwk'),
            issuer: config.auth.token.issuer,
            service: config.auth.token.service,
            ttlSeconds: config.auth.token.ttlSeconds,
            refreshTtlSeconds: config.auth.token.refreshTtlSeconds,
            trustedIssuers: config.auth.token.trustedIssuers,
          })
        : undefined;
    return new Authorizer(config, tokens, log);
  }

  #basicChallenge(): string {
    return `Basic realm="${this.#config.realm}", charset="UTF-8"`;
  }

  #tokenRealm(req: IncomingMessage): string {
    if (this.#config.token.realm) return this.#config.token.realm;
    const host =
      req.headers.host && /^[A-Za-z0-9.:[\]-]{1,260}$/.test(req.headers.host)
        ? req.headers.host
        : 'localhost';
    return `${this.#tls ? 'https' : 'http'}://${host}${TOKEN_PATH}`;
  }

  #bearerChallenge(req: IncomingMessage, scope?: string, error?: string): string {
    const parts = [`realm="${this.#tokenRealm(req)}"`, `service="${this.#config.token.service}"`];
    if (scope) parts.push(`scope="${scope}"`);
    if (error) parts.push(`error="${error}"`);
    return `Bearer ${parts.join(',')}`;
  }

  /** Checks a user's password with throttling; throws 401/429, returns the principal on success. */
  async #login(req: IncomingMessage, user: string, password: string, challenge: string): Promise<Principal> {
    const client = this.#proxies.clientOf(req.socket.remoteAddress, req.headers['x-forwarded-for']);
    const wait = this.#throttle.retryAfterMs(client, user);
    if (wait > 0) throw tooMany(wait);
    // The same credentials already verified, or being verified for another request, cost no bcrypt run
    // (a client's parallel requests share one); any other check counts as a failure while it runs.
    let ok = this.#htpasswd.known(user, password);
    if (ok === undefined) {
      const attempt = this.#throttle.begin(client, user);
      if (!attempt) throw tooMany(IN_FLIGHT_RETRY_MS);
      ok = this.#htpasswd.verify(user, password);
      ok.then(attempt.release, attempt.release);
    }
    if (await ok) {
      this.#throttle.succeed(client, user);
      return { user };
    }
    this.#throttle.fail(client, user);
    this.#log.warn({ user, remote: client }, 'failed login');
    throw unauthorized(challenge, 'invalid username or password');
  }

  #callerFor(principal: Principal): Caller {
    const policy = this.#policy;
    const canPull = (repo: string) => policy.allowed(principal, repo).has('pull');
    const caller: Caller = {
      may: (repo, action) => policy.allowed(principal, repo).has(action),
      canMountFrom: canPull,
      canList: canPull,
    };
    if (principal.user !== undefined) caller.user = principal.user;
    return caller;
  }

  /** Authenticates the request and checks the route's access; throws 401/403/429 OciErrors. */
  async authorize(req: IncomingMessage, match: RouteMatch): Promise<Caller> {
    const action = requiredAction(match, req.method ?? 'GET');
    return this.#tokens
      ? this.#authorizeToken(req, match, action, this.#tokens)
      : this.#authorizeBasic(req, match, action);
  }

  async #authorizeBasic(
    req: IncomingMessage,
    match: RouteMatch,
    action: Action | undefined,
  ): Promise<Caller> {
    const header = req.headers.authorization;
    const credentials = decodeBasic(header);
    if (header && !credentials) throw unauthorized(this.#basicChallenge(), 'unsupported authorization');
    const principal = credentials
      ? await this.#login(req, credentials.user, credentials.password, this.#basicChallenge())
      : {};
    if (action === undefined) {
      if (principal.user === undefined && !this.#policy.hasAnonymousRules)
        throw unauthorized(this.#basicChallenge());
      return this.#callerFor(principal);
    }
    if (this.#policy.allowed(principal, match.name).has(action)) return this.#callerFor(principal);
    if (principal.user === undefined) throw unauthorized(this.#basicChallenge());
    throw new OciError(403, 'DENIED', `requested access to the resource is denied`);
  }

  async #authorizeToken(
    req: IncomingMessage,
    match: RouteMatch,
    action: Action | undefined,
    tokens: TokenService,
  ): Promise<Caller> {
    const scope =
      action === undefined
        ? match.route === 'catalog'
          ? 'registry:catalog:*'
          : undefined
        : `repository:${match.name}:${challengeActions(action)}`;
    const raw = bearer(req.headers.authorization);
    if (!raw) throw unauthorized(this.#bearerChallenge(req, scope));
    const verified = await tokens.verifyAccess(raw);
    if (!verified)
      throw unauthorized(this.#bearerChallenge(req, scope, 'invalid_token'), 'invalid or expired token');
    const grants = (type: string, name: string) =>
      new Set(verified.access.filter((e) => e.type === type && e.name === name).flatMap((e) => e.actions));
    const may = (repo: string, act: Action) => {
      const g = grants('repository', repo);
      return g.has(act) || g.has('*');
    };
    // A token this registry issued speaks for a local user, whom the access rules know. A trusted
    // issuer's token speaks only through what it grants: its subject is that issuer's name for someone,
    // and matching it to a local user (its `root` to ours) would hand out that user's rights.
    const principal: Principal = verified.local && verified.subject ? { user: verified.subject } : {};
    const canPull = verified.local
      ? (repo: string) => this.#policy.allowed(principal, repo).has('pull')
      : (repo: string) => may(repo, 'pull');
    const caller: Caller = {
      may,
      canMountFrom: (repo) => may(repo, 'pull') || canPull(repo),
      // The catalog is filtered by what the caller may pull.
      canList: canPull,
    };
    if (principal.user !== undefined) caller.user = principal.user;
    if (match.route === 'catalog' && !grants('registry', 'catalog').has('*')) {
      throw unauthorized(this.#bearerChallenge(req, scope, 'insufficient_scope'), 'insufficient scope');
    }
    if (action !== undefined && !caller.may(match.name, action)) {
      throw unauthorized(this.#bearerChallenge(req, scope, 'insufficient_scope'), 'insufficient scope');
    }
    return caller;
  }

  /** `GET|POST /auth/token`: Docker token protocol and its OAuth2 form. */
  async handleToken(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): Promise<void> {
    const tokens = this.#tokens;
    if (!tokens) throw new OciError(404, 'UNSUPPORTED', 'token authentication is not enabled');
    let principal: Principal = {};
    let scopes: string[];
    let wantRefresh = false;
    let refreshToken: string | undefined;
    const challenge = this.#basicChallenge();
    if (req.method === 'POST') {
      // Read before any credential is known, so anyone can send one: kept small (a form holds a user,
      // a password, a refresh token and some scopes; a GET carries the same within its 16 KiB URL).
      const form = new URLSearchParams(
        (await readBody(req, res, TOKEN_FORM_MAX_BYTES, this.#bodyTimeoutMs)).toString('utf8'),
      );
      this.#checkService(form.get('service'));
      scopes = (form.get('scope') ?? '').split(' ').filter((s) => s !== '');
      const grant = form.get('grant_type');
      if (grant === 'password') {
        principal = await this.#login(req, form.get('username') ?? '', form.get('password') ?? '', challenge);
        wantRefresh = form.get('access_type') === 'offline';
      } else if (grant === 'refresh_token') {
        const refresh = await tokens.verifyRefresh(form.get('refresh_token') ?? '');
        // Issued against a password entry that is gone or changed (user removed, password changed, the
        // name added again): it dies with it.
        if (!refresh || this.#htpasswd.credentialTag(refresh.user) !== refresh.credential)
          throw unauthorized(challenge, 'invalid refresh token');
        principal = { user: refresh.user };
        refreshToken = form.get('refresh_token')!;
      } else {
        throw new OciError(400, 'UNSUPPORTED', 'grant_type must be password or refresh_token');
      }
    } else if (req.method === 'GET') {
      scopes = query
        .getAll('scope')
        .flatMap((s) => s.split(' '))
        .filter((s) => s !== '');
      this.#checkService(query.get('service'));
      const credentials = decodeBasic(req.headers.authorization);
      if (req.headers.authorization && !credentials)
        throw unauthorized(challenge, 'unsupported authorization');
      if (credentials) principal = await this.#login(req, credentials.user, credentials.password, challenge);
      wantRefresh = query.get('offline_token') === 'true';
    } else {
      throw new OciError(405, 'UNSUPPORTED', 'use GET or POST', undefined, { Allow: 'GET, POST' });
    }
    const access = this.#grant(principal, scopes);
    const { token, expiresIn } = await tokens.issueAccess(principal.user, access);
    if (wantRefresh && principal.user !== undefined) {
      const credential = this.#htpasswd.credentialTag(principal.user);
      if (credential !== undefined) refreshToken = await tokens.issueRefresh(principal.user, credential);
    }
    sendJson(
      res,
      200,
      {
        token,
        access_token: token,
        expires_in: expiresIn,
        issued_at: new Date().toISOString(),
        scope: access.map(formatScope).join(' '),
        ...(refreshToken ? { refresh_token: refreshToken } : {}),
      },
      { 'Cache-Control': 'no-store' },
    );
  }

  /**
   * A client names the service its challenge named; another one is a client sent here by mistake (a
   * proxy's or another registry's challenge). It would otherwise get a token that this registry accepts
   * but that service refuses, and fail later with a puzzling 401. Checked before any password, so a
   * misdirected login is not counted as a failed one.
   */
  #checkService(service: string | null): void {
    const ours = this.#config.token.service;
    if (service !== null && service !== '' && service !== ours)
      throw new OciError(400, 'UNSUPPORTED', `this token service is "${ours}", not "${service}"`);
  }

  async handleJwks(res: ServerResponse): Promise<void> {
    if (!this.#tokens) throw new OciError(404, 'UNSUPPORTED', 'token authentication is not enabled');
    sendJson(res, 200, await this.#tokens.jwks());
  }

  /** Grants the requested scopes as far as the policy allows (possibly none). */
  #grant(principal: Principal, scopes: string[]): AccessEntry[] {
    const granted: AccessEntry[] = [];
    for (const raw of scopes.slice(0, 100)) {
      const scope = parseScope(raw);
      if (!scope) continue;
      if (scope.type === 'repository' && isValidRepositoryName(scope.name)) {
        const allowed = this.#policy.allowed(principal, scope.name);
        const wanted = scope.actions.includes('*') ? [...allowed] : scope.actions;
        const actions = [...new Set(wanted.filter((a) => allowed.has(a as Action)))];
        if (actions.length > 0) granted.push({ type: 'repository', name: scope.name, actions });
      } else if (scope.type === 'registry' && scope.name === 'catalog') {
        if (principal.user !== undefined || this.#policy.hasAnonymousRules) {
          granted.push({ type: 'registry', name: 'catalog', actions: ['*'] });
        }
      }
    }
    return granted;
  }
}
