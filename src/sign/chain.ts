/**
 * The Notary Project certificate rules, as notation-core-go v1.3 enforces them at sign and verify time
 * (x509/codesigning_cert_validations.go, x509/helper.go, internal/algorithm). Error texts follow notation's.
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import { type CertificateInfo, certificateInfo, formatSubject, KeyUsageBit, OID } from './cert-info.ts';
import { SignatureError } from './errors.ts';

export type JwsAlgorithm = 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512';
export type HashName = 'sha256' | 'sha384' | 'sha512';

export interface KeySpec {
  type: 'rsa' | 'ec';
  /** RSA modulus bits or EC curve bits. */
  size: 2048 | 3072 | 4096 | 256 | 384 | 521;
  alg: JwsAlgorithm;
  hash: HashName;
}

/** notation's only allowed keys and the JWS algorithm each one implies (spec §3.3). */
const RSA_SPECS: Record<number, KeySpec> = {
  2048: { type: 'rsa', size: 2048, alg: 'PS256', hash: 'sha256' },
  3072: { type: 'rsa', size: 3072, alg: 'PS384', hash: 'sha384' },
  4096: { type: 'rsa', size: 4096, alg: 'PS512', hash: 'sha512' },
};
const EC_SPECS: Record<string, KeySpec> = {
  prime256v1: { type: 'ec', size: 256, alg: 'ES256', hash: 'sha256' },
  secp384r1: { type: 'ec', size: 384, alg: 'ES384', hash: 'sha384' },
  secp521r1: { type: 'ec', size: 521, alg: 'ES512', hash: 'sha512' },
};

export const JWS_ALGORITHMS: Record<JwsAlgorithm, { type: 'rsa' | 'ec'; hash: HashName; size: number }> = {
  PS256: { type: 'rsa', hash: 'sha256', size: 2048 },
  PS384: { type: 'rsa', hash: 'sha384', size: 3072 },
  PS512: { type: 'rsa', hash: 'sha512', size: 4096 },
  ES256: { type: 'ec', hash: 'sha256', size: 256 },
  ES384: { type: 'ec', hash: 'sha384', size: 384 },
  ES512: { type: 'ec', hash: 'sha512', size: 521 },
};

/** The key spec of a public or private key; anything outside notation's table is refused. */
export function keySpecOf(key: KeyObject): KeySpec {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') {
    const spec = RSA_SPECS[details.modulusLength ?? 0];
    if (!spec)
      throw new SignatureError('INVALID_KEY', `rsa key size ${details.modulusLength} bits is not supported`);
    return spec;
  }
  if (key.asymmetricKeyType === 'ec') {
    const spec = EC_SPECS[details.namedCurve ?? ''];
    if (!spec) throw new SignatureError('INVALID_KEY', `ecdsa curve ${details.namedCurve} is not supported`);
    return spec;
  }
  // Go's x509 cannot even load RSASSA-PSS-only SPKI keys; Ed25519 is not in notation's table.
  throw new SignatureError('INVALID_KEY', `unsupported public key type ${key.asymmetricKeyType}`);
}

function chainError(message: string): SignatureError {
  return new SignatureError('INVALID_CERTIFICATE_CHAIN', message);
}

/** Go's `Certificate.CheckSignature`: the signature over the TBS verifies with `key` and the algorithm is not SHA-1/MD5. */
function checkSignature(cert: X509Certificate, info: CertificateInfo, key: KeyObject): string | undefined {
  if (!info.signatureAlgorithmAccepted) {
    return `x509: cannot verify signature: insecure or unsupported algorithm ${info.signatureAlgorithm}`;
  }
  try {
    return cert.verify(key) ? undefined : 'x509: signature does not verify';
  } catch (err) {
    return `x509: cannot verify signature: ${(err as Error).message}`;
  }
}

/**
 * Go's `isIssuedBy`: `CheckSignatureFrom(issuer)` (which also demands that a v3 issuer be a CA and, when it
 * has key usage, that keyCertSign be set) and byte-equal issuer/subject Names.
 */
