import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { certificateInfo, formatSubject, OID, parseCertificates, toPem } from '../../src/sign/cert-info.ts';
import {
  generateCertificateChain,
  generateKey,
  type IssueCertificateOptions,
  issueCertificate,
  KEY_TYPES,
  type SubjectName,
} from '../../src/sign/certs.ts';
import { keySpecOf, validateCodeSigningChain } from '../../src/sign/chain.ts';
import {
  decodeDer,
  decodeInteger,
  decodeNamedBits,
  decodeOid,
  derBoolean,
  derInteger,
  derNamedBits,
  derOid,
  derSet,
  derTime,
  derUtf8String,
} from '../../src/sign/der.ts';
import type { SignatureError } from '../../src/sign/errors.ts';

const hex = (b: Buffer) => b.toString('hex');

describe('DER encoding', () => {
  test('integers are minimal two-complement', () => {
    assert.equal(hex(derInteger(0)), '020100');
    assert.equal(hex(derInteger(127)), '02017f');
    assert.equal(hex(derInteger(128)), '02020080');
    assert.equal(hex(derInteger(256)), '02020100');
    assert.equal(hex(derInteger(-1)), '0201ff');
    assert.equal(hex(derInteger(-128)), '020180');
    assert.equal(hex(derInteger(-129)), '0202ff7f');
    assert.equal(hex(derInteger(Buffer.from([0, 0, 0x80]))), '02020080');
    for (const n of [0n, 1n, -1n, 255n, -256n, 65535n, 2n ** 64n, -(2n ** 70n) + 3n]) {
      assert.equal(decodeInteger(decodeDer(derInteger(n))), n);
    }
  });
  test('OIDs, booleans, strings, long lengths', () => {
    assert.equal(hex(derOid('1.2.840.113549.1.1.11')), '06092a864886f70d01010b');
    assert.equal(hex(derOid('2.5.29.15')), '0603551d0f');
    assert.equal(decodeOid(decodeDer(derOid('1.3.6.1.5.5.7.3.3'))), '1.3.6.1.5.5.7.3.3');
    assert.equal(decodeOid(decodeDer(derOid('2.999.1'))), '2.999.1');
    assert.equal(hex(derBoolean(true)), '0101ff');
    assert.equal(hex(derUtf8String('é')), '0c02c3a9');
    const long = derUtf8String('x'.repeat(300));
    assert.equal(hex(long.subarray(0, 4)), '0c82012c');
    assert.equal(decodeDer(long).content.length, 300);
  });
  test('named bit strings drop trailing zero bits (keyUsage)', () => {
    assert.equal(hex(derNamedBits([0])), '03020780'); // digitalSignature
    assert.equal(hex(derNamedBits([5, 6])), '03020106'); // keyCertSign, cRLSign
    assert.equal(hex(derNamedBits([0, 8])), '0303078080'); // digitalSignature, decipherOnly
    assert.deepEqual([...decodeNamedBits(decodeDer(derNamedBits([0, 2, 8])))], [0, 2, 8]);
  });
  test('SET OF sorts by encoding; times switch to GeneralizedTime in 2050', () => {
    assert.equal(hex(derSet(derInteger(2), derInteger(1))), '3106020101020102');
    assert.equal(derTime(new Date('2049-12-31T23:59:59Z')).toString('latin1', 2), '491231235959Z');
    assert.equal(derTime(new Date('2050-01-01T00:00:00.900Z')).toString('latin1', 2), '20500101000000Z');
  });
  test('decoder rejects indefinite lengths, truncation and trailing bytes', () => {
    assert.throws(() => decodeDer(Buffer.from('3080', 'hex')), /indefinite/);
    assert.throws(() => decodeDer(Buffer.from('300302', 'hex')), /past the end|truncated/);
    assert.throws(() => decodeDer(Buffer.from('02010100', 'hex')), /trailing/);
  });
});

