/**
 * Test/dev certificate authority: a self-signed root and a code-signing leaf that satisfy notation's
 * certificate rules (see chain.ts), written with our own DER encoder so no openssl or npm dependency is
 * needed. Not a general-purpose CA: serials are random, there are no CRL/OCSP endpoints (notation then treats
 * the chain as non-revokable, which passes `strict` offline).
 */
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
} from 'node:crypto';
import { OID, toPem } from './cert-info.ts';
import {
  decodeBitString,
  decodeDer,
  derBitString,
  derBoolean,
  derExplicit,
  derImplicit,
  derInteger,
  derNamedBits,
  derNull,
  derOctetString,
  derOid,
  derPrintableString,
  derSequence,
  derSet,
  derTime,
  derUtf8String,
} from './der.ts';
import { SignatureError } from './errors.ts';

export type KeyType = 'ec-p256' | 'ec-p384' | 'ec-p521' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096';

export const KEY_TYPES: readonly KeyType[] = [
  'ec-p256',
  'ec-p384',
  'ec-p521',
  'rsa-2048',
  'rsa-3072',
  'rsa-4096',
];

export interface SubjectName {
  country?: string;
  state?: string;
  locality?: string;
  organization?: string;
  organizationalUnit?: string;
  commonName?: string;
}

export function generateKey(keyType: KeyType): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (keyType) {
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'ec-p384':
      return generateKeyPairSync('ec', { namedCurve: 'P-384' });
    case 'ec-p521':
      return generateKeyPairSync('ec', { namedCurve: 'P-521' });
    case 'rsa-2048':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'rsa-3072':
      return generateKeyPairSync('rsa', { modulusLength: 3072 });
    case 'rsa-4096':
      return generateKeyPairSync('rsa', { modulusLength: 4096 });
    default:
      throw new SignatureError('INVALID_KEY', `unsupported key type ${String(keyType)}`);
  }
}

/**
 * The certificate signature algorithm for an issuer key: the hash grows with the key as notation's own
 * `cert generate-test` does, and RSA uses PKCS#1 v1.5 (Go verifies both it and PSS; v1.5 is what every
 * X.509 tool accepts without parameters).
 */
function certSignatureAlgorithm(issuerKey: KeyObject): { algorithmIdentifier: Buffer; hash: string } {
  const details = issuerKey.asymmetricKeyDetails ?? {};
  if (issuerKey.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    const [oid, hash] =
      bits >= 4096
        ? [OID.sha512WithRSAEncryption, 'sha512']
        : bits >= 3072
          ? [OID.sha384WithRSAEncryption, 'sha384']
          : [OID.sha256WithRSAEncryption, 'sha256'];
    // RFC 4055: the parameters of sha*WithRSAEncryption are an explicit NULL.
    return { algorithmIdentifier: derSequence(derOid(oid), derNull()), hash };
  }
  if (issuerKey.asymmetricKeyType === 'ec') {
    const curve = details.namedCurve;
    const [oid, hash] =
      curve === 'secp521r1'
        ? [OID.ecdsaWithSha512, 'sha512']
        : curve === 'secp384r1'
          ? [OID.ecdsaWithSha384, 'sha384']
          : [OID.ecdsaWithSha256, 'sha256'];
    // RFC 5758: ecdsa-with-SHA* AlgorithmIdentifiers have absent parameters.
    return { algorithmIdentifier: derSequence(derOid(oid)), hash };
  }
  throw new SignatureError(
    'INVALID_KEY',
    `cannot issue certificates with a ${issuerKey.asymmetricKeyType} key`,
  );
}

