import { DownloadError } from './download.ts';
import type { HttpResponse } from './response.ts';

/**
 * How a port shows that it speaks the other protocol than the one it was asked in. The client uses it
 * to settle a loopback registry's scheme (`RegistryHttp`), the CLI to say what to do about it.
 */

/** What OpenSSL says when an `https://` request gets an answer that is not TLS (a plain-HTTP port). */
const NOT_TLS = /wrong version number|packet length too long|http request/i;

/** OpenSSL's words when an HTTPS request was answered with bytes that are not TLS; undefined otherwise. */
export function notTlsReason(err: unknown): string | undefined {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || typeof message !== 'string') return undefined;
  if (code !== 'EPROTO' && !code.startsWith('ERR_SSL_')) return undefined;
  return message.match(NOT_TLS)?.[0];
}

/**
 * Whether a plain-HTTP request's failure is what a TLS port does with it: Node's TLS servers (Tether's
 * included) close the connection without a word ("socket hang up"), OpenSSL-based ones may send a TLS
 * alert, which is no HTTP response at all. A plain server that drops a connection fails the same way,
 * so this says only "may be TLS": asking over HTTPS tells.
 */
export function plainRequestMetTls(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return false;
  if (code === 'ECONNRESET' || code === 'EPIPE') return true;
  // node:http's parser (`HPE_INVALID_CONSTANT`: "Expected HTTP/"), or the download reader's.
  return code.startsWith('HPE_') || (err instanceof DownloadError && code === 'EPROTO');
}

/** What Go's net/http, nginx and Apache answer a plain-HTTP request on their HTTPS port with. */
const PLAIN_REQUEST_ON_TLS_PORT =
  /HTTP request to an HTTPS server|plain HTTP request was sent to HTTPS port|plain HTTP to an SSL-enabled server port/i;

/** Their answers are a few hundred bytes; a registry's own 400 is JSON and is not read here. */
const MAX_ANSWER_BYTES = 16 * 1024;

/**
 * Whether a response to a plain-HTTP request may be a TLS server's 400 saying it wants HTTPS: one whose
 * body says so, or an empty one (the answer to a HEAD, whose text node:http does not read; a registry's
 * own 400 is JSON, or at least typed). Reads the body of a non-JSON 400 only, and `bytes` keeps it for
 * the caller's error message.
 */
export async function answeredAsTlsPort(res: HttpResponse): Promise<boolean> {
  if (res.status !== 400 || /json/i.test(res.headers.get('content-type') ?? '')) return false;
  const body = await res.bytes(MAX_ANSWER_BYTES).catch(() => undefined);
  if (body === undefined) return false;
  return body.length === 0 || PLAIN_REQUEST_ON_TLS_PORT.test(body.toString('latin1'));
}
