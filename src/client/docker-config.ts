import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { withScratch } from './scratch.ts';

/**
 * Credentials the way Docker keeps them: `$DOCKER_CONFIG/config.json` (default `~/.docker`), with
 * `auths.<host>.auth` = base64(user:password) or `auths.<host>.identitytoken`, or a credential helper
 * program (`docker-credential-<name>`) named by `credHelpers.<host>` or `credsStore`.
 */
export interface Credentials {
  username: string;
  password: string;
  /**
   * An OAuth2 refresh token for the registry's token service, instead of a password (`oras login
   * --identity-token`, Azure and other cloud logins; helpers return it with the user name `<token>`).
   */
  identityToken?: string;
}

/** The user name credential helpers give an identity token under (Docker's convention). */
const IDENTITY_TOKEN_USER = '<token>';

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [key: string]: unknown;
}

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
}

async function load(path: string): Promise<DockerConfig> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as DockerConfig;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    // JSON.parse quotes the text it could not read, line breaks and all: a failure is one line.
    throw new Error(`cannot read ${path}: ${(err as Error).message.replace(/\s+/g, ' ')}`);
  }
}

async function save(path: string, config: DockerConfig): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  await withScratch(temp, async () => {
    await writeFile(temp, `${JSON.stringify(config, null, '\t')}\n`, { mode: 0o600 });
    await rename(temp, path);
  });
}

/** How long a credential helper may take (a keychain prompt included) before it counts as failed. */
const HELPER_TIMEOUT_MS = 30_000;

/**
 * A credential helper that could not do what it was asked: it could not be run at all (`missing`: not
 * on PATH or not executable), failed, or (`not-found`) answered that it has no credentials for the
 * host, which is no error for a read: `auths` is tried next, then no credentials.
 */
export class CredentialHelperError extends Error {
  override name = 'CredentialHelperError';
  readonly kind: 'missing' | 'failed' | 'not-found';
  constructor(kind: 'missing' | 'failed' | 'not-found', message: string) {
    super(message);
    this.kind = kind;
  }
}

/**
 * What helpers answer, on stdout with exit status 1, when they hold nothing for the host: Docker's
 * docker-credential-helpers library says "credentials not found in native keychain", and the helpers
 * built on it (osxkeychain, secretservice, pass, wincred, ecr-login, gcloud) share the words.
 */
const NOT_FOUND = /credentials not found/i;

/** Runs `docker-credential-<name> <action>` with `input` on stdin; resolves with its stdout. */
function helper(
  name: string,
  action: 'get' | 'store' | 'erase',
  input: string,
  origin: string,
): Promise<string> {
  const program = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = execFile(program, [action], { timeout: HELPER_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const { code, killed } = err as NodeJS.ErrnoException & { killed?: boolean };
      const output = (stderr || stdout).trim().replace(/\s+/g, ' ');
      if (code === 'ENOENT' || code === 'EACCES')
        return reject(
          new CredentialHelperError(
            'missing',
            `credential helper ${program} (${origin}) cannot be run: ${code === 'ENOENT' ? 'executable file not found in $PATH' : 'permission denied'}`,
          ),
        );
      if (NOT_FOUND.test(output))
        return reject(new CredentialHelperError('not-found', `${program}: no credentials for the host`));
      reject(
        new CredentialHelperError(
          'failed',
          killed
            ? `credential helper ${program} ${action} (${origin}) did not answer within ${HELPER_TIMEOUT_MS / 1000} s`
            : `credential helper ${program} ${action} (${origin}) failed: ${output || err.message}`,
        ),
      );
    });
    // A helper may exit without reading its input (a `get` that answers at once): the write then
    // fails with EPIPE, which says nothing its exit status does not.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input);
  });
}

/** The helper for `host` and where config.json names it (for messages), if one is named. */
function helperFor(
  config: DockerConfig,
  host: string,
  path: string,
): { name: string; origin: string } | undefined {
  const own = config.credHelpers?.[host];
  if (own) return { name: own, origin: `credHelpers["${host}"] in ${path}` };
  return config.credsStore ? { name: config.credsStore, origin: `credsStore in ${path}` } : undefined;
}

/** Keys Docker uses for Docker Hub; other registries are keyed by host[:port]. */
function keysFor(host: string): string[] {
  return host === 'docker.io' || host === 'registry-1.docker.io'
    ? ['https://index.docker.io/v1/', host]
    : [host, `https://${host}`, `http://${host}`];
}

/**
 * The credentials for `host`: from its credential helper, else from `auths`. A helper that holds none
 * for the host falls through to `auths`; one that cannot be run or fails otherwise fails the read,
 * naming the helper, rather than leaving the user with a bare 401.
 */
export async function getCredentials(
  host: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Credentials | undefined> {
  const path = dockerConfigPath(env);
  const config = await load(path);
  const named = helperFor(config, host, path);
  if (named) {
    let answer: string | undefined;
    try {
      answer = await helper(named.name, 'get', host, named.origin);
    } catch (err) {
      if (!(err instanceof CredentialHelperError && err.kind === 'not-found')) throw err;
    }
    // Nothing at all on stdout (with success) is how a few helpers say they hold nothing.
    if (answer?.trim()) {
      let out: { Username?: unknown; Secret?: unknown };
      try {
        out = JSON.parse(answer) as typeof out;
      } catch {
        throw new CredentialHelperError(
          'failed',
          `credential helper docker-credential-${named.name} (${named.origin}) answered with something that is not JSON`,
        );
      }
      const username = typeof out?.Username === 'string' ? out.Username : '';
      const secret = typeof out?.Secret === 'string' ? out.Secret : '';
      if (secret && username === IDENTITY_TOKEN_USER)
        return { username: '', password: '', identityToken: secret };
      if (secret) return { username, password: secret };
    }
  }
  for (const key of keysFor(host)) {
    const entry = config.auths?.[key];
    if (!entry) continue;
    if (entry.identitytoken) return { username: '', password: '', identityToken: entry.identitytoken };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (entry.username && entry.password) return { username: entry.username, password: entry.password };
  }
  return undefined;
}

/** Stores credentials with the configured helper, or base64 in `auths` (as `docker login` does). */
export async function storeCredentials(
  host: string,
  credentials: Credentials,
  env: NodeJS.ProcessEnv = process.env,
): Promise<'helper' | 'file'> {
  const path = dockerConfigPath(env);
  const config = await load(path);
  const named = helperFor(config, host, path);
  if (named) {
    await helper(
      named.name,
      'store',
      JSON.stringify({ ServerURL: host, Username: credentials.username, Secret: credentials.password }),
      named.origin,
    );
    config.auths = { ...config.auths, [host]: {} };
    await save(path, config);
    return 'helper';
  }
  const auth = Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
  config.auths = { ...config.auths, [host]: { auth } };
  await save(path, config);
  return 'file';
}

export async function eraseCredentials(host: string, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const path = dockerConfigPath(env);
  const config = await load(path);
  const named = helperFor(config, host, path);
  let found = false;
  if (named) {
    // A helper that holds nothing for the host has nothing to erase; one that cannot be run fails.
    found = await helper(named.name, 'erase', host, named.origin).then(
      () => true,
      (err: unknown) => {
        if (err instanceof CredentialHelperError && err.kind === 'not-found') return false;
        throw err;
      },
    );
  }
  for (const key of keysFor(host)) {
    if (config.auths?.[key]) {
      delete config.auths[key];
      found = true;
    }
  }
  if (found) await save(path, config);
  return found;
}
