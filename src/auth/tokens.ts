import type { webcrypto } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
  SignJWT,
} from 'jose';
import type { AccessEntry } from './scope.ts';
import type { TrustedIssuer } from './trusted-issuers.ts';

type CryptoKey = webcrypto.CryptoKey;

/**
 * Short-lived access tokens in the Docker registry token format (a JWT whose `access` claim lists
 * granted scopes), plus long-lived refresh tokens for the OAuth2 form clients use. Tether signs with an
 * ES256 key kept in a JWK file (created on first start; give every replica the same file). Tokens from
 * external issuers are accepted when their issuer and JWKS file are configured.
 */
export interface TokenOptions {
  keyFile: string;
  issuer: string;
  service: string;
  ttlSeconds: number;
  refreshTtlSeconds: number;
  trustedIssuers: TrustedIssuer[];
}

export interface VerifiedToken {
  subject?: string;
  access: AccessEntry[];
  /**
   * Issued by this registry, so its subject is a local user. A trusted issuer's subject names someone
   * in that issuer's world: a `sub` of `root` there is not this registry's `root`.
   */
  local: boolean;
}

const ALG = 'ES256';

export class TokenService {
  readonly options: TokenOptions;
  readonly #privateKey: CryptoKey;
  readonly #publicKey: CryptoKey;
  readonly #kid: string;
  readonly #external: { issuer: TrustedIssuer; keys: JWTVerifyGetKey }[];

  private constructor(options: TokenOptions, privateKey: CryptoKey, publicKey: CryptoKey, kid: string) {
    this.options = options;
    this.#privateKey = privateKey;
    this.#publicKey = publicKey;
    this.#kid = kid;
    this.#external = options.trustedIssuers.map((issuer) => ({
      issuer,
      keys: createLocalJWKSet(JSON.parse(readFileSync(issuer.jwksFile, 'utf8'))),
    }));
  }

  static async open(options: TokenOptions): Promise<TokenService> {
    let jwk: JWK;
    if (existsSync(options.keyFile)) {
      jwk = JSON.parse(readFileSync(options.keyFile, 'utf8')) as JWK;
    } else {
      const pair = await generateKeyPair(ALG, { extractable: true });
      jwk = { ...(await exportJWK(pair.privateKey)), alg: ALG, kid: randomUUID() };
      mkdirSync(dirname(options.keyFile), { recursive: true });
      writeFileSync(options.keyFile, JSON.stringify(jwk), { mode: 0o600, flag: 'wx' });
    }
    const privateKey = (await importJWK(jwk, ALG)) as CryptoKey;
    const { d: _d, ...publicJwk } = jwk;
    const publicKey = (await importJWK(publicJwk, ALG)) as CryptoKey;
    return new TokenService(options, privateKey, publicKey, jwk.kid ?? 'tether');
  }

  /** The public key set, so other services can verify Tether's tokens. */
  async jwks(): Promise<{ keys: JWK[] }> {
    return { keys: [{ ...(await exportJWK(this.#publicKey)), alg: ALG, kid: this.#kid, use: 'sig' }] };
  }

  async issueAccess(
    subject: string | undefined,
    access: AccessEntry[],
  ): Promise<{ token: string; expiresIn: number }> {
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: ALG, kid: this.#kid, typ: 'JWT' })
      .setIssuer(this.options.issuer)
      .setAudience(this.options.service)
      .setSubject(subject ?? '')
      .setIssuedAt()
      .setNotBefore('-10s')
      .setExpirationTime(`${this.options.ttlSeconds}s`)
      .setJti(randomUUID())
      .sign(this.#privateKey);
    return { token, expiresIn: this.options.ttlSeconds };
  }

  /** A refresh token for `subject`, valid while its password entry has the tag `credential`. */
  async issueRefresh(subject: string, credential: string): Promise<string> {
    return new SignJWT({ use: 'refresh', cred: credential })
      .setProtectedHeader({ alg: ALG, kid: this.#kid, typ: 'JWT' })
      .setIssuer(this.options.issuer)
      .setAudience(`${this.options.service}#refresh`)
      .setSubject(subject)
      .setIssuedAt()
      .setExpirationTime(`${this.options.refreshTtlSeconds}s`)
      .setJti(randomUUID())
      .sign(this.#privateKey);
  }

  /**
   * The user a refresh token stands for and the tag of the password entry it was issued against, or
   * undefined when it is invalid or expired.
   */
  async verifyRefresh(token: string): Promise<{ user: string; credential: string } | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.#publicKey, {
        issuer: this.options.issuer,
        audience: `${this.options.service}#refresh`,
        algorithms: [ALG],
      });
      return payload.use === 'refresh' &&
        typeof payload.sub === 'string' &&
        payload.sub !== '' &&
        typeof payload.cred === 'string'
        ? { user: payload.sub, credential: payload.cred }
        : undefined;
    } catch {
      return undefined;
    }
  }

  /** Verifies an access token from Tether or a trusted issuer; undefined when it is not acceptable. */
  async verifyAccess(token: string): Promise<VerifiedToken | undefined> {
    let payload: JWTPayload | undefined;
    let local = false;
    try {
      ({ payload } = await jwtVerify(token, this.#publicKey, {
        issuer: this.options.issuer,
        audience: this.options.service,
        algorithms: [ALG],
        requiredClaims: ['exp'],
      }));
      local = true;
    } catch {
      for (const { issuer, keys } of this.#external) {
        try {
          ({ payload } = await jwtVerify(token, keys, {
            issuer: issuer.issuer,
            audience: issuer.audience ?? this.options.service,
            // A token without an expiry would be good forever: refused, whoever signed it.
            requiredClaims: ['exp'],
          }));
          break;
        } catch {
          // try the next issuer
        }
      }
    }
    if (!payload || payload.use === 'refresh') return undefined;
    const access = Array.isArray(payload.access) ? (payload.access as unknown[]).filter(isAccessEntry) : [];
    return { ...(payload.sub ? { subject: payload.sub } : {}), access, local };
  }
}

function isAccessEntry(value: unknown): value is AccessEntry {
  const v = value as AccessEntry;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.type === 'string' &&
    typeof v.name === 'string' &&
    Array.isArray(v.actions) &&
    v.actions.every((a) => typeof a === 'string')
  );
}
