import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  type AccessRule,
  type GroupDefinition,
  parseAccessRules,
  parseGroups,
  parseStringList,
} from './auth/access.ts';
import { parseTrustedIssuers, type TrustedIssuer } from './auth/trusted-issuers.ts';
import { parseTrustedProxies } from './auth/trusted-proxies.ts';
import { ConfigError } from './config-error.ts';
import { type PolicyRule, parsePolicyRules } from './registry/policy.ts';

/**
 * One typed configuration. Sources, weakest first: defaults < file (YAML or JSON) < `TETHER_*`
 * environment variables < command-line flags. Every setting is declared once in SETTINGS; the loader,
 * the error messages and docs/configuration.md all follow from that table.
 */
export interface TetherConfig {
  listen: string;
  data: string;
  storage: {
    blobs: 'fs' | 'memory';
    meta: 'sqlite' | 'memory';
    sqliteSynchronous: 'FULL' | 'NORMAL';
    fsync: boolean;
  };
  delete: { enabled: boolean };
  uploads: { ttlSeconds: number; automaticMount: boolean; maxSessions: number };
  limits: {
    manifestMaxBytes: number;
    blobMaxBytes: number;
    pageSizeMax: number;
    maxConnections: number;
    headersTimeoutSeconds: number;
    bodyIdleSeconds: number;
    bodyTimeoutSeconds: number;
    sendIdleSeconds: number;
  };
  referrers: {
    subjectPolicy: 'accept' | 'require';
    onSubjectDelete: 'keep' | 'cascade';
    mergeFallbackTags: boolean;
    serveFallbackTags: boolean;
    policies: PolicyRule[];
  };
  auth: {
    mode: 'none' | 'basic' | 'token';
    htpasswd: string;
    realm: string;
    admins: string[];
    groups: GroupDefinition[];
    access: AccessRule[];
    token: {
      realm: string;
      service: string;
      issuer: string;
      ttlSeconds: number;
      refreshTtlSeconds: number;
      keyFile: string;
      trustedIssuers: TrustedIssuer[];
    };
    throttle: { clientFailures: number; userFailures: number };
    trustedProxies: string[];
  };
  tls: { cert: string; key: string };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
}

type Kind =
  | { type: 'string'; optional?: boolean }
  | { type: 'int'; min: number }
  | { type: 'bool' }
  | { type: 'enum'; values: string[] }
  /** Structured values (lists of objects); `parse` validates and throws with a message. */
  | { type: 'json'; parse: (raw: unknown) => unknown };

type Value = string | number | boolean | unknown[];

export interface Setting {
  /** Dotted path in the config file and in TetherConfig. */
  key: string;
  env: string;
  flag?: string;
  kind: Kind;
  default: Value;
  description: string;
}

