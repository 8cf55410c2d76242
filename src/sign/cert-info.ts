/**
 * Reads the parts of an X.509 certificate that notation's rules depend on but `node:crypto`'s
 * X509Certificate does not expose: extension criticality, key-usage bits, basic-constraints path length,
 * the raw issuer/subject Names (compared byte for byte, as Go does) and the subject's attribute list.
 */
import { isUtf8 } from 'node:buffer';
import { X509Certificate } from 'node:crypto';
import {
  type DerNode,
  decodeBoolean,
  decodeDer,
  decodeDerAll,
  decodeInteger,
  decodeNamedBits,
  decodeOid,
  isContext,
  isUniversal,
} from './der.ts';
import { SignatureError } from './errors.ts';

export const OID = {
  // Name attributes Go's pkix.Name knows by short name.
  country: '2.5.4.6',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  commonName: '2.5.4.3',
  serialNumber: '2.5.4.5',
  locality: '2.5.4.7',
  stateOrProvince: '2.5.4.8',
  streetAddress: '2.5.4.9',
  postalCode: '2.5.4.17',
  // Extensions.
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  crlDistributionPoints: '2.5.29.31',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',
  ocsp: '1.3.6.1.5.5.7.48.1',
  // Extended key usages.
  ekuServerAuth: '1.3.6.1.5.5.7.3.1',
  ekuClientAuth: '1.3.6.1.5.5.7.3.2',
  ekuCodeSigning: '1.3.6.1.5.5.7.3.3',
  ekuEmailProtection: '1.3.6.1.5.5.7.3.4',
  ekuTimeStamping: '1.3.6.1.5.5.7.3.8',
  ekuOcspSigning: '1.3.6.1.5.5.7.3.9',
  // Signature algorithms.
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  rsassaPss: '1.2.840.113549.1.1.10',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  ed25519: '1.3.101.112',
} as const;

/** The short names Go's `pkix.Name.String()` prints; notation matches trusted identities on these. */
export const ATTRIBUTE_NAMES: Record<string, string> = {
  [OID.country]: 'C',
  [OID.organization]: 'O',
  [OID.organizationalUnit]: 'OU',
  [OID.commonName]: 'CN',
  [OID.serialNumber]: 'SERIALNUMBER',
  [OID.locality]: 'L',
  [OID.stateOrProvince]: 'ST',
  [OID.streetAddress]: 'STREET',
  [OID.postalCode]: 'POSTALCODE',
};

/** KeyUsage named-bit positions (RFC 5280 §4.2.1.3). */
export const KeyUsageBit = {
  digitalSignature: 0,
  contentCommitment: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
  encipherOnly: 7,
  decipherOnly: 8,
} as const;

/**
 * Signature algorithms Go's x509 will check. SHA-1 and MD5 are refused there (InsecureAlgorithmError), which
 * is how notation enforces "no SHA-1 in the chain".
 */
const ACCEPTED_SIGNATURE_ALGORITHMS = new Set<string>([
  OID.sha256WithRSAEncryption,
  OID.sha384WithRSAEncryption,
  OID.sha512WithRSAEncryption,
  OID.rsassaPss,
  OID.ecdsaWithSha256,
  OID.ecdsaWithSha384,
  OID.ecdsaWithSha512,
  OID.ed25519,
]);

export interface NameAttribute {
  oid: string;
  /** Go's short name (`C`, `ST`, ...) or the dotted OID for attributes Go has no name for. */
  type: string;
  value: string;
}

export interface Extension {
  critical: boolean;
  /** The extnValue OCTET STRING content (itself DER). */
  value: Buffer;
}

export interface CertificateInfo {
  version: number;
  signatureAlgorithm: string;
  rawIssuer: Buffer;
  rawSubject: Buffer;
  /** Subject RDNs in certificate order; each RDN is a set of attributes. */
  subject: NameAttribute[][];
  notBefore: Date;
  notAfter: Date;
  extensions: Map<string, Extension>;
  /** Set bits of the KeyUsage extension, when present. */
  keyUsage?: Set<number>;
  basicConstraints?: { ca: boolean; pathLen?: number };
  extKeyUsage?: string[];
  /** True when the certificate names an OCSP responder or a CRL distribution point. */
  hasRevocationEndpoints: boolean;
  signatureAlgorithmAccepted: boolean;
}

const cache = new WeakMap<X509Certificate, CertificateInfo>();

function fail(message: string): never {
  throw new SignatureError('INVALID_CERTIFICATE_CHAIN', message);
}

function parseTime(node: DerNode): Date {
  const s = node.content.toString('latin1');
  const utc = isUniversal(node, 'utcTime') ? s.match(/^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/) : null;
  if (utc) {
    // RFC 5280: two-digit years 50..99 are 19xx, 00..49 are 20xx.
    const yy = Number(utc[1]);
    return new Date(
      Date.UTC(yy < 50 ? 2000 + yy : 1900 + yy, +utc[2]! - 1, +utc[3]!, +utc[4]!, +utc[5]!, +utc[6]!),
    );
  }
  const gen = isUniversal(node, 'generalizedTime')
    ? s.match(/^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d+))?Z$/)
    : null;
  if (gen) {
    const ms = gen[7] ? Math.floor(Number(`0.${gen[7]}`) * 1000) : 0;
    return new Date(Date.UTC(+gen[1]!, +gen[2]! - 1, +gen[3]!, +gen[4]!, +gen[5]!, +gen[6]!, ms));
  }
  return fail('certificate validity time is malformed');
}

