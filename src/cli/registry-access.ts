import { readFile } from 'node:fs/promises';
import type { Credentials } from '../client/docker-config.ts';
import { pemCertificates, type TlsSettings } from '../client/tls.ts';
import { ConfigError } from '../config-error.ts';

/**
 * How a command reaches its registries beyond `--plain-http`: the credential and TLS flags every client
 * command takes (`login` the same ones). `cp` also takes them per side, with oras cp's names
 * (`--from-username`, `--to-ca-file`), for the source's or the destination's registry.
 */
export const CREDENTIAL_FLAGS = {
  username: { type: 'string', short: 'u' },
  password: { type: 'string', short: 'p' },
  'password-stdin': { type: 'boolean' },
} as const;

export const COPY_CREDENTIAL_FLAGS = {
  'from-username': { type: 'string' },
  'from-password': { type: 'string' },
  'to-username': { type: 'string' },
  'to-password': { type: 'string' },
} as const;

export interface CredentialValues {
  username?: string;
  password?: string;
  'password-stdin'?: boolean;
  'from-username'?: string;
  'from-password'?: string;
  'to-username'?: string;
  'to-password'?: string;
}

export const TLS_FLAGS = {
  'ca-file': { type: 'string' },
  insecure: { type: 'boolean' },
} as const;

export const COPY_TLS_FLAGS = {
  'from-ca-file': { type: 'string' },
  'from-insecure': { type: 'boolean' },
  'to-ca-file': { type: 'string' },
  'to-insecure': { type: 'boolean' },
} as const;

export interface TlsValues {
  'ca-file'?: string;
  insecure?: boolean;
  'from-ca-file'?: string;
  'from-insecure'?: boolean;
  'to-ca-file'?: string;
  'to-insecure'?: boolean;
}

/**
 * The credential and TLS flags given for every registry of a command (not those of one side of a
 * copy), as messages name them: `-u`, `-p`, `--password-stdin`, `--ca-file`, `--insecure`.
 */
export function registryFlags(values: CredentialValues & TlsValues): string[] {
  return (['username', 'password', 'password-stdin', 'ca-file', 'insecure'] as const)
    .filter((name) => values[name] !== undefined)
    .map((name) => (name === 'username' ? '-u' : name === 'password' ? '-p' : `--${name}`));
}

/** Which of a copy's registries flags are for: both (`''`), the source or the destination. */
export type Side = '' | 'from-' | 'to-';

const SIDES: readonly Side[] = ['', 'from-', 'to-'];

/** The first line of standard input, without its line break (`echo "$PASSWORD" | tether …`). */
export async function readStdinLine(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  return text.split(/\r?\n/)[0] ?? '';
}

/**
 * The credentials the flags give, per side: `-u`/`-p` (or `--password-stdin`) for every registry of
 * the command, `--from-username`/`--from-password` and `--to-…` for one side of a copy instead. A
 * side without any is undefined: config.json and its helpers are read for it, as without flags. As
 * with oras, a password without a user name is an identity token (an OAuth2 refresh token, see
 * `Credentials`). `--password-stdin` gives the password of the one user name given without one;
 * without a user name, it is an identity token like `-p`. Everything is checked before anything is
 * sent: a user name without a password is a usage error, as are two user names waiting for stdin.
 */