const tmp = mkdtempSync(join(tmpdir(), 'tether-sign-certs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('generateCertificateChain', () => {
  for (const keyType of KEY_TYPES) {
    test(`${keyType}: node, openssl and notation's chain rules accept it`, () => {
      const chain = generateCertificateChain({
        keyType,
        commonName: `signer-${keyType}`,
        organization: 'Acme',
      });
      const leaf = new X509Certificate(chain.leafCertificate);
      const root = new X509Certificate(chain.rootCertificate);
      assert.ok(root.ca && !leaf.ca);
      assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey) && root.verify(root.publicKey));
      assert.ok(leaf.checkPrivateKey(createPrivateKey(chain.leafPrivateKey)));
      assert.equal(formatSubject(leaf), `C=US, ST=WA, O=Acme, CN=signer-${keyType}`);
      assert.equal(keySpecOf(leaf.publicKey).alg, expectedAlg(keyType));
      assert.deepEqual(
        parseCertificates(chain.chain).map((c) => c.fingerprint256),
        [leaf.fingerprint256, root.fingerprint256],
      );
      validateCodeSigningChain([leaf, root], new Date());

      const info = certificateInfo(leaf);
      assert.deepEqual([...info.keyUsage!], [0]);
      assert.equal(info.extensions.get(OID.keyUsage)?.critical, true);
      assert.deepEqual(info.extKeyUsage, [OID.ekuCodeSigning]);
      assert.deepEqual(info.basicConstraints, { ca: false });
      assert.deepEqual(certificateInfo(root).basicConstraints, { ca: true });

      const rootFile = join(tmp, `${keyType}-root.pem`);
      const leafFile = join(tmp, `${keyType}-leaf.pem`);
      writeFileSync(rootFile, chain.rootCertificate);
      writeFileSync(leafFile, chain.leafCertificate);
      assert.match(openssl(['verify', '-x509_strict', '-CAfile', rootFile, leafFile]), /: OK/);
      const text = openssl(['x509', '-in', leafFile, '-noout', '-text']);
      assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature\n/);
      assert.match(text, /Extended Key Usage:\s+Code Signing/);
      assert.match(text, /CA:FALSE/);
      assert.match(
        openssl(['x509', '-in', rootFile, '-noout', '-text']),
        /Basic Constraints: critical\s+CA:TRUE/,
      );
    });
  }

  test('openssl rejects a leaf under a different root (the check can fail)', () => {
    const a = generateCertificateChain({ keyType: 'ec-p256' });
    const b = generateCertificateChain({ keyType: 'ec-p256' });
    const rootFile = join(tmp, 'other-root.pem');
    const leafFile = join(tmp, 'other-leaf.pem');
    writeFileSync(rootFile, b.rootCertificate);
    writeFileSync(leafFile, a.leafCertificate);
    // openssl ran and refused for this reason (exit 2), not because it is missing (ENOENT) or misused.
    assert.throws(
      () => openssl(['verify', '-CAfile', rootFile, leafFile]),
      (err: Error & { status?: number; stderr?: string }) => {
        assert.equal(err.status, 2, String(err));
        assert.match(err.stderr ?? '', /error 20 at 0 depth lookup: unable to get local issuer certificate/);
        return true;
      },
    );
  });

  test('validity follows notBefore/validDays', () => {
    const notBefore = new Date('2030-01-01T00:00:00Z');
    const chain = generateCertificateChain({ keyType: 'ec-p256', notBefore, validDays: 2 });
    const info = certificateInfo(new X509Certificate(chain.leafCertificate));
    assert.equal(info.notBefore.toISOString(), '2030-01-01T00:00:00.000Z');
    assert.equal(info.notAfter.toISOString(), '2030-01-03T00:00:00.000Z');
  });
});

function expectedAlg(keyType: string): string {
  return {
    'ec-p256': 'ES256',
    'ec-p384': 'ES384',
    'ec-p521': 'ES512',
    'rsa-2048': 'PS256',
    'rsa-3072': 'PS384',
    'rsa-4096': 'PS512',
  }[keyType]!;
}