function issuedBy(subject: X509Certificate, issuer: X509Certificate): string | undefined {
  const s = certificateInfo(subject);
  const p = certificateInfo(issuer);
  if ((p.version === 3 && !p.basicConstraints) || (p.basicConstraints && !p.basicConstraints.ca)) {
    return 'x509: invalid signature: parent certificate cannot sign this kind of certificate';
  }
  if (p.keyUsage && p.keyUsage.size > 0 && !p.keyUsage.has(KeyUsageBit.keyCertSign)) {
    return 'x509: invalid signature: parent certificate cannot sign this kind of certificate';
  }
  const sigErr = checkSignature(subject, s, issuer.publicKey);
  if (sigErr) return sigErr;
  if (!p.rawSubject.equals(s.rawIssuer)) return 'issuer and subject names differ';
  return undefined;
}

function validateSigningTime(cert: X509Certificate, signingTime: Date | undefined): void {
  if (!signingTime) return;
  const info = certificateInfo(cert);
  if (signingTime < info.notBefore || signingTime > info.notAfter) {
    throw chainError(
      `certificate with subject "${formatSubject(cert)}" was invalid at signing time of ${signingTime.toISOString()}. ` +
        `Certificate is valid from [${info.notBefore.toISOString()}] to [${info.notAfter.toISOString()}]`,
    );
  }
}

function validateKeyUsagePresent(cert: X509Certificate): void {
  const ext = certificateInfo(cert).extensions.get(OID.keyUsage);
  if (!ext)
    throw chainError(
      `certificate with subject "${formatSubject(cert)}": key usage extension must be present`,
    );
  if (!ext.critical) {
    throw chainError(
      `certificate with subject "${formatSubject(cert)}": key usage extension must be marked critical`,
    );
  }
}

function validateCaCertificate(cert: X509Certificate, expectedPathLen: number): void {
  const info = certificateInfo(cert);
  const subject = formatSubject(cert);
  // ⚠ spec: must be critical; notation only requires presence with cA=true.
  if (!info.basicConstraints?.ca) {
    throw chainError(
      `certificate with subject "${subject}": ca field in basic constraints must be present, critical, and set to true`,
    );
  }
  const pathLen = info.basicConstraints.pathLen;
  if (pathLen !== undefined && pathLen < expectedPathLen) {
    throw chainError(
      `certificate with subject "${subject}": expected path length of ${expectedPathLen} but certificate has path length ${pathLen} instead`,
    );
  }
  validateKeyUsagePresent(cert);
  if (!info.keyUsage?.has(KeyUsageBit.keyCertSign)) {
    throw chainError(
      `certificate with subject "${subject}": key usage must have the bit positions for key cert sign set`,
    );
  }
}

const FORBIDDEN_LEAF_KEY_USAGES: [number, string][] = [
  [KeyUsageBit.keyEncipherment, 'KeyEncipherment'],
  [KeyUsageBit.dataEncipherment, 'DataEncipherment'],
  [KeyUsageBit.keyAgreement, 'KeyAgreement'],
  [KeyUsageBit.keyCertSign, 'CertSign'],
  [KeyUsageBit.cRLSign, 'CRLSign'],
  [KeyUsageBit.encipherOnly, 'EncipherOnly'],
  [KeyUsageBit.decipherOnly, 'DecipherOnly'],
];

/** EKUs that make a certificate unfit for code signing. ⚠ anyExtendedKeyUsage is allowed by the code. */
const FORBIDDEN_LEAF_EKUS: Record<string, string> = {
  [OID.ekuServerAuth]: 'ServerAuth',
  [OID.ekuClientAuth]: 'ClientAuth',
  [OID.ekuEmailProtection]: 'EmailProtection',
  [OID.ekuTimeStamping]: 'Timestamping',
  [OID.ekuOcspSigning]: 'OCSPSigning',
};