/** Encodes a Name with one attribute per RDN in the conventional C, ST, L, O, OU, CN order. */
export function encodeName(name: SubjectName): Buffer {
  const rdns: Buffer[] = [];
  const add = (oid: string, value: string | undefined, printable = false) => {
    if (value === undefined || value === '') return;
    const encoded = printable ? derPrintableString(value) : derUtf8String(value);
    rdns.push(derSet(derSequence(derOid(oid), encoded)));
  };
  // RFC 5280 requires countryName to be a two-letter PrintableString.
  if (name.country !== undefined && !/^[A-Z]{2}$/.test(name.country)) {
    throw new SignatureError('INVALID_KEY', 'country must be a two-letter ISO 3166 code');
  }
  add(OID.country, name.country, true);
  add(OID.stateOrProvince, name.state);
  add(OID.locality, name.locality);
  add(OID.organization, name.organization);
  add(OID.organizationalUnit, name.organizationalUnit);
  add(OID.commonName, name.commonName);
  return derSequence(...rdns);
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  // DER omits a BOOLEAN equal to its DEFAULT (critical FALSE).
  return critical
    ? derSequence(derOid(oid), derBoolean(true), derOctetString(value))
    : derSequence(derOid(oid), derOctetString(value));
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits (an identifier, not a security use). */
function keyIdentifier(publicKey: KeyObject): Buffer {
  // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
  const spki = decodeDer(publicKey.export({ type: 'spki', format: 'der' }));
  const { bytes } = decodeBitString(spki.children[1]!);
  return createHash('sha1').update(bytes).digest();
}

export interface IssueCertificateOptions {
  subject: SubjectName;
  /** Issuer Name; defaults to the subject (self-signed). */
  issuer?: SubjectName;
  subjectPublicKey: KeyObject;
  /** Key that signs the certificate: the issuer's, or the subject's own private key when self-signed. */
  issuerPrivateKey: KeyObject;
  /** Subject key identifier of the issuer, for the authorityKeyIdentifier extension. */
  issuerPublicKey?: KeyObject;
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  /** Only for CAs: basicConstraints pathLenConstraint. */
  pathLen?: number;
  /** Key usage bit positions (KeyUsageBit); default digitalSignature for leaves, keyCertSign+cRLSign for CAs. */
  keyUsage?: number[];
  keyUsageCritical?: boolean;
  /** Extended key usage OIDs; default codeSigning for leaves, none for CAs. Empty array = omit. */
  extKeyUsage?: string[];
  /** Omit the basicConstraints extension entirely (useful for negative tests). */
  omitBasicConstraints?: boolean;
  /** Further extensions, `value` being the DER inside extnValue (e.g. CRL distribution points). */
  extraExtensions?: { oid: string; critical?: boolean; value: Buffer }[];
  serialNumber?: bigint;
}

/** Builds and signs one X.509 v3 certificate; returns its DER. */
export function issueCertificate(opts: IssueCertificateOptions): Buffer {
  const { algorithmIdentifier, hash } = certSignatureAlgorithm(opts.issuerPrivateKey);
  // RFC 5280 §4.1.2.2: positive, at most 20 octets; 16 random bytes with the top bit cleared, never zero.
  let serial = opts.serialNumber;
  if (serial === undefined) {
    const bytes = randomBytes(16);
    bytes[0] = (bytes[0]! & 0x7f) | 0x01;
    serial = BigInt(`0x${bytes.toString('hex')}`);
  }
  const extensions: Buffer[] = [];
  if (!opts.omitBasicConstraints) {
    const bc = opts.ca
      ? derSequence(derBoolean(true), ...(opts.pathLen !== undefined ? [derInteger(opts.pathLen)] : []))
      : derSequence();
    extensions.push(extension(OID.basicConstraints, true, bc));
  }
  const keyUsage =
    opts.keyUsage ?? (opts.ca ? [5 /* keyCertSign */, 6 /* cRLSign */] : [0 /* digitalSignature */]);
  if (keyUsage.length > 0) {
    extensions.push(extension(OID.keyUsage, opts.keyUsageCritical ?? true, derNamedBits(keyUsage)));
  }
  const eku = opts.extKeyUsage ?? (opts.ca ? [] : [OID.ekuCodeSigning]);
  if (eku.length > 0) extensions.push(extension(OID.extKeyUsage, false, derSequence(...eku.map(derOid))));
  extensions.push(
    extension(OID.subjectKeyIdentifier, false, derOctetString(keyIdentifier(opts.subjectPublicKey))),
  );
  if (opts.issuerPublicKey) {
    const aki = derSequence(derImplicit(0, keyIdentifier(opts.issuerPublicKey)));
    extensions.push(extension(OID.authorityKeyIdentifier, false, aki));
  }
  for (const e of opts.extraExtensions ?? []) extensions.push(extension(e.oid, e.critical ?? false, e.value));
  const spki = opts.subjectPublicKey.export({ type: 'spki', format: 'der' });
  const tbs = derSequence(
    derExplicit(0, derInteger(2)), // v3
    derInteger(serial),
    algorithmIdentifier,
    encodeName(opts.issuer ?? opts.subject),
    derSequence(derTime(truncateToSeconds(opts.notBefore)), derTime(truncateToSeconds(opts.notAfter))),
    encodeName(opts.subject),
    spki,
    derExplicit(3, derSequence(...extensions)),
  );
  // X.509 carries ECDSA signatures DER-encoded (Node's default), unlike JWS.
  const signature = sign(hash, tbs, opts.issuerPrivateKey);
  return derSequence(tbs, algorithmIdentifier, derBitString(signature));
}

function truncateToSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

export interface GenerateChainOptions {
  keyType: KeyType;
  /** Leaf CN; the root gets `<CN> Root CA`. Default `tether-test-signer`. */
  commonName?: string;
  /** Subject O of both certificates. Default `Tether Test`. */
  organization?: string;
  /** Subject C (two letters). Default `US`. */
  country?: string;
  /** Subject ST. Default `WA`. */
  state?: string;
  /** Validity in days from `notBefore`. Default 365. */
  validDays?: number;
  /** Start of validity. Default: now minus 5 minutes, to tolerate clock skew between signer and verifier. */
  notBefore?: Date;
}

export interface GeneratedChain {
  rootCertificate: string;
  leafCertificate: string;
  /** PKCS#8 PEM. */
  leafPrivateKey: string;
  /** Leaf then root, PEM concatenated: the order notation's `signingkeys.json` certPath wants. */
  chain: string;
  /** The root's PKCS#8 PEM, for issuing further certificates under the same root. */
  rootPrivateKey: string;
}

/**
 * Generates a root CA and a code-signing leaf that notation accepts. Both use `keyType`. The leaf subject has
 * C, ST, O and CN because notation's trusted-identity matching requires C, ST and O.
 */
export function generateCertificateChain(options: GenerateChainOptions): GeneratedChain {
  const validDays = options.validDays ?? 365;
  if (!(validDays > 0)) throw new SignatureError('INVALID_KEY', 'validDays must be positive');
  const notBefore = options.notBefore ?? new Date(Date.now() - 5 * 60_000);
  const notAfter = new Date(notBefore.getTime() + validDays * 86_400_000);
  const common: SubjectName = {
    country: options.country ?? 'US',
    state: options.state ?? 'WA',
    organization: options.organization ?? 'Tether Test',
  };
  const cn = options.commonName ?? 'tether-test-signer';
  const rootName: SubjectName = { ...common, commonName: `${cn} Root CA` };
  const leafName: SubjectName = { ...common, commonName: cn };
  const root = generateKey(options.keyType);
  const leaf = generateKey(options.keyType);
  const rootDer = issueCertificate({
    subject: rootName,
    subjectPublicKey: root.publicKey,
    issuerPrivateKey: root.privateKey,
    notBefore,
    notAfter,
    ca: true,
    keyUsage: [5 /* keyCertSign */, 6 /* cRLSign */],
  });
  const leafDer = issueCertificate({
    subject: leafName,
    issuer: rootName,
    subjectPublicKey: leaf.publicKey,
    issuerPrivateKey: root.privateKey,
    issuerPublicKey: root.publicKey,
    notBefore,
    notAfter,
    ca: false,
  });
  const rootCertificate = toPem(rootDer);
  const leafCertificate = toPem(leafDer);
  return {
    rootCertificate,
    leafCertificate,
    leafPrivateKey: leaf.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    chain: leafCertificate + rootCertificate,
    rootPrivateKey: root.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** Loads a PEM/DER private key (PKCS#8, PKCS#1 or SEC1, like Go's tls.LoadX509KeyPair). */
export function loadPrivateKey(pem: string | Buffer): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new SignatureError('INVALID_KEY', `cannot load private key: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