describe("notation's certificate chain rules", () => {
  const now = new Date();
  const notBefore = new Date(now.getTime() - 3600_000);
  const notAfter = new Date(now.getTime() + 86_400_000);
  const rootKey = generateKey('ec-p256');
  const leafKey = generateKey('ec-p256');
  const rootName: SubjectName = { country: 'US', state: 'WA', organization: 'T', commonName: 'root' };
  const leafName: SubjectName = { country: 'US', state: 'WA', organization: 'T', commonName: 'leaf' };
  const root = new X509Certificate(
    issueCertificate({
      subject: rootName,
      subjectPublicKey: rootKey.publicKey,
      issuerPrivateKey: rootKey.privateKey,
      notBefore,
      notAfter,
      ca: true,
    }),
  );
  const leaf = (over: Partial<IssueCertificateOptions> = {}) =>
    new X509Certificate(
      issueCertificate({
        subject: leafName,
        issuer: rootName,
        subjectPublicKey: leafKey.publicKey,
        issuerPrivateKey: rootKey.privateKey,
        notBefore,
        notAfter,
        ca: false,
        ...over,
      }),
    );
  const rejects = (chain: X509Certificate[], pattern: RegExp, at: Date = now) =>
    assert.throws(
      () => validateCodeSigningChain(chain, at),
      (e: SignatureError) => e.code === 'INVALID_CERTIFICATE_CHAIN' && pattern.test(e.message),
    );

  test('a well-formed chain passes', () => validateCodeSigningChain([leaf(), root], now));
  test('leaf key usage must be present, critical, digitalSignature only', () => {
    rejects([leaf({ keyUsage: [] }), root], /key usage extension must be present/);
    rejects([leaf({ keyUsageCritical: false }), root], /must be marked critical/);
    rejects([leaf({ keyUsage: [2] }), root], /Digital Signature" set/);
    rejects([leaf({ keyUsage: [0, 2] }), root], /"Digital Signature" only, but found "KeyEncipherment"/);
  });
  test('leaf must not be a CA nor carry TLS/timestamping EKUs', () => {
    rejects([leaf({ ca: true, keyUsage: [0] }), root], /ca field must be set to false/);
    rejects([leaf({ extKeyUsage: [OID.ekuServerAuth] }), root], /must not contain ServerAuth eku/);
    rejects([leaf({ extKeyUsage: [OID.ekuTimeStamping] }), root], /Timestamping/);
    // ⚠ anyExtendedKeyUsage is accepted by notation's code.
    validateCodeSigningChain([leaf({ extKeyUsage: ['2.5.29.37.0'] }), root], now);
  });
  test("a negative serial number makes the certificate unusable, as Go's parser refuses it (notation)", () => {
    const { publicKey, privateKey } = generateKey('ec-p256');
    const cert = (serialNumber: bigint) =>
      new X509Certificate(
        issueCertificate({
          subject: { country: 'US', state: 'WA', organization: 'Acme', commonName: 'neg' },
          subjectPublicKey: publicKey,
          issuerPrivateKey: privateKey,
          notBefore: new Date(Date.now() - 1000),
          notAfter: new Date(Date.now() + 3600_000),
          ca: false,
          serialNumber,
        }),
      );
    assert.throws(() => certificateInfo(cert(-5n)), /negative serial number/);
    assert.equal(certificateInfo(cert(0n)).version, 3);
  });
  test('chain shape: ends in a self-signed root, each issued by the next', () => {
    rejects([leaf()], /invalid self-signed certificate/);
    rejects([root, leaf()], /self-signed/);
    const otherRoot = generateCertificateChain({ keyType: 'ec-p256' }).rootCertificate;
    rejects([leaf(), new X509Certificate(otherRoot)], /is not issued by/);
  });
  test('CA must have basicConstraints cA=true and keyCertSign', () => {
    const badRoot = (over: Partial<IssueCertificateOptions>) =>
      new X509Certificate(
        issueCertificate({
          subject: rootName,
          subjectPublicKey: rootKey.publicKey,
          issuerPrivateKey: rootKey.privateKey,
          notBefore,
          notAfter,
          ca: true,
          ...over,
        }),
      );
    rejects([leaf(), badRoot({ keyUsage: [6] })], /cannot sign|key cert sign/);
    rejects(
      [leaf(), badRoot({ omitBasicConstraints: true })],
      /not self-signed|cannot sign|basic constraints/,
    );
  });
  test('pathLenConstraint is respected', () => {
    const interKey = generateKey('ec-p256');
    const interName: SubjectName = { ...rootName, commonName: 'intermediate' };
    const mkRoot = (pathLen: number) =>
      new X509Certificate(
        issueCertificate({
          subject: rootName,
          subjectPublicKey: rootKey.publicKey,
          issuerPrivateKey: rootKey.privateKey,
          notBefore,
          notAfter,
          ca: true,
          pathLen,
        }),
      );
    const inter = new X509Certificate(
      issueCertificate({
        subject: interName,
        issuer: rootName,
        subjectPublicKey: interKey.publicKey,
        issuerPrivateKey: rootKey.privateKey,
        notBefore,
        notAfter,
        ca: true,
      }),
    );
    const leafUnderInter = leaf({ issuer: interName, issuerPrivateKey: interKey.privateKey });
    validateCodeSigningChain([leafUnderInter, inter, mkRoot(1)], now);
    rejects([leafUnderInter, inter, mkRoot(0)], /expected path length of 1/);
  });
  test('every certificate must be valid at the signing time', () => {
    rejects([leaf(), root], /invalid at signing time/, new Date(notAfter.getTime() + 1000));
  });
  test('unsupported leaf keys are refused (RSA 1024, Ed25519)', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    rejects([leaf({ subjectPublicKey: small.publicKey }), root], /rsa key size 1024 bits is not supported/);
    const ed = generateKeyPairSync('ed25519');
    rejects([leaf({ subjectPublicKey: ed.publicKey }), root], /unsupported public key type/);
  });
  test('a single self-signed leaf (notation cert generate-test style) is allowed', () => {
    const selfSigned = new X509Certificate(
      issueCertificate({
        subject: leafName,
        subjectPublicKey: leafKey.publicKey,
        issuerPrivateKey: leafKey.privateKey,
        notBefore,
        notAfter,
        ca: false,
      }),
    );
    validateCodeSigningChain([selfSigned], now);
  });
  test('PEM round trip', () => {
    assert.equal(new X509Certificate(toPem(root.raw)).fingerprint256, root.fingerprint256);
  });
});