export const SETTINGS: Setting[] = [
  {
    key: 'listen',
    env: 'TETHER_LISTEN',
    flag: 'listen',
    kind: { type: 'string' },
    default: '127.0.0.1:5000',
    description: 'HOST:PORT to listen on (port 0 picks a free port).',
  },
  {
    key: 'data',
    env: 'TETHER_DATA',
    flag: 'data',
    kind: { type: 'string' },
    default: './data',
    description:
      'Directory for blobs (`blobs/`, `uploads/`) and the SQLite database (`meta.db`); one server at a time uses it (`tether.lock`).',
  },
  {
    key: 'storage.blobs',
    env: 'TETHER_STORAGE_BLOBS',
    kind: { type: 'enum', values: ['fs', 'memory'] },
    default: 'fs',
    description: 'Blob store driver: `fs` (durable, under `data`) or `memory` (tests only).',
  },
  {
    key: 'storage.meta',
    env: 'TETHER_STORAGE_META',
    kind: { type: 'enum', values: ['sqlite', 'memory'] },
    default: 'sqlite',
    description:
      'Metadata driver: `sqlite` (`data/meta.db`, WAL) or `memory` (in-memory SQLite, tests only).',
  },
  {
    key: 'storage.sqliteSynchronous',
    env: 'TETHER_SQLITE_SYNCHRONOUS',
    kind: { type: 'enum', values: ['FULL', 'NORMAL'] },
    default: 'FULL',
    description:
      '`FULL`: every acknowledged write survives power loss (Tether flushes the WAL off the event loop, one flush for all commits in flight). `NORMAL`: survives process crashes only, no flush.',
  },
  {
    key: 'storage.fsync',
    env: 'TETHER_STORAGE_FSYNC',
    kind: { type: 'bool' },
    default: true,
    description:
      "Sync blob data and directories to disk before acknowledging. `false` leaves them to the kernel's write-back (what Distribution always does, and zot without `commit`): faster pushes, but a power loss can lose or truncate acknowledged blobs. Process crashes stay safe.",
  },
  {
    key: 'delete.enabled',
    env: 'TETHER_DELETE_ENABLED',
    kind: { type: 'bool' },
    default: true,
    description: 'Allow DELETE of manifests, tags and blobs; when false they answer 405 `UNSUPPORTED`.',
  },
  {
    key: 'uploads.ttlSeconds',
    env: 'TETHER_UPLOADS_TTL_SECONDS',
    kind: { type: 'int', min: 1 },
    default: 86400,
    description: 'Idle upload sessions are removed after this many seconds.',
  },
  {
    key: 'uploads.maxSessions',
    env: 'TETHER_UPLOADS_MAX_SESSIONS',
    kind: { type: 'int', min: 1 },
    default: 10000,
    description:
      'Open upload sessions at most, over all repositories; a POST beyond it answers 429 `TOOMANYREQUESTS` until sessions finish or expire. Each holds a staged file, a row and a running hash, so this bounds what clients that open sessions and never finish them can pin.',
  },
  {
    key: 'uploads.automaticMount',
    env: 'TETHER_UPLOADS_AUTOMATIC_MOUNT',
    kind: { type: 'bool' },
    default: true,
    description: 'Mount without `from`: link a blob from any repository that holds it.',
  },
  {
    key: 'limits.manifestMaxBytes',
    env: 'TETHER_LIMITS_MANIFEST_MAX_BYTES',
    kind: { type: 'int', min: 1024 },
    default: 4 * 1024 * 1024,
    description:
      'Largest manifest accepted (413 above it), and largest index a referrers-schema tag is built as (409 above it; docs/referrers.md).',
  },
  {
    key: 'limits.blobMaxBytes',
    env: 'TETHER_LIMITS_BLOB_MAX_BYTES',
    kind: { type: 'int', min: 0 },
    default: 0,
    description: 'Largest blob accepted (413 above it); 0 means no limit.',
  },
  {
    key: 'limits.pageSizeMax',
    env: 'TETHER_LIMITS_PAGE_SIZE_MAX',
    kind: { type: 'int', min: 1 },
    default: 1000,
    description: 'Default and largest page for `_catalog` and referrers (`n` above it is clamped).',
  },
  {
    key: 'limits.maxConnections',
    env: 'TETHER_LIMITS_MAX_CONNECTIONS',
    kind: { type: 'int', min: 1 },
    default: 1000,
    description:
      'Open client connections at most. One over it is answered `429 TOOMANYREQUESTS` with `Retry-After` and closed, and does not count (over TLS only while that costs under 50 handshakes a second; past that it is closed unanswered). Each connection may hold a request body being read (up to `limits.manifestMaxBytes` for a manifest), so this bounds what stalled clients can pin.',
  },
  {
    key: 'limits.headersTimeoutSeconds',
    env: 'TETHER_LIMITS_HEADERS_TIMEOUT_SECONDS',
    kind: { type: 'int', min: 1 },
    default: 30,
    description:
      "A request's headers must arrive within this long (408 otherwise; checked every few seconds). Over TLS the handshake must complete within it too, then the headers; an HTTP/2 session that sends no complete request within it is closed (GOAWAY).",
  },
  {
    key: 'limits.bodyIdleSeconds',
    env: 'TETHER_LIMITS_BODY_IDLE_SECONDS',
    kind: { type: 'int', min: 1 },
    default: 60,
    description:
      'A request body during which no byte arrives for this long is abandoned (408, connection closed). Uploads may take as long as they need while bytes flow (like nginx `client_body_timeout`).',
  },
  {
    key: 'limits.bodyTimeoutSeconds',
    env: 'TETHER_LIMITS_BODY_TIMEOUT_SECONDS',
    kind: { type: 'int', min: 1 },
    default: 60,
    description:
      'A manifest or token-form body must arrive whole within this long (408 otherwise; blob uploads have only the idle limit). 4 MiB in 60 s is 70 KB/s.',
  },
  {
    key: 'limits.sendIdleSeconds',
    env: 'TETHER_LIMITS_SEND_IDLE_SECONDS',
    kind: { type: 'int', min: 1 },
    default: 60,
    description:
      'A response during which the client takes no bytes for this long is abandoned (HTTP/1: connection closed; HTTP/2: stream reset; a warning logged) and its file and buffers freed. A download that waits this long for a storage read (a failing disk, hung network storage) is abandoned too and logged as an error naming the storage read, not the client; its file is closed once the read returns. Downloads may take as long as they need while bytes flow (like nginx `send_timeout`); an answer built in memory (a manifest, a page) must be taken whole within it: 4 MiB in 60 s is 70 KB/s.',
  },
  {
    key: 'referrers.subjectPolicy',
    env: 'TETHER_REFERRERS_SUBJECT_POLICY',
    kind: { type: 'enum', values: ['accept', 'require'] },
    default: 'accept',
    description:
      '`accept` (spec): a manifest whose subject does not exist is stored. `require`: such a push is refused with 400 `MANIFEST_BLOB_UNKNOWN` (strict referential integrity; not OCI 1.1 conformant).',
  },
  {
    key: 'referrers.onSubjectDelete',
    env: 'TETHER_REFERRERS_ON_SUBJECT_DELETE',
    kind: { type: 'enum', values: ['keep', 'cascade'] },
    default: 'keep',
    description:
      '`keep` (weak links): deleting a subject leaves its referrers. `cascade`: deleting a subject by digest deletes its referrer tree and its fallback tag.',
  },
  {
    key: 'referrers.policies',
    env: 'TETHER_REFERRERS_POLICIES',
    kind: { type: 'json', parse: parsePolicyRules },
    default: [],
    description:
      'Per-repository overrides, first match wins: a list of `{repositories: GLOB, subjectPolicy?, onSubjectDelete?}` (`*` = one path segment, `**` = any). In the environment, as JSON.',
  },
  {
    key: 'referrers.mergeFallbackTags',
    env: 'TETHER_REFERRERS_MERGE_FALLBACK_TAGS',
    kind: { type: 'bool' },
    default: true,
    description:
      "Keep a pushed referrers-schema tag (`sha256-<hex>`) in step with the referrers: its index is served byte-exact while it lists exactly the subject's referrers, else an index of them is (tag-only clients see API pushes and deletes). `false`: served as pushed, always. The API answer is the same either way.",
  },
  {
    key: 'referrers.serveFallbackTags',
    env: 'TETHER_REFERRERS_SERVE_FALLBACK_TAGS',
    kind: { type: 'bool' },
    default: true,
    description:
      "Answer GET of a referrers-schema tag nobody pushed with an index of the subject's referrers (404 when there are none).",
  },
  {
    key: 'auth.mode',
    env: 'TETHER_AUTH_MODE',
    kind: { type: 'enum', values: ['none', 'basic', 'token'] },
    default: 'none',
    description:
      '`none`: open registry. `basic`: HTTP Basic against `auth.htpasswd`. `token`: Docker registry token protocol with the built-in token endpoint (`/auth/token`).',
  },
  {
    key: 'auth.htpasswd',
    env: 'TETHER_AUTH_HTPASSWD',
    kind: { type: 'string', optional: true },
    default: '',
    description:
      'htpasswd file of bcrypt hashes (edit with `tether user`); empty means `<data>/htpasswd`. Re-read when it changes.',
  },
  {
    key: 'auth.realm',
    env: 'TETHER_AUTH_REALM',
    kind: { type: 'string' },
    default: 'tether',
    description: 'Realm of the Basic challenge.',
  },
  {
    key: 'auth.admins',
    env: 'TETHER_AUTH_ADMINS',
    kind: { type: 'json', parse: parseStringList },
    default: [],
    description: 'Users that may do everything, everywhere (and list the whole catalog).',
  },
  {
    key: 'auth.groups',
    env: 'TETHER_AUTH_GROUPS',
    kind: { type: 'json', parse: parseGroups },
    default: [],
    description: 'Groups: a list of `{name, users: [...]}`.',
  },
  {
    key: 'auth.access',
    env: 'TETHER_AUTH_ACCESS',
    kind: { type: 'json', parse: parseAccessRules },
    default: [],
    description:
      'Grants: a list of `{repositories: GLOB, actions: [pull|push|delete|*], users?, groups?, anonymous?, authenticated?}`; a caller gets the union of every matching rule that names it.',
  },
  {
    key: 'auth.token.realm',
    env: 'TETHER_AUTH_TOKEN_REALM',
    kind: { type: 'string', optional: true },
    default: '',
    description:
      'Token endpoint URL sent in challenges; empty means `<scheme>://<Host of the request>/auth/token`.',
  },
  {
    key: 'auth.token.service',
    env: 'TETHER_AUTH_TOKEN_SERVICE',
    kind: { type: 'string' },
    default: 'tether',
    description: 'The `service` of challenges and the audience of tokens.',
  },
  {
    key: 'auth.token.issuer',
    env: 'TETHER_AUTH_TOKEN_ISSUER',
    kind: { type: 'string' },
    default: 'tether',
    description: 'The `iss` of tokens Tether issues.',
  },
  {
    key: 'auth.token.ttlSeconds',
    env: 'TETHER_AUTH_TOKEN_TTL_SECONDS',
    kind: { type: 'int', min: 10 },
    default: 300,
    description: 'Lifetime of access tokens.',
  },
  {
    key: 'auth.token.refreshTtlSeconds',
    env: 'TETHER_AUTH_TOKEN_REFRESH_TTL_SECONDS',
    kind: { type: 'int', min: 60 },
    default: 2592000,
    description: 'Lifetime of refresh tokens (OAuth2 `refresh_token` grant).',
  },
  {
    key: 'auth.token.keyFile',
    env: 'TETHER_AUTH_TOKEN_KEY_FILE',
    kind: { type: 'string', optional: true },
    default: '',
    description:
      'ES256 signing key (JWK) of tokens, created on first start; empty means `<data>/auth/token-key.jwk`. Replicas must share it.',
  },
  {
    key: 'auth.token.trustedIssuers',
    env: 'TETHER_AUTH_TOKEN_TRUSTED_ISSUERS',
    kind: { type: 'json', parse: parseTrustedIssuers },
    default: [],
    description:
      'External token issuers accepted too: a list of `{issuer, jwksFile, audience?}`. Their tokens must carry `exp`.',
  },
  {
    key: 'auth.throttle.clientFailures',
    env: 'TETHER_AUTH_THROTTLE_CLIENT_FAILURES',
    kind: { type: 'int', min: 1 },
    default: 10,
    description:
      'Failed logins from one address before it is refused (429, lockout doubling per failure, at most 5 minutes).',
  },
  {
    key: 'auth.throttle.userFailures',
    env: 'TETHER_AUTH_THROTTLE_USER_FAILURES',
    kind: { type: 'int', min: 1 },
    default: 20,
    description: 'Failed logins against one user before addresses that failed are refused for that user.',
  },
  {
    key: 'auth.trustedProxies',
    env: 'TETHER_AUTH_TRUSTED_PROXIES',
    kind: { type: 'json', parse: parseTrustedProxies },
    default: [],
    description:
      'Reverse proxies (IP addresses, CIDR ranges) whose X-Forwarded-For names the client that failed logins are counted against.',
  },
  {
    key: 'tls.cert',
    env: 'TETHER_TLS_CERT',
    kind: { type: 'string', optional: true },
    default: '',
    description:
      'PEM certificate chain; with `tls.key`, serve HTTPS (HTTP/2 and HTTP/1.1). Reloaded when the files change.',
  },
  {
    key: 'tls.key',
    env: 'TETHER_TLS_KEY',
    kind: { type: 'string', optional: true },
    default: '',
    description: 'PEM private key for `tls.cert`.',
  },
  {
    key: 'log.level',
    env: 'TETHER_LOG_LEVEL',
    flag: 'log-level',
    kind: { type: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    default: 'info',
    description: 'Log level of the JSON (pino) log on stdout.',
  },
];

function coerce(setting: Setting, raw: unknown, source: string): Value {
  const where = `${setting.key} (from ${source})`;
  const { kind } = setting;
  switch (kind.type) {
    case 'string':
      if (typeof raw !== 'string' || (raw === '' && !kind.optional)) {
        throw new ConfigError(`${where} must be a non-empty string`);
      }
      return raw;
    case 'int': {
      const n =
        typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n) || n < kind.min)
        throw new ConfigError(`${where} must be an integer ≥ ${kind.min}`);
      return n;
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw new ConfigError(`${where} must be true or false`);
    case 'enum':
      if (typeof raw !== 'string' || !kind.values.includes(raw)) {
        throw new ConfigError(`${where} must be one of: ${kind.values.join(', ')}`);
      }
      return raw;
    case 'json':
      try {
        return kind.parse(typeof raw === 'string' ? JSON.parse(raw) : raw) as unknown[];
      } catch (err) {
        throw new ConfigError(`${where}: ${(err as Error).message}`);
      }
  }
}

