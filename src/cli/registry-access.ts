import { readFile } from 'node:fs/promises';
import { pemCertificates, type TlsSettings } from '../client/tls.ts';
import { ConfigError } from '../config-error.ts';

/**
 * How a command reaches its registries beyond `--plain-http`: the TLS flags every client command takes
 * (and `login`). `cp` also takes them per side, as oras cp does (`--from-ca-file`, `--to-insecure`).
 */
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

/** Which of a copy's registries flags are for: both (`''`), the source or the destination. */
export type Side = '' | 'from-' | 'to-';

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