/** Go's x509 `isPrintable`: PrintableString's set, plus `*` and `&` that real certificates use. */
const GO_PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?*&]*$/;

/**
 * A Name attribute value exactly as Go's x509 parser (`parseASN1String`) reads it, which is how notation
 * reads every certificate: T61String as Latin-1, PrintableString (with `*` and `&`), UTF8String that is
 * valid UTF-8, BMPString without surrogates or noncharacters (a trailing NUL dropped), IA5String of ASCII,
 * NumericString; any other type or content makes Go refuse the whole certificate, so it throws here.
 */
function goNameString(node: DerNode): string {
  const bytes = node.content;
  const fail2 = (what: string): never =>
    fail(`certificate Name holds an invalid ${what}, which Go's x509 parser refuses`);
  if (node.cls !== 0 || node.constructed) return fail2('attribute value (not a universal string type)');
  switch (node.tagNumber) {
    case 0x14: // T61String
      return bytes.toString('latin1');
    case 0x13: // PrintableString
      if (!GO_PRINTABLE.test(bytes.toString('latin1'))) fail2('PrintableString');
      return bytes.toString('latin1');
    case 0x0c: // UTF8String
      if (!isUtf8(bytes)) fail2('UTF8String');
      return bytes.toString('utf8');
    case 0x1e: {
      // BMPString (UCS-2)
      if (bytes.length % 2 !== 0) fail2('BMPString');
      let units = bytes;
      if (units.length >= 2 && units[units.length - 1] === 0 && units[units.length - 2] === 0) {
        units = units.subarray(0, units.length - 2);
      }
      let out = '';
      for (let i = 0; i < units.length; i += 2) {
        const u = units.readUInt16BE(i);
        if (u === 0xfffe || u === 0xffff || (u >= 0xfdd0 && u <= 0xfdef) || (u >= 0xd800 && u <= 0xdfff)) {
          fail2('BMPString');
        }
        out += String.fromCharCode(u);
      }
      return out;
    }
    case 0x16: // IA5String
      if (!/^[\x00-\x7f]*$/.test(bytes.toString('latin1'))) fail2('IA5String');
      return bytes.toString('latin1');
    case 0x12: // NumericString
      if (!/^[0-9 ]*$/.test(bytes.toString('latin1'))) fail2('NumericString');
      return bytes.toString('latin1');
    default:
      return fail2(`attribute value (string type ${node.tagNumber})`);
  }
}

export function parseName(node: DerNode): NameAttribute[][] {
  if (!isUniversal(node, 'sequence')) fail('certificate Name is not a SEQUENCE');
  return node.children.map((rdn) => {
    if (!isUniversal(rdn, 'set') || rdn.children.length === 0) fail('certificate RDN is not a non-empty SET');
    return rdn.children.map((atv) => {
      if (!isUniversal(atv, 'sequence') || atv.children.length !== 2) fail('malformed name attribute');
      const oid = decodeOid(atv.children[0]!);
      const value = goNameString(atv.children[1]!);
      return { oid, type: ATTRIBUTE_NAMES[oid] ?? oid, value };
    });
  });
}

function parseExtensions(node: DerNode): Map<string, Extension> {
  const map = new Map<string, Extension>();
  if (!isUniversal(node, 'sequence')) fail('certificate extensions are not a SEQUENCE');
  for (const ext of node.children) {
    if (!isUniversal(ext, 'sequence') || ext.children.length < 2 || ext.children.length > 3) {
      fail('malformed certificate extension');
    }
    const id = decodeOid(ext.children[0]!);
    const critical = ext.children.length === 3 ? decodeBoolean(ext.children[1]!) : false;
    const valueNode = ext.children[ext.children.length - 1]!;
    if (!isUniversal(valueNode, 'octetString')) fail('certificate extension value is not an OCTET STRING');
    // Go's parser refuses duplicate extensions; so do we, or a second copy could hide the first.
    if (map.has(id)) fail(`certificate contains duplicate extension ${id}`);
    map.set(id, { critical, value: valueNode.content });
  }
  return map;
}

function parseBasicConstraints(value: Buffer): { ca: boolean; pathLen?: number } {
  const seq = decodeDer(value);
  if (!isUniversal(seq, 'sequence')) fail('malformed basicConstraints');
  let ca = false;
  let pathLen: number | undefined;
  for (const child of seq.children) {
    if (isUniversal(child, 'boolean')) ca = decodeBoolean(child);
    else if (isUniversal(child, 'integer')) {
      const n = decodeInteger(child);
      if (n < 0n || n > 1_000_000n) fail('basicConstraints pathLenConstraint out of range');
      pathLen = Number(n);
    } else fail('malformed basicConstraints');
  }
  return pathLen === undefined ? { ca } : { ca, pathLen };
}

