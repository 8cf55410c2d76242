import { execFileSync } from 'node:child_process';

/** Writes a one-day self-signed P-256 certificate and its key (PEM) with openssl, for TLS tests. */
export function selfSignedCert(
  paths: { cert: string; key: string },
  cn: string,
  subjectAltName: string,
): void {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${cn}`,
      '-addext',
      `subjectAltName=${subjectAltName}`,
      '-keyout',
      paths.key,
      '-out',
      paths.cert,
    ],
    { stdio: 'ignore' },
  );
}
