/**
 * notation's X.509 trust store: `{NOTATION_CONFIG}/truststore/x509/{ca|signingAuthority|tsa}/<name>/<files>`.
 * Rules follow notation-go verifier/truststore (the code, where it differs from the spec): the store and
 * every entry must be regular (no symlinks, no sub-directories: an error, not skipped), every file is read
 * whatever its extension, files hold PEM or DER certificates, and each certificate must be a CA or
 * self-signed (tsa stores: self-signed root CAs).
 */
import type { X509Certificate } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { certificateInfo, formatSubject, parseCertificates } from './cert-info.ts';
import { SignatureError } from './errors.ts';

export type TrustStoreType = 'ca' | 'signingAuthority' | 'tsa';
export const TRUST_STORE_TYPES: readonly TrustStoreType[] = ['ca', 'signingAuthority', 'tsa'];

const STORE_NAME = /^[a-zA-Z0-9_.-]+$/;

export function isValidTrustStoreName(name: string): boolean {
  return STORE_NAME.test(name);
}

/**
 * notation's configuration directory: `$NOTATION_CONFIG` when set (honoured by notation v1.3.2), else Go's
 * `os.UserConfigDir()/notation`: `$XDG_CONFIG_HOME` (absolute only) or `~/.config` on Linux/BSD,
 * `~/Library/Application Support` on macOS, `%AppData%` on Windows.
 */
export function notationConfigDir(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  home: string = homedir(),
): string {
  if (env.NOTATION_CONFIG) return env.NOTATION_CONFIG;
  if (platform === 'win32') {
    if (!env.AppData) throw new SignatureError('TRUST_STORE', '%AppData% is not defined');
    return join(env.AppData, 'notation');
  }
  if (platform === 'darwin') return join(home, 'Library', 'Application Support', 'notation');
  const xdg = env.XDG_CONFIG_HOME;
  // Go ignores a relative XDG_CONFIG_HOME (it returns an error); falling back to ~/.config matches what users get.
  if (xdg && isAbsolute(xdg)) return join(xdg, 'notation');
  return join(home, '.config', 'notation');
}

/** `{config}/truststore`: ⚠ the spec says `trust-store`, notation's code uses `truststore`. */
export function defaultTrustStoreDir(configDir: string = notationConfigDir()): string {
  return join(configDir, 'truststore');
}

/**
 * Paths of a config directory's trust policy files. notation v1.3 (and Tether) read only `v1`,
 * trustpolicy.json; notation v2 prefers `oci`, trustpolicy.oci.json.
 */
export function trustPolicyPaths(configDir: string = notationConfigDir()): { v1: string; oci: string } {
  return { v1: join(configDir, 'trustpolicy.json'), oci: join(configDir, 'trustpolicy.oci.json') };
}

function storeError(message: string, cause?: unknown): SignatureError {
  return new SignatureError('TRUST_STORE', message, cause === undefined ? undefined : { cause });
}

/** notation's ValidateCertificates: a trust store holds CA certificates or self-signed certificates only. */
function validateTrusted(cert: X509Certificate, file: string, type: TrustStoreType, name: string): void {
  const info = certificateInfo(cert);
  const selfSigned = (() => {
    try {
      return info.signatureAlgorithmAccepted && cert.verify(cert.publicKey);
    } catch {
      return false;
    }
  })();
  if (!info.basicConstraints?.ca && !selfSigned) {
    throw storeError(
      `failed to validate the trusted certificate ${file} in trust store ${name} of type ${type}: certificate with subject "${formatSubject(cert)}" is not a CA certificate or self-signed signing certificate`,
    );
  }
  if (
    type === 'tsa' &&
    !(info.basicConstraints?.ca && selfSigned && info.rawIssuer.equals(info.rawSubject))
  ) {
    throw storeError(
      `trusted certificate ${file} in trust store ${name} of type tsa is not a root CA certificate (tsa stores must hold self-signed root CAs)`,
    );
  }
}

/** Loads every certificate of one named store; a missing or empty store is an error, as in notation. */
export async function loadTrustStore(
  trustStoreDir: string,
  type: TrustStoreType,
  name: string,
): Promise<X509Certificate[]> {
  if (!TRUST_STORE_TYPES.includes(type)) throw storeError(`unsupported trust store type: ${type}`);
  if (!isValidTrustStoreName(name))
    throw storeError('named store name needs to follow [a-zA-Z0-9_.-]+ format');
  const dir = join(trustStoreDir, 'x509', type, name);
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw storeError(`the trust store "${name}" of type "${type}" does not exist`, err);
    }
    throw storeError(
      `cannot access the trust store "${name}" of type "${type}": ${(err as Error).message}`,
      err,
    );
  }
  if (!st.isDirectory() || st.isSymbolicLink()) {
    throw storeError(
      `the trust store ${name} of type ${type} with path ${dir} is not a regular directory (symlinks are not supported)`,
    );
  }
  const certificates: X509Certificate[] = [];
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of entries) {
    if (!entry.isFile()) {
      throw storeError(
        `trusted certificate ${entry.name} in trust store ${name} of type ${type} is not a regular file (directories or symlinks are not supported)`,
      );
    }
    let certs: X509Certificate[];
    try {
      certs = parseCertificates(await readFile(join(dir, entry.name)));
    } catch (err) {
      throw storeError(
        `failed to read the trusted certificate ${entry.name} in trust store ${name} of type ${type}: ${(err as Error).message}`,
        err,
      );
    }
    if (certs.length === 0) {
      throw storeError(
        `failed to read the trusted certificate ${entry.name} in trust store ${name} of type ${type}: no certificates found`,
      );
    }
    for (const cert of certs) validateTrusted(cert, entry.name, type, name);
    certificates.push(...certs);
  }
  if (certificates.length === 0) {
    throw storeError(`no x509 certificates were found in trust store "${name}" of type "${type}"`);
  }
  return certificates;
}

/**
 * Adds PEM files to a named store, creating it (what `notation cert add --type <type> --store <name>` does),
 * so tests and tools can prepare a `NOTATION_CONFIG` that both this library and notation read.
 */
export async function addToTrustStore(
  trustStoreDir: string,
  type: TrustStoreType,
  name: string,
  files: Record<string, string | Uint8Array>,
): Promise<string> {
  if (!TRUST_STORE_TYPES.includes(type)) throw storeError(`unsupported trust store type: ${type}`);
  if (!isValidTrustStoreName(name))
    throw storeError('named store name needs to follow [a-zA-Z0-9_.-]+ format');
  const dir = join(trustStoreDir, 'x509', type, name);
  await mkdir(dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) {
    if (!isValidTrustStoreName(file))
      throw storeError(`invalid certificate file name ${JSON.stringify(file)}`);
    await writeFile(join(dir, file), content);
  }
  return dir;
}