function parseExtKeyUsage(value: Buffer): string[] {
  const seq = decodeDer(value);
  if (!isUniversal(seq, 'sequence')) fail('malformed extKeyUsage');
  return seq.children.map(decodeOid);
}

function hasOcsp(value: Buffer): boolean {
  const seq = decodeDer(value);
  return seq.children.some((ad) => ad.children.length === 2 && decodeOid(ad.children[0]!) === OID.ocsp);
}

/** Parses (once per certificate object) the fields the Notary Project rules need. */
export function certificateInfo(cert: X509Certificate): CertificateInfo {
  const cached = cache.get(cert);
  if (cached) return cached;
  let info: CertificateInfo;
  try {
    const root = decodeDer(cert.raw);
    const [tbs, sigAlg] = root.children;
    if (!tbs || !sigAlg || !isUniversal(tbs, 'sequence')) fail('malformed certificate');
    const fields = [...tbs.children];
    let version = 1;
    if (fields[0] && isContext(fields[0], 0)) {
      version = Number(decodeInteger(fields.shift()!.children[0]!)) + 1;
    }
    const [serial, signature, issuer, validity, subject] = fields;
    if (!serial || !signature || !issuer || !validity || !subject) fail('malformed TBSCertificate');
    // Go's x509 parser (and so notation) refuses a negative serial number since Go 1.23.
    if (!isUniversal(serial, 'integer')) fail('certificate serial number is not an INTEGER');
    if (decodeInteger(serial) < 0n) {
      fail("certificate has a negative serial number, which Go's x509 parser refuses");
    }
    const signatureAlgorithm = decodeOid(sigAlg.children[0]!);
    if (decodeOid(signature.children[0]!) !== signatureAlgorithm) {
      fail('TBSCertificate signature algorithm differs from the outer one');
    }
    // Go's x509 parser refuses a certificate whose issuer Name holds a string it cannot read; so do we.
    parseName(issuer);
    const extNode = fields.slice(6).find((f) => isContext(f, 3));
    const extensions = extNode ? parseExtensions(extNode.children[0]!) : new Map<string, Extension>();
    info = {
      version,
      signatureAlgorithm,
      rawIssuer: issuer.raw,
      rawSubject: subject.raw,
      subject: parseName(subject),
      notBefore: parseTime(validity.children[0]!),
      notAfter: parseTime(validity.children[1]!),
      extensions,
      hasRevocationEndpoints: false,
      signatureAlgorithmAccepted: ACCEPTED_SIGNATURE_ALGORITHMS.has(signatureAlgorithm),
    };
    const ku = extensions.get(OID.keyUsage);
    if (ku) info.keyUsage = decodeNamedBits(decodeDer(ku.value));
    const bc = extensions.get(OID.basicConstraints);
    if (bc) info.basicConstraints = parseBasicConstraints(bc.value);
    const eku = extensions.get(OID.extKeyUsage);
    if (eku) info.extKeyUsage = parseExtKeyUsage(eku.value);
    const aia = extensions.get(OID.authorityInfoAccess);
    info.hasRevocationEndpoints =
      extensions.has(OID.crlDistributionPoints) || (aia !== undefined && hasOcsp(aia.value));
  } catch (err) {
    if (err instanceof SignatureError) throw err;
    throw new SignatureError(
      'INVALID_CERTIFICATE_CHAIN',
      `malformed certificate: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  cache.set(cert, info);
  return info;
}

/** The subject as `C=US, ST=WA, O=Example, CN=signer`: the order the certificate uses, ready to paste into a policy. */
export function formatSubject(cert: X509Certificate): string {
  return certificateInfo(cert)
    .subject.map((rdn) => rdn.map((a) => `${a.type}=${escapeDnValue(a.value)}`).join('+'))
    .join(', ');
}

/** RFC 4514 §2.4 escaping so that the formatted subject parses back to the same values. */
export function escapeDnValue(value: string): string {
  let out = value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`);
  if (out.startsWith(' ') || out.startsWith('#')) out = `\\${out}`;
  if (out.endsWith(' ') && !out.endsWith('\\ ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/** Parses every certificate in PEM text (any number of CERTIFICATE blocks) or in concatenated DER. */
export function parseCertificates(data: Uint8Array | string): X509Certificate[] {
  const text = typeof data === 'string' ? data : Buffer.from(data).toString('latin1');
  const blocks = [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g)];
  const certs: X509Certificate[] = [];
  if (blocks.length > 0) {
    // Like Go's pem decoding in notation-core-go: other block types (keys) are skipped, not errors.
    for (const block of blocks) {
      if (block[1] !== 'CERTIFICATE') continue;
      certs.push(new X509Certificate(Buffer.from(block[2]!.replace(/\s+/g, ''), 'base64')));
    }
  } else if (typeof data !== 'string') {
    // DER, possibly several certificates back to back (Go's x509.ParseCertificates).
    for (const node of decodeDerAll(data)) certs.push(new X509Certificate(node.raw));
  }
  return certs;
}

export function toPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
