import { AuthError } from '../client/auth.ts';
import { ClientError } from '../client/errors.ts';
import { notTlsReason } from '../client/tls-port.ts';
import { ConfigError } from '../config-error.ts';
import { SignatureError } from '../sign/errors.ts';

/** What a failed command prints on stderr and the status it exits with. */
export interface Failure {
  message: string;
  /** 1: the operation failed; 2: usage error; 70: a bug in tether. */
  exitCode: 1 | 2 | 70;
}

const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  // A proxy that would not open a tunnel (Node's proxy agents and src/client/tunnel.ts alike).
  'ERR_PROXY_TUNNEL',
]);

/** OpenSSL's verdicts (as Node names them) that a CA the system does not know would explain. */
const UNTRUSTED_CERTIFICATE = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
]);

/** The other certificate verdicts: a private CA would not help with these. */
const BAD_CERTIFICATE = new Set([
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
]);

/**
 * Errors JavaScript raises for code that is wrong, not for a world that is: a stack trace helps there.
 * Every other error is something the user can act on (a refusal, a network or file problem, a file
 * that is not JSON, an unreadable config.json) and gets one line.
 */
const BUGS = [TypeError, RangeError, ReferenceError, EvalError];

function line(message: string, exitCode: 1 | 2): Failure {
  return { message: `tether: ${message}`, exitCode };
}

export function describeFailure(err: unknown): Failure {
  const { code: raw } = (err ?? {}) as { code?: unknown };
  const code = typeof raw === 'string' ? raw : '';
  // Node raises bad command lines and bad URLs (a registry's token realm) as TypeErrors too.
  if (err instanceof ConfigError || code.startsWith('ERR_PARSE_ARGS')) return line((err as Error).message, 2);
  if (!(err instanceof Error) || (BUGS.some((type) => err instanceof type) && code !== 'ERR_INVALID_URL')) {
    const detail = err instanceof Error ? (err.stack ?? String(err)) : String(err);
    return { message: `tether: internal error (a bug in tether; please report it)\n${detail}`, exitCode: 70 };
  }
  if (err instanceof ClientError || err instanceof SignatureError || err instanceof AuthError)
    return line(err.message, 1);
  if (UNTRUSTED_CERTIFICATE.has(code))
    return line(
      `the registry's TLS certificate is not trusted (${err.message}); for a private CA or a ` +
        'self-signed certificate, name its PEM file with --ca-file (or in NODE_EXTRA_CA_CERTS)',
      1,
    );
  if (BAD_CERTIFICATE.has(code))
    return line(`the registry's TLS certificate was refused: ${err.message.replace(/[:\s]+$/, '')}`, 1);
  const reason = notTlsReason(err);
  if (reason)
    return line(
      `the registry did not answer in TLS (${reason}): ` + 'if it serves plain HTTP, add --plain-http',
      1,
    );
  if (NETWORK.has(code)) {
    // A host name with several addresses fails with an AggregateError, whose own message is empty.
    const detail = err instanceof AggregateError ? err.errors.map((e) => (e as Error).message) : [];
    return line(`cannot reach the registry: ${err.message || detail.join('; ') || code}`, 1);
  }
  return line(err.message, 1);
}