function validateLeafCertificate(cert: X509Certificate): void {
  const info = certificateInfo(cert);
  const subject = formatSubject(cert);
  if (info.basicConstraints?.ca) {
    throw chainError(
      `certificate with subject "${subject}": if the basic constraints extension is present, the ca field must be set to false`,
    );
  }
  validateKeyUsagePresent(cert);
  if (!info.keyUsage?.has(KeyUsageBit.digitalSignature)) {
    throw chainError(
      `the certificate with subject "${subject}" is invalid. The key usage must have the bit positions for "Digital Signature" set`,
    );
  }
  const bad = FORBIDDEN_LEAF_KEY_USAGES.filter(([bit]) => info.keyUsage!.has(bit)).map(([, n]) => `"${n}"`);
  if (bad.length > 0) {
    throw chainError(
      `the certificate with subject "${subject}" is invalid. The key usage must be "Digital Signature" only, but found ${bad.join(', ')}`,
    );
  }
  for (const eku of info.extKeyUsage ?? []) {
    const name = FORBIDDEN_LEAF_EKUS[eku];
    if (name)
      throw chainError(
        `certificate with subject "${subject}": extended key usage must not contain ${name} eku`,
      );
  }
  try {
    keySpecOf(cert.publicKey);
  } catch (err) {
    throw chainError(`certificate with subject "${subject}": ${(err as Error).message}`);
  }
}

/**
 * notation-core-go `ValidateCodeSigningCertChain`: leaf → intermediates → self-signed root, each issued by the
 * next, no self-signed leaf/intermediate, CA and leaf profile rules, every certificate valid at `signingTime`.
 * A single certificate must be self-signed and satisfy the leaf rules.
 */
export function validateCodeSigningChain(chain: X509Certificate[], signingTime?: Date): void {
  if (chain.length < 1) throw chainError('certificate chain must contain at least one certificate');
  if (chain.length === 1) {
    const cert = chain[0]!;
    const info = certificateInfo(cert);
    const sigErr = checkSignature(cert, info, cert.publicKey);
    if (sigErr)
      throw chainError(
        `invalid self-signed certificate. subject: "${formatSubject(cert)}". Error: ${sigErr}`,
      );
    if (!info.rawSubject.equals(info.rawIssuer)) {
      throw chainError(
        `invalid self-signed certificate. subject: "${formatSubject(cert)}". Error: issuer and subject are not the same`,
      );
    }
    validateSigningTime(cert, signingTime);
    validateLeafCertificate(cert);
    return;
  }
  chain.forEach((cert, i) => {
    validateSigningTime(cert, signingTime);
    const subject = formatSubject(cert);
    if (i === chain.length - 1) {
      const err = issuedBy(cert, cert);
      if (err) {
        throw chainError(
          `root certificate with subject "${subject}" is invalid or not self-signed. Certificate chain must end with a valid self-signed root certificate. Error: ${err}`,
        );
      }
    } else {
      if (issuedBy(cert, cert) === undefined) {
        throw chainError(
          i === 0
            ? `leaf certificate with subject "${subject}" is self-signed. Certificate chain must not contain self-signed leaf certificate`
            : `intermediate certificate with subject "${subject}" is self-signed. Certificate chain must not contain self-signed intermediate certificate`,
        );
      }
      const parent = chain[i + 1]!;
      const err = issuedBy(cert, parent);
      if (err) {
        throw chainError(
          `invalid certificates or certificate with subject "${subject}" is not issued by "${formatSubject(parent)}". Error: ${err}`,
        );
      }
    }
    if (i === 0) validateLeafCertificate(cert);
    else validateCaCertificate(cert, i - 1);
  });
}

/** True when `now` is inside every certificate's validity period; otherwise the reason, in notation's words. */
export function chainValidAt(chain: X509Certificate[], now: Date): string | undefined {
  for (const cert of chain) {
    const info = certificateInfo(cert);
    if (now < info.notBefore) {
      return `certificate "${formatSubject(cert)}" is not valid yet, it will be valid from ${info.notBefore.toISOString()}`;
    }
    if (now > info.notAfter) {
      return `certificate "${formatSubject(cert)}" is not valid anymore, it was expired at ${info.notAfter.toISOString()}`;
    }
  }
  return undefined;
}