function flatten(value: unknown, prefix: string, out: Map<string, unknown>): void {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.set(prefix, value);
  }
}

export interface ConfigSources {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values by flag name (without dashes). */
  flags?: Record<string, string | undefined>;
  /** Programmatic overrides by dotted key (library use); strongest of all. */
  overrides?: Record<string, Value>;
}

export function loadConfig(sources: ConfigSources = {}): TetherConfig {
  const values = new Map<string, Value>();
  for (const s of SETTINGS) values.set(s.key, s.default);

  if (sources.file) {
    let parsed: unknown;
    try {
      parsed = parseConfigText(readFileSync(sources.file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read config file ${sources.file}: ${(err as Error).message}`);
    }
    const flat = new Map<string, unknown>();
    flatten(parsed ?? {}, '', flat);
    for (const [key, raw] of flat) {
      const setting = SETTINGS.find((s) => s.key === key);
      if (!setting) throw new ConfigError(`unknown setting "${key}" in ${sources.file}`);
      values.set(key, coerce(setting, raw, sources.file));
    }
  }
  const env = sources.env ?? {};
  for (const s of SETTINGS) {
    const raw = env[s.env];
    if (raw !== undefined && raw !== '') values.set(s.key, coerce(s, raw, s.env));
  }
  for (const s of SETTINGS) {
    const raw = s.flag ? sources.flags?.[s.flag] : undefined;
    if (raw !== undefined) values.set(s.key, coerce(s, raw, `--${s.flag}`));
  }
  for (const [key, raw] of Object.entries(sources.overrides ?? {})) {
    const setting = SETTINGS.find((s) => s.key === key);
    if (!setting) throw new ConfigError(`unknown setting "${key}"`);
    values.set(key, coerce(setting, raw, 'options'));
  }
  parseListen(values.get('listen') as string);

  const config: Record<string, unknown> = {};
  for (const [key, value] of values) {
    const parts = key.split('.');
    let node = config;
    for (const part of parts.slice(0, -1)) {
      node[part] ??= {};
      node = node[part] as Record<string, unknown>;
    }
    node[parts.at(-1)!] = value;
  }
  return config as unknown as TetherConfig;
}

/** Splits `HOST:PORT` (IPv6 as `[::1]:5000`). */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`listen must be HOST:PORT, got "${listen}"`);
  return { host: (m[1] ?? m[2])!, port };
}

/**
 * JSON is YAML too, but the YAML parser is ~13 MB of resident memory a JSON-configured (or
 * unconfigured) server never needs, so it is loaded only for text that is not JSON.
 */
function parseConfigText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    const yaml = createRequire(import.meta.url)('yaml') as typeof import('yaml');
    return yaml.parse(text);
  }
}