export async function credentialsBySide(
  values: CredentialValues,
  stdin: () => Promise<string> = readStdinLine,
): Promise<Record<Side, Credentials | undefined>> {
  const flag = (side: Side, name: 'username' | 'password') =>
    (side ? `${side}${name}` : name) as keyof CredentialValues;
  const given = SIDES.map((side) => ({
    side,
    username: values[flag(side, 'username')] as string | undefined,
    password: values[flag(side, 'password')] as string | undefined,
  }));
  if (values['password-stdin']) {
    if (values.password !== undefined) throw new ConfigError('-p and --password-stdin exclude each other');
    const waiting = given.filter((g) => g.username !== undefined && g.password === undefined);
    if (waiting.length > 1)
      throw new ConfigError(
        `--password-stdin gives one password, and ${waiting.map((g) => shown(g.side, 'username')).join(' and ')} each need one`,
      );
    const password = await stdin();
    if (!password)
      throw new ConfigError('--password-stdin: standard input has no password on its first line');
    // Without a user name waiting for it, the secret is the identity token of every side (as -p alone).
    (waiting[0] ?? given[0]!).password = password;
  }
  const bySide = {} as Record<Side, Credentials | undefined>;
  for (const { side, username, password } of given) {
    if (username !== undefined && !password)
      throw new ConfigError(
        `${shown(side, 'username')} ${username} needs a password: ${shown(side, 'password')} or --password-stdin`,
      );
    if (username === '') throw new ConfigError(`${shown(side, 'username')} takes a user name`);
    if (password === '') throw new ConfigError(`${shown(side, 'password')} takes a password`);
    bySide[side] =
      password === undefined
        ? undefined
        : username === undefined
          ? { username: '', password: '', identityToken: password }
          : { username, password };
  }
  bySide['from-'] ??= bySide[''];
  bySide['to-'] ??= bySide[''];
  return bySide;
}

/** A credential flag as messages name it: `-u`, `-p`, `--from-username`. */
function shown(side: Side, name: 'username' | 'password'): string {
  return side ? `--${side}${name}` : name === 'username' ? '-u' : '-p';
}

/**
 * Says once, on stderr, that a password was given on the command line, where other users see it
 * (`ps`) and the shell's history keeps it (as oras warns).
 */
export function warnIfPasswordFlags(values: CredentialValues): void {
  const flags = (['password', 'from-password', 'to-password'] as const)
    .filter((name) => values[name] !== undefined)
    .map((name) => (name === 'password' ? '-p' : `--${name}`));
  if (flags.length === 0) return;
  console.error(
    `tether: warning: ${flags.join(', ')}: a password on the command line shows in the process list and the shell's history; use --password-stdin`,
  );
}

/**
 * The TLS settings `--ca-file` and `--insecure` ask for, or with `side` the settings of one side of
 * a copy, where `--from-ca-file` replaces `--ca-file` and `--from-insecure` adds to `--insecure`.
 * The CA file is read and its certificates checked here, before anything is sent: a missing file or
 * one without a certificate is a usage error naming the flag. Undefined: Node's CAs, as without flags.
 */
export async function tlsSettings(values: TlsValues, side: Side = ''): Promise<TlsSettings | undefined> {
  const sideCa = side ? values[`${side}ca-file`] : undefined;
  const caFlag = sideCa !== undefined ? `${side}ca-file` : 'ca-file';
  const caFile = sideCa ?? values['ca-file'];
  const insecure = values.insecure === true || (side !== '' && values[`${side}insecure`] === true);
  if (insecure) return { insecure: true };
  if (caFile === undefined) return undefined;
  let pem: Buffer;
  try {
    pem = await readFile(caFile);
  } catch (err) {
    throw new ConfigError(`--${caFlag} ${caFile}: ${(err as Error).message}`);
  }
  try {
    pemCertificates(pem);
  } catch (err) {
    throw new ConfigError(`--${caFlag} ${caFile}: ${(err as Error).message}`);
  }
  return { ca: pem };
}

/** The `--insecure` flags given, for the one warning a command prints about them. */
export function insecureFlags(values: TlsValues): string[] {
  return (['insecure', 'from-insecure', 'to-insecure'] as const)
    .filter((flag) => values[flag] === true)
    .map((flag) => `--${flag}`);
}

/**
 * Says once, on stderr, that certificates go unchecked: with `--insecure` anyone on the path to the
 * registry can pose as it and read or change what is sent, credentials included.
 */
export function warnIfInsecure(values: TlsValues): void {
  const flags = insecureFlags(values);
  if (flags.length === 0) return;
  console.error(
    `tether: warning: ${flags.join(', ')}: TLS certificates are not verified; anyone on the network path can pose as the registry`,
  );
}
