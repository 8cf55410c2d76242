/**
 * Test fixtures for verdict comparisons with notation: certificates made by openssl (any subject its
 * `-subj` can write), and an independent Notary Project JWS signer that writes the protected header and
 * the payload as the *exact JSON text* it is given (duplicate or odd-case keys included), so that a test
 * can present one signed envelope to both verifiers. Nothing here uses Tether's own signing code.
 */
import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RegistryClient } from '../../src/client/client.ts';
import { parseImageReference } from '../../src/client/reference.ts';
import { digestOf } from '../../src/oci/digest.ts';

export const NOTARY_ARTIFACT_TYPE = 'application/vnd.cncf.notary.signature';
export const NOTARY_PAYLOAD = 'application/vnd.cncf.notary.payload.v1+json';
const IMAGE_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** `YYYYMMDDHHMMSSZ` for openssl. */
function asn1Time(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

export interface CertFiles {
  /** Private key PEM. */
  keyPem: string;
  /** Certificate PEM. */
  certPem: string;
  /** The chain for x5c: this certificate, then the root (PEM). */
  chainPem: string;
}

/**
 * A P-256 root CA (`name`.key / `name`.pem in `dir`) valid from `notBefore` (default one day ago) for
 * 60 days, made with `openssl ca -selfsign` so its dates can be set.
 */
export function opensslRoot(
  dir: string,
  name: string,
  subject: string,
  notBefore = new Date(Date.now() - 86_400_000),
): CertFiles {
  keyAndRequest(
    dir,
    name,
    subject,
    'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign',
  );
  caIssue(dir, name, ['-selfsign', '-keyfile', `${name}.key`], notBefore, 60);
  return certFiles(dir, name);
}

/**
 * A P-256 key (`name`.key), a request for the openssl `-subj` given (`name`.csr) and the certificate's
 * `extensions` (`name`.ext, section `ext`), with the CA files `caIssue` needs.
 */
function keyAndRequest(dir: string, name: string, subject: string, extensions: string): void {
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
  writeFileSync(join(dir, `${name}.ext`), `[ext]\n${extensions}\n`);
  caConfig(dir);
}

/**
 * Issues `name`.pem from `name`.csr with `openssl ca` (the subject kept as written, the dates set),
 * valid from `notBefore` for `days`; `signer` names the issuing key (and certificate).
 */
function caIssue(dir: string, name: string, signer: string[], notBefore: Date, days: number): void {
  openssl(
    [
      'ca',
      '-config',
      'ca.cnf',
      '-batch',
      '-notext',
      '-preserveDN',
      ...signer,
      '-in',
      `${name}.csr`,
      '-startdate',
      asn1Time(notBefore),
      '-enddate',
      asn1Time(new Date(notBefore.getTime() + days * 86_400_000)),
      '-extfile',
      `${name}.ext`,
      '-extensions',
      'ext',
      '-out',
      `${name}.pem`,
    ],
    dir,
  );
}

/** `name`'s key and certificate as written, its chain followed by `issuer`'s certificate when given. */
function certFiles(dir: string, name: string, issuer?: string): CertFiles {
  const certPem = readFileSync(join(dir, `${name}.pem`), 'utf8');
  const issuerPem = issuer ? readFileSync(join(dir, `${issuer}.pem`), 'utf8') : '';
  return { keyPem: readFileSync(join(dir, `${name}.key`), 'utf8'), certPem, chainPem: certPem + issuerPem };
}

function caConfig(dir: string): void {
  const cnf = join(dir, 'ca.cnf');
  try {
    readFileSync(cnf);
    return;
  } catch {}
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'index.txt.attr'), 'unique_subject=no\n');
  writeFileSync(join(dir, 'serial'), `${createHash('sha256').update(dir).digest('hex').slice(0, 16)}\n`);
  // policy_anything-like: every attribute optional, kept as written (-preserveDN).
  writeFileSync(
    cnf,
    '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nserial=serial\nnew_certs_dir=.\ndefault_md=sha256\npolicy=p\nunique_subject=no\ncopy_extensions=none\n[p]\n',
  );
}

/**
 * A P-256 code-signing leaf under `root` with the openssl `-subj` given (e.g. `/C=US/ST=WA/O=Example /CN=x`:
 * the trailing space is kept), valid from `notBefore` (default one hour ago) for 30 days.
 */
