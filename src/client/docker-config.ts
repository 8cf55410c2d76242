import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

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
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
}

async function save(path: string, config: DockerConfig): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(config, null, '\t')}\n`, { mode: 0o600 });
  await rename(temp, path);
}

function helper(name: string, action: 'get' | 'store' | 'erase', input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      `docker-credential-${name}`,
      [action],
      { timeout: 30_000 },
      (err, stdout, stderr) => {
        if (err)
          reject(
            new Error(
              `docker-credential-${name} ${action} failed: ${(stderr || stdout || err.message).trim()}`,
            ),
          );
        else resolve(stdout);
      },
    );
    // A helper may exit without reading its input (`get` from a file, say): the write then fails with
    // EPIPE, which says nothing the exit status does not.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input);
  });
}

function helperFor(config: DockerConfig, host: string): string | undefined {
  return config.credHelpers?.[host] ?? config.credsStore;
}

/** Keys Docker uses for Docker Hub; other registries are keyed by host[:port]. */
function keysFor(host: string): string[] {
  return host === 'docker.io' || host === 'registry-1.docker.io'
    ? ['https://index.docker.io/v1/', host]
    : [host, `https://${host}`, `http://${host}`];
}

export async function getCredentials(
  host: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Credentials | undefined> {
  const config = await load(dockerConfigPath(env));
  const name = helperFor(config, host);
  if (name) {
    try {
      const out = JSON.parse(await helper(name, 'get', host)) as { Username?: string; Secret?: string };
      if (out.Secret && out.Username === IDENTITY_TOKEN_USER)
        return { username: '', password: '', identityToken: out.Secret };
      if (out.Secret) return { username: out.Username ?? '', password: out.Secret };
    } catch {
      // "credentials not found" is an error exit for most helpers: fall through to auths.
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
  const name = helperFor(config, host);
  if (name) {
    await helper(
      name,
      'store',
      JSON.stringify({ ServerURL: host, Username: credentials.username, Secret: credentials.password }),
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
  const name = helperFor(config, host);
  let found = false;
  if (name) {
    found = await helper(name, 'erase', host).then(
      () => true,
      () => false,
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
