import { X509Certificate } from 'node:crypto';
import type { ConnectionOptions } from 'node:tls';
import { tls } from '../io/node-http.ts';
import { ClientError } from './errors.ts';

/** How a registry's TLS certificate is checked (the CLI's `--ca-file` and `--insecure`). */
export interface TlsSettings {
  /** PEM text of one or more CA certificates, trusted for this registry besides those Node trusts. */
  ca?: string | Buffer;
  /** Accept any certificate: its chain, names and dates go unchecked. Wins over `ca`. */
  insecure?: boolean;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The certificates in PEM text, each checked to parse. Throws a ClientError when there is none or one
 * is broken: a CA file that trusts nothing would otherwise fail later, as an "untrusted certificate".
 */
export function pemCertificates(pem: string | Buffer): string[] {
  const blocks = pem.toString('utf8').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new ClientError('no PEM certificate (-----BEGIN CERTIFICATE-----) in it');
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new ClientError(`certificate ${i + 1} does not parse: ${(err as Error).message}`);
    }
  });
  return blocks;
}

/**
 * The TLS options of every connection made for one registry: kept-alive requests, blob downloads
 * (directly or through a proxy's tunnel), its token realm and the places it redirects to or sends
 * uploads to. Connections to an `https://` proxy itself are checked as without settings (the
 * proxy's certificate is no registry's). Built once per setting: extra CAs become one secure context
 * holding Node's own CAs as well (a `ca` option replaces them, and given per connection it would
 * build a context of ~150 certificates for every connection, ~10 ms each). `src/client/transport.ts`
 * keeps its kept-alive agents per instance, so a connection is only reused under the same trust.
 */
export class TlsTrust {
  /** Node's CAs (its bundled store, `NODE_EXTRA_CA_CERTS`, the system's with `--use-system-ca`). */
  static readonly DEFAULT = new TlsTrust({});
  /** Spread into `tls.connect` and agent options. */
  readonly options: Readonly<ConnectionOptions>;
  readonly insecure: boolean;

  constructor(settings: TlsSettings) {
    this.insecure = settings.insecure === true;
    if (this.insecure) this.options = { rejectUnauthorized: false };
    else if (settings.ca !== undefined) {
      const ca = [...tls().getCACertificates('default'), ...pemCertificates(settings.ca)];
      this.options = { secureContext: tls().createSecureContext({ ca }) };
    } else this.options = {};
  }
}