export function opensslLeaf(
  dir: string,
  name: string,
  subject: string,
  root: string,
  notBefore = new Date(Date.now() - 3_600_000),
  serial?: number,
): CertFiles {
  keyAndRequest(dir, name, subject, 'keyUsage=critical,digitalSignature');
  if (serial === undefined)
    caIssue(dir, name, ['-cert', `${root}.pem`, '-keyfile', `${root}.key`], notBefore, 30);
  // A chosen serial (negative ones included) needs `openssl x509 -req`; its validity starts now.
  else
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        `${root}.pem`,
        '-CAkey',
        `${root}.key`,
        '-set_serial',
        String(serial),
        '-days',
        '30',
        '-extfile',
        `${name}.ext`,
        '-extensions',
        'ext',
        '-out',
        `${name}.pem`,
      ],
      dir,
    );
  return certFiles(dir, name, root);
}

function pemBlocks(pem: string): Buffer[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) =>
    Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'),
  );
}

/** `2026-11-22T14:30:31Z`. */
export function rfc3339(d: Date): string {
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** The protected header notation writes for a P-256 key, as an object a test can edit. */
export function standardProtected(signingTime = new Date()): Record<string, unknown> {
  return {
    alg: 'ES256',
    crit: ['io.cncf.notary.signingScheme'],
    cty: NOTARY_PAYLOAD,
    'io.cncf.notary.signingScheme': 'notary.x509',
    'io.cncf.notary.signingTime': rfc3339(signingTime),
  };
}

export interface Target {
  mediaType: string;
  digest: string;
  size: number;
}

/** `{"targetArtifact":{…}}` as JSON text. */
export function standardPayload(target: Target): string {
  return JSON.stringify({
    targetArtifact: { digest: target.digest, mediaType: target.mediaType, size: target.size },
  });
}

/**
 * A flattened JWS JSON envelope signed with the P-256 key of `signer`: `protectedJson` and `payloadJson`
 * are signed byte for byte as given. `envelopeJson` may rewrite the final envelope text.
 */
export function craftEnvelope(opts: {
  signer: CertFiles;
  protectedJson: string;
  payloadJson: string;
  envelopeJson?: (parts: { payload: string; protected: string; header: object; signature: string }) => string;
}): Buffer {
  const key = createPrivateKey(opts.signer.keyPem);
  if (createPublicKey(key).asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('craftEnvelope signs with P-256 keys only');
  }
  const protectedB64 = Buffer.from(opts.protectedJson).toString('base64url');
  const payloadB64 = Buffer.from(opts.payloadJson).toString('base64url');
  const signature = sign('sha256', Buffer.from(`${protectedB64}.${payloadB64}`), {
    key,
    dsaEncoding: 'ieee-p1363',
  }).toString('base64url');
  const header = {
    x5c: pemBlocks(opts.signer.chainPem).map((d) => d.toString('base64')),
    'io.cncf.notary.signingAgent': 'test-craft',
  };
  const parts = { payload: payloadB64, protected: protectedB64, header, signature };
  return Buffer.from(opts.envelopeJson ? opts.envelopeJson(parts) : JSON.stringify(parts));
}

const client = new RegistryClient({ credentials: async () => undefined });

/**
 * Pushes `envelope` as a Notary signature of `subject` in `host/repo` (notation v1.3's config-typed shape);
 * `manifestJson` may rewrite the manifest text. On a registry without the referrers API it is also added
 * to the subject's fallback tag. Resolves with the signature manifest's digest.
 */
export async function pushSignature(
  host: string,
  repo: string,
  subject: Target,
  envelope: Buffer,
  manifestJson?: (manifest: Record<string, unknown>) => string,
): Promise<string> {
  const ref = parseImageReference(`${host}/${repo}`);
  const blob = await client.pushBlob(ref, envelope);
  const config = await client.pushBlob(ref, Buffer.from('{}'));
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: IMAGE_MANIFEST,
    config: { mediaType: NOTARY_ARTIFACT_TYPE, digest: config.digest, size: config.size },
    layers: [{ mediaType: 'application/jose+json', digest: blob.digest, size: blob.size }],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: { 'org.opencontainers.image.created': rfc3339(new Date()) },
  };
  const bytes = Buffer.from(manifestJson ? manifestJson(manifest) : JSON.stringify(manifest));
  const digest = digestOf('sha256', bytes);
  // As any client pushes a signature: on a registry without the referrers API (Distribution 2.8) the
  // subject's fallback tag lists it too, described from the manifest as built (before any rewrite).
  await client.putManifestWithSubject(ref, digest, {
    bytes,
    json: manifest,
    descriptor: { mediaType: IMAGE_MANIFEST, digest, size: bytes.length },
  });
  return digest;
}
