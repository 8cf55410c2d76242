import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { digestOf } from '../../src/oci/digest.ts';
import type { Descriptor } from '../../src/oci/manifest.ts';
import { OID, toPem } from '../../src/sign/cert-info.ts';
import {
  type GeneratedChain,
  generateCertificateChain,
  generateKey,
  issueCertificate,
  KEY_TYPES,
  type SubjectName,
} from '../../src/sign/certs.ts';
import { derExplicit, derImplicit, derSequence } from '../../src/sign/der.ts';
import { signJwsEnvelope } from '../../src/sign/jws.ts';
import { COSE_ENVELOPE_MEDIA_TYPE, JWS_ENVELOPE_MEDIA_TYPE } from '../../src/sign/media-types.ts';
import { parseTrustPolicy } from '../../src/sign/trust-policy.ts';
import { addToTrustStore } from '../../src/sign/trust-store.ts';
import { type VerificationResult, type VerifyOptions, verifyNotarySignature } from '../../src/sign/verify.ts';
import { craftEnvelope, rfc3339, standardPayload, standardProtected } from '../helpers/notary-craft.ts';

const tmp = mkdtempSync(join(tmpdir(), 'tether-sign-verify-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;

const REPO = 'registry.example/app';
const target: Descriptor = {
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: digestOf('sha256', Buffer.from('the manifest')),
  size: 12,
};
const IDENTITY = 'x509.subject: C=US, ST=WA, O=Tether Test';

/** A fresh trust store directory holding `files` in `ca:acme` (and others when given). */
async function trustStore(
  stores: { type?: 'ca' | 'signingAuthority' | 'tsa'; name?: string; pems: string[] }[],
) {
  const dir = join(tmp, `ts-${++counter}`);
  for (const s of stores) {
    const files = Object.fromEntries(s.pems.map((p, i) => [`cert${i}.pem`, p]));
    await addToTrustStore(dir, s.type ?? 'ca', s.name ?? 'acme', files);
  }
  return dir;
}

function policy(over: Record<string, unknown> = {}) {
  return parseTrustPolicy({
    version: '1.0',
    trustPolicies: [
      {
        name: 'app',
        registryScopes: [REPO],
        signatureVerification: { level: 'strict' },
        trustStores: ['ca:acme'],
        trustedIdentities: [IDENTITY],
        ...over,
      },
    ],
  });
}

function sign(chain: GeneratedChain, extra: { expiry?: Date; signingTime?: Date; target?: Descriptor } = {}) {
  return signJwsEnvelope({
    target: extra.target ?? target,
    privateKeyPem: chain.leafPrivateKey,
    certificateChainPem: chain.chain,
    ...(extra.signingTime ? { signingTime: extra.signingTime } : {}),
    ...(extra.expiry ? { expiry: extra.expiry } : {}),
  });
}

async function run(opts: Partial<VerifyOptions> & Pick<VerifyOptions, 'envelope' | 'trustStoreDir'>) {
  return verifyNotarySignature({
    envelopeMediaType: JWS_ENVELOPE_MEDIA_TYPE,
    artifactReference: REPO,
    target,
    policy: policy(),
    ...opts,
  });
}

function result(r: VerificationResult, check: string) {
  const found = r.results.find((x) => x.check === check);
  assert.ok(found, check);
  return found;
}

const ec = generateCertificateChain({ keyType: 'ec-p256' });

describe('verifyNotarySignature: round trip for every key type under strict', () => {
  for (const keyType of KEY_TYPES) {
    test(keyType, async () => {
      const chain = keyType === 'ec-p256' ? ec : generateCertificateChain({ keyType, commonName: keyType });
      const dir = await trustStore([{ pems: [chain.rootCertificate] }]);
      const r = await run({ envelope: sign(chain), trustStoreDir: dir });
      assert.equal(r.ok, true, JSON.stringify(r.results));
      assert.equal(r.policyName, 'app');
      assert.equal(r.level, 'strict');
      assert.deepEqual(
        r.results.map((x) => [x.check, x.ok, x.checked, x.enforced]),
        [
          ['integrity', true, true, true],
          ['authenticity', true, true, true],
          ['expiry', true, true, true],
          ['authenticTimestamp', true, true, true],
          ['revocation', true, true, true],
        ],
      );
      assert.equal(
        r.signer,
        `C=US, ST=WA, O=Tether Test, CN=${keyType === 'ec-p256' ? 'tether-test-signer' : keyType}`,
      );
      assert.equal(r.envelope?.payload.targetArtifact.digest, target.digest);
    });
  }
});

describe('signing time and certificate validity (audit F7)', () => {
  // A leaf issued 1 hour ago under a root valid for the last 10 days.
  const rootKey = generateKey('ec-p256');
  const leafKey = generateKey('ec-p256');
  const hour = 3600_000;
  const rootName = { country: 'US', state: 'WA', organization: 'Tether Test', commonName: 'root' };
  const root = issueCertificate({
    subject: rootName,
    subjectPublicKey: rootKey.publicKey,
    issuerPrivateKey: rootKey.privateKey,
    notBefore: new Date(Date.now() - 240 * hour),
    notAfter: new Date(Date.now() + 240 * hour),
    ca: true,
  });
  const leaf = issueCertificate({
    subject: { ...rootName, commonName: 'fresh' },
    issuer: rootName,
    subjectPublicKey: leafKey.publicKey,
    issuerPrivateKey: rootKey.privateKey,
    notBefore: new Date(Date.now() - hour),
    notAfter: new Date(Date.now() + 240 * hour),
    ca: false,
  });
  const signer = {
    keyPem: leafKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    certPem: toPem(leaf),
    chainPem: toPem(leaf) + toPem(root),
  };
  const twoHoursAgo = new Date(Date.now() - 2 * hour);

  test('notary.x509: a signing time before the leaf was issued passes, the chain being valid now', async () => {
    const dir = await trustStore([{ pems: [toPem(root)] }]);
    const envelope = craftEnvelope({
      signer,
      protectedJson: JSON.stringify(standardProtected(twoHoursAgo)),
      payloadJson: standardPayload(target),
    });
    for (const level of ['strict', 'permissive', 'audit']) {
      const r = await run({
        envelope,
        trustStoreDir: dir,
        policy: policy({ signatureVerification: { level } }),
      });
      assert.equal(r.ok, true, `${level}: ${JSON.stringify(r.results)}`);
    }
    // After the leaf expires the authentic-timestamp check (now) still fails it under strict.
    const late = await run({ envelope, trustStoreDir: dir, now: new Date(Date.now() + 300 * hour) });
    assert.match(result(late, 'authenticTimestamp').reason!, /not valid anymore/);
  });

  test('signingAuthority: the authentic signing time must fall in the validity (authenticTimestamp)', async () => {
    const dir = await trustStore([{ type: 'signingAuthority', pems: [toPem(root)] }]);
    const header = (at: Date) => {
      const h: Record<string, unknown> = {
        ...standardProtected(),
        crit: ['io.cncf.notary.signingScheme', 'io.cncf.notary.authenticSigningTime'],
        'io.cncf.notary.signingScheme': 'notary.x509.signingAuthority',
        'io.cncf.notary.authenticSigningTime': rfc3339(at),
      };
      delete h['io.cncf.notary.signingTime'];
      return JSON.stringify(h);
    };
    const sa = policy({ trustStores: ['signingAuthority:acme'] });
    const early = craftEnvelope({
      signer,
      protectedJson: header(twoHoursAgo),
      payloadJson: standardPayload(target),
    });
    const strict = await run({ envelope: early, trustStoreDir: dir, policy: sa });
    assert.equal(strict.ok, false);
    assert.equal(result(strict, 'integrity').ok, true);
    assert.match(
      result(strict, 'authenticTimestamp').reason!,
      /was not valid when the digital signature was produced/,
    );
    const permissive = await run({
      envelope: early,
      trustStoreDir: dir,
      policy: policy({
        trustStores: ['signingAuthority:acme'],
        signatureVerification: { level: 'permissive' },
      }),
    });
    assert.equal(permissive.ok, true);
    const inside = craftEnvelope({
      signer,
      protectedJson: header(new Date(Date.now() - 60_000)),
      payloadJson: standardPayload(target),
    });
    assert.equal((await run({ envelope: inside, trustStoreDir: dir, policy: sa })).ok, true);
  });
});

describe('verifyNotarySignature: failures carry a specific reason', () => {
  test('wrong target digest, size or media type (integrity, even under audit)', async () => {
    const dir = await trustStore([{ pems: [ec.rootCertificate] }]);
    const envelope = sign(ec);
    const other = { ...target, digest: digestOf('sha256', Buffer.from('another manifest')) };
    for (const [t, field] of [
      [other, 'digest'],
      [{ ...target, size: 13 }, 'size'],
      [{ ...target, mediaType: 'application/vnd.docker.distribution.manifest.v2+json' }, 'mediaType'],
    ] as const) {
      for (const level of ['strict', 'audit']) {
        const r = await run({
          envelope,
          trustStoreDir: dir,
          target: t,
          policy: policy({ signatureVerification: { level } }),
        });
        assert.equal(r.ok, false);
        const integrity = result(r, 'integrity');
        assert.equal(integrity.ok, false);
        assert.match(integrity.reason!, new RegExp(`content descriptor mismatch: ${field}`));
        assert.equal(result(r, 'authenticity').checked, false);
      }
    }
    const refDigest = await run({
      envelope,
      trustStoreDir: dir,
      artifactReference: `${REPO}@${other.digest}`,
    });
    assert.match(result(refDigest, 'integrity').reason!, /differs from the target digest/);
  });

  test('tampered payload and tampered signature', async () => {
    const dir = await trustStore([{ pems: [ec.rootCertificate] }]);
    const env = JSON.parse(sign(ec).toString());
    const forgedPayload = Buffer.from(JSON.stringify({ targetArtifact: { ...target, size: 999 } })).toString(
      'base64url',
    );
    const tampered = await run({
      envelope: Buffer.from(JSON.stringify({ ...env, payload: forgedPayload })),
      trustStoreDir: dir,
    });
    assert.equal(tampered.ok, false);
    assert.match(result(tampered, 'integrity').reason!, /INVALID_SIGNATURE/);
    const sig = Buffer.from(env.signature, 'base64url');
    sig[0]! ^= 0xff;
    const badSig = await run({
      envelope: Buffer.from(JSON.stringify({ ...env, signature: sig.toString('base64url') })),
      trustStoreDir: dir,
    });
    assert.equal(badSig.ok, false);
    assert.match(result(badSig, 'integrity').reason!, /signature is invalid/);
    const cose = await run({
      envelope: sign(ec),
      envelopeMediaType: COSE_ENVELOPE_MEDIA_TYPE,
      trustStoreDir: dir,
    });
    assert.match(result(cose, 'integrity').reason!, /unsupported signature envelope media type/);
  });

  test('expired signature: strict fails, permissive logs and passes', async () => {
    const dir = await trustStore([{ pems: [ec.rootCertificate] }]);
    const signingTime = new Date(Date.now() - 60_000);
    const envelope = sign(ec, { signingTime, expiry: new Date(signingTime.getTime() + 30_000) });
    const strict = await run({ envelope, trustStoreDir: dir });
    assert.equal(strict.ok, false);
    assert.match(result(strict, 'expiry').reason!, /digital signature has expired/);
    const permissive = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({ signatureVerification: { level: 'permissive' } }),
    });
    assert.equal(permissive.ok, true);
    const expiry = result(permissive, 'expiry');
    assert.deepEqual([expiry.ok, expiry.enforced, expiry.action], [false, false, 'log']);
    // Not yet expired at an earlier verification time.
    const early = await run({ envelope, trustStoreDir: dir, now: new Date(signingTime.getTime() + 10_000) });
    assert.equal(early.ok, true, JSON.stringify(early.results));
    // Override expiry to log under strict.
    const overridden = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({ signatureVerification: { level: 'strict', override: { expiry: 'log' } } }),
    });
    assert.equal(overridden.ok, true);
  });

  test('untrusted root: strict and permissive fail, audit logs', async () => {
    const other = generateCertificateChain({ keyType: 'ec-p256' });
    const dir = await trustStore([{ pems: [other.rootCertificate] }]);
    const envelope = sign(ec);
    const strict = await run({ envelope, trustStoreDir: dir });
    assert.equal(strict.ok, false);
    assert.match(result(strict, 'authenticity').reason!, /does not contain any trusted certificate/);
    const permissive = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({ signatureVerification: { level: 'permissive' } }),
    });
    assert.equal(permissive.ok, false);
    const audit = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({ signatureVerification: { level: 'audit' } }),
    });
    assert.equal(audit.ok, true);
    assert.deepEqual(
      [result(audit, 'authenticity').ok, result(audit, 'authenticity').enforced],
      [false, false],
    );
  });

  test('trusted identity: subset match, order-insensitive; mismatch fails', async () => {
    const dir = await trustStore([{ pems: [ec.rootCertificate] }]);
    const envelope = sign(ec);
    const ok = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({
        trustedIdentities: ['x509.subject: CN=tether-test-signer, O=Tether Test, ST=WA, C=US'],
      }),
    });
    assert.equal(ok.ok, true, JSON.stringify(ok.results));
    const wildcard = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({ trustedIdentities: ['*'] }),
    });
    assert.equal(wildcard.ok, true);
    const anyOf = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({ trustedIdentities: ['x509.subject: C=US, ST=WA, O=Other', IDENTITY] }),
    });
    assert.equal(anyOf.ok, true);
    for (const identity of [
      'x509.subject: C=US, ST=WA, O=Other',
      `${IDENTITY}, CN=someone-else`,
      'x509.subject: C=DE, ST=WA, O=Tether Test',
    ]) {
      const r = await run({
        envelope,
        trustStoreDir: dir,
        policy: policy({ trustedIdentities: [identity] }),
      });
      assert.equal(r.ok, false, identity);
      assert.match(result(r, 'authenticity').reason!, /does not match the X.509 trusted identities/);
    }
    const pluginOnly = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({ trustedIdentities: ['plugin:x'] }),
    });
    assert.match(result(pluginOnly, 'authenticity').reason!, /no x509 trusted identities/);
  });

  test('certificate expired at verification time: authenticTimestamp enforced by strict, logged by permissive', async () => {
    const dir = await trustStore([{ pems: [ec.rootCertificate] }]);
    const envelope = sign(ec);
    const later = new Date(Date.now() + 400 * 86_400_000);
    const strict = await run({ envelope, trustStoreDir: dir, now: later });
    assert.equal(strict.ok, false);
    assert.match(result(strict, 'authenticTimestamp').reason!, /is not valid anymore, it was expired/);
    const permissive = await run({
      envelope,
      trustStoreDir: dir,
      now: later,
      policy: policy({ signatureVerification: { level: 'permissive' } }),
    });
    assert.equal(permissive.ok, true);
  });

  test('a tsa store requires a timestamp countersignature (unless afterCertExpiry and the chain is valid)', async () => {
    const dir = await trustStore([{ pems: [ec.rootCertificate] }]);
    const envelope = sign(ec);
    const stores = ['ca:acme', 'tsa:clock'];
    const always = await run({ envelope, trustStoreDir: dir, policy: policy({ trustStores: stores }) });
    assert.equal(always.ok, false);
    assert.match(result(always, 'authenticTimestamp').reason!, /no timestamp countersignature/);
    const afterExpiry = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({
        trustStores: stores,
        signatureVerification: { level: 'strict', verifyTimestamp: 'afterCertExpiry' },
      }),
    });
    assert.equal(afterExpiry.ok, true, JSON.stringify(afterExpiry.results));
  });

  test('trust store problems fail authenticity', async () => {
    const envelope = sign(ec);
    const missing = await run({ envelope, trustStoreDir: join(tmp, 'nowhere') });
    assert.match(result(missing, 'authenticity').reason!, /trust store "acme" of type "ca" does not exist/);

    const withSubdir = await trustStore([{ pems: [ec.rootCertificate] }]);
    mkdirSync(join(withSubdir, 'x509/ca/acme/nested'));
    const sub = await run({ envelope, trustStoreDir: withSubdir });
    assert.match(result(sub, 'authenticity').reason!, /is not a regular file/);

    const withLink = await trustStore([{ pems: [ec.rootCertificate] }]);
    symlinkSync(join(withLink, 'x509/ca/acme/cert0.pem'), join(withLink, 'x509/ca/acme/link.pem'));
    assert.match(
      result(await run({ envelope, trustStoreDir: withLink }), 'authenticity').reason!,
      /symlinks/,
    );

    const leafInStore = await trustStore([{ pems: [ec.leafCertificate] }]);
    const leafResult = await run({ envelope, trustStoreDir: leafInStore });
    assert.match(result(leafResult, 'authenticity').reason!, /not a CA certificate or self-signed/);

    const junk = await trustStore([{ pems: [ec.rootCertificate] }]);
    writeFileSync(join(junk, 'x509/ca/acme/readme.txt'), 'hello');
    assert.match(
      result(await run({ envelope, trustStoreDir: junk }), 'authenticity').reason!,
      /failed to read/,
    );

    // A signingAuthority store is not consulted for notary.x509 signatures.
    const saOnly = await trustStore([{ type: 'signingAuthority', name: 'acme', pems: [ec.rootCertificate] }]);
    const sa = await run({
      envelope,
      trustStoreDir: saOnly,
      policy: policy({ trustStores: ['signingAuthority:acme'] }),
    });
    assert.match(result(sa, 'authenticity').reason!, /no trusted certificates/);
  });

  test('a trusted intermediate anchors the chain; several stores and PEM bundles are read', async () => {
    const rootKey = generateKey('ec-p384');
    const interKey = generateKey('ec-p256');
    const leafKey = generateKey('ec-p256');
    const now = Date.now();
    const base = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000) };
    const rootName: SubjectName = {
      country: 'US',
      state: 'WA',
      organization: 'Tether Test',
      commonName: 'root',
    };
    const interName: SubjectName = { ...rootName, commonName: 'intermediate' };
    const leafName: SubjectName = { ...rootName, commonName: 'leaf' };
    const root = toPem(
      issueCertificate({
        ...base,
        subject: rootName,
        subjectPublicKey: rootKey.publicKey,
        issuerPrivateKey: rootKey.privateKey,
        ca: true,
      }),
    );
    const inter = toPem(
      issueCertificate({
        ...base,
        subject: interName,
        issuer: rootName,
        subjectPublicKey: interKey.publicKey,
        issuerPrivateKey: rootKey.privateKey,
        ca: true,
        pathLen: 0,
      }),
    );
    const leaf = toPem(
      issueCertificate({
        ...base,
        subject: leafName,
        issuer: interName,
        subjectPublicKey: leafKey.publicKey,
        issuerPrivateKey: interKey.privateKey,
        ca: false,
      }),
    );
    const envelope = signJwsEnvelope({
      target,
      privateKeyPem: leafKey.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      certificateChainPem: leaf + inter + root,
    });
    const other = generateCertificateChain({ keyType: 'ec-p256' }).rootCertificate;
    const dir = await trustStore([
      { name: 'first', pems: [other] },
      { name: 'second', pems: [other + inter] },
    ]);
    const r = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({ trustStores: ['ca:first', 'ca:second'] }),
    });
    assert.equal(r.ok, true, JSON.stringify(r.results));
    assert.equal(r.envelope?.certificateChain.length, 3);
    const onlyOther = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({ trustStores: ['ca:first'] }),
    });
    assert.equal(onlyOther.ok, false);
  });

  test('revocation: endpoints without a checker are "unknown"; skip override; checker hook', async () => {
    const rootKey = generateKey('ec-p256');
    const leafKey = generateKey('ec-p256');
    const now = Date.now();
    const base = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 86_400_000) };
    const rootName: SubjectName = {
      country: 'US',
      state: 'WA',
      organization: 'Tether Test',
      commonName: 'root',
    };
    const root = toPem(
      issueCertificate({
        ...base,
        subject: rootName,
        subjectPublicKey: rootKey.publicKey,
        issuerPrivateKey: rootKey.privateKey,
        ca: true,
      }),
    );
    // CRLDistributionPoints ::= SEQUENCE OF DistributionPoint { [0] { fullName [0] { URI [6] } } }
    const crlDp = derSequence(
      derSequence(
        derExplicit(0, derImplicit(0, derImplicit(6, Buffer.from('http://crl.example/ca.crl')), true)),
      ),
    );
    const leaf = toPem(
      issueCertificate({
        ...base,
        subject: { ...rootName, commonName: 'leaf' },
        issuer: rootName,
        subjectPublicKey: leafKey.publicKey,
        issuerPrivateKey: rootKey.privateKey,
        ca: false,
        extraExtensions: [{ oid: OID.crlDistributionPoints, value: crlDp }],
      }),
    );
    const envelope = signJwsEnvelope({
      target,
      privateKeyPem: leafKey.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      certificateChainPem: leaf + root,
    });
    const dir = await trustStore([{ pems: [root] }]);
    const strict = await run({ envelope, trustStoreDir: dir });
    assert.equal(strict.ok, false);
    assert.match(result(strict, 'revocation').reason!, /revocation status unknown/);
    const skipped = await run({
      envelope,
      trustStoreDir: dir,
      policy: policy({ signatureVerification: { level: 'strict', override: { revocation: 'skip' } } }),
    });
    assert.equal(skipped.ok, true);
    assert.deepEqual(
      [result(skipped, 'revocation').checked, result(skipped, 'revocation').action],
      [false, 'skip'],
    );
    const good = await run({ envelope, trustStoreDir: dir, checkRevocation: async () => ({ ok: true }) });
    assert.equal(good.ok, true);
    const revoked = await run({
      envelope,
      trustStoreDir: dir,
      checkRevocation: async (chain) => ({ ok: chain.length !== 2, reason: 'leaf revoked' }),
    });
    assert.equal(revoked.ok, false);
    assert.equal(result(revoked, 'revocation').reason, 'leaf revoked');
  });

  test('level skip checks nothing; user metadata must be signed', async () => {
    const skip = await verifyNotarySignature({
      envelope: Buffer.from('garbage'),
      envelopeMediaType: JWS_ENVELOPE_MEDIA_TYPE,
      artifactReference: REPO,
      target,
      policy: parseTrustPolicy({
        version: '1.0',
        trustPolicies: [{ name: 'off', registryScopes: [REPO], signatureVerification: { level: 'skip' } }],
      }),
      trustStoreDir: join(tmp, 'nowhere'),
    });
    assert.equal(skip.ok, true);
    assert.ok(skip.results.every((r) => !r.checked && r.action === 'skip'));

    const dir = await trustStore([{ pems: [ec.rootCertificate] }]);
    const envelope = sign(ec, { target: { ...target, annotations: { team: 'blue' } } });
    assert.equal((await run({ envelope, trustStoreDir: dir, userMetadata: { team: 'blue' } })).ok, true);
    const wrong = await run({ envelope, trustStoreDir: dir, userMetadata: { team: 'red' } });
    assert.equal(wrong.ok, false);
    assert.match(result(wrong, 'integrity').reason!, /unable to find specified metadata/);
  });

  test('no applicable policy throws', async () => {
    await assert.rejects(
      run({ envelope: sign(ec), trustStoreDir: tmp, artifactReference: 'registry.example/other' }),
      /no applicable oci trust policy/,
    );
  });
});
