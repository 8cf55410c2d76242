import assert from 'node:assert/strict';
import { constants, createPrivateKey, type KeyObject, sign, X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import { digestOf } from '../../src/oci/digest.ts';
import type { Descriptor } from '../../src/oci/manifest.ts';
import {
  type GeneratedChain,
  generateCertificateChain,
  KEY_TYPES,
  type KeyType,
} from '../../src/sign/certs.ts';
import { SignatureError, type SignatureErrorCode } from '../../src/sign/errors.ts';
import { formatRfc3339, parseJwsEnvelope, parseRfc3339, signJwsEnvelope } from '../../src/sign/jws.ts';
import { JWS_ENVELOPE_MEDIA_TYPE, NOTARY_PAYLOAD_MEDIA_TYPE } from '../../src/sign/media-types.ts';

const target: Descriptor = {
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: digestOf('sha256', Buffer.from('manifest')),
  size: 8,
};

const chains = new Map<KeyType, GeneratedChain>();
function chainFor(keyType: KeyType): GeneratedChain {
  let c = chains.get(keyType);
  if (!c) {
    c = generateCertificateChain({ keyType });
    chains.set(keyType, c);
  }
  return c;
}

const SIG_LENGTH: Record<KeyType, number> = {
  'ec-p256': 64,
  'ec-p384': 96,
  'ec-p521': 132,
  'rsa-2048': 256,
  'rsa-3072': 384,
  'rsa-4096': 512,
};

interface Envelope {
  payload: string;
  protected: string;
  header: Record<string, unknown>;
  signature: string;
}

const decode = (b: Buffer): Envelope => JSON.parse(b.toString());
const encode = (e: unknown): Buffer => Buffer.from(JSON.stringify(e));
const b64u = (v: string | Buffer) => Buffer.from(v).toString('base64url');

/** Builds an envelope from arbitrary header/payload JSON, signed correctly, to test one rule at a time. */
function forge(opts: {
  protectedHeader: Record<string, unknown> | string;
  payload?: unknown;
  /** The payload as exact JSON text (duplicate keys and all); wins over `payload`. */
  payloadJson?: string;
  key: KeyObject;
  alg: string;
  chain: GeneratedChain;
  derEcdsa?: boolean;
}): Buffer {
  const p = b64u(
    typeof opts.protectedHeader === 'string' ? opts.protectedHeader : JSON.stringify(opts.protectedHeader),
  );
  const pl = b64u(opts.payloadJson ?? JSON.stringify(opts.payload ?? { targetArtifact: target }));
  const input = Buffer.from(`${p}.${pl}`);
  const hash = `sha${opts.alg.slice(2)}`;
  const signature = opts.alg.startsWith('PS')
    ? sign(hash, input, { key: opts.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
    : sign(hash, input, { key: opts.key, dsaEncoding: opts.derEcdsa ? 'der' : 'ieee-p1363' });
  const x5c = [opts.chain.leafCertificate, opts.chain.rootCertificate].map((pem) =>
    new X509Certificate(pem).raw.toString('base64'),
  );
  return encode({ payload: pl, protected: p, header: { x5c }, signature: b64u(signature) });
}

const baseHeader = (over: Record<string, unknown> = {}) => ({
  alg: 'ES256',
  cty: NOTARY_PAYLOAD_MEDIA_TYPE,
  crit: ['io.cncf.notary.signingScheme'],
  'io.cncf.notary.signingScheme': 'notary.x509',
  'io.cncf.notary.signingTime': formatRfc3339(new Date()),
  ...over,
});

function rejects(bytes: Buffer, code: SignatureErrorCode, pattern: RegExp) {
  assert.throws(
    () => parseJwsEnvelope(bytes),
    (e: unknown) => {
      assert.ok(e instanceof SignatureError, String(e));
      assert.equal(e.code, code, e.message);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

describe('signJwsEnvelope → parseJwsEnvelope round trip', () => {
  for (const keyType of KEY_TYPES) {
    test(keyType, () => {
      const c = chainFor(keyType);
      const signingTime = new Date('2026-01-02T03:04:05.678Z');
      const bytes = signJwsEnvelope({
        target: { ...target, annotations: { 'org.example': 'x' }, artifactType: 'ignored/type', urls: ['u'] },
        privateKeyPem: c.leafPrivateKey,
        certificateChainPem: c.chain,
        signingTime: new Date(Math.max(signingTime.getTime(), Date.now() - 60_000)),
      });
      const env = decode(bytes);
      // Exactly the four flattened-JWS members, base64url without padding, x5c standard base64.
      assert.deepEqual(Object.keys(env), ['payload', 'protected', 'header', 'signature']);
      for (const k of ['payload', 'protected', 'signature'] as const)
        assert.match(env[k], /^[A-Za-z0-9_-]+$/);
      assert.equal(Buffer.from(env.signature, 'base64url').length, SIG_LENGTH[keyType]);
      const x5c = env.header.x5c as string[];
      assert.equal(x5c.length, 2);
      assert.equal(
        new X509Certificate(Buffer.from(x5c[0]!, 'base64')).toString(),
        new X509Certificate(c.leafCertificate).toString(),
      );
      assert.equal(env.header['io.cncf.notary.signingAgent'], 'tether');

      const header = JSON.parse(Buffer.from(env.protected, 'base64url').toString());
      assert.deepEqual(Object.keys(header), [...Object.keys(header)].sort(), 'keys sorted like Go maps');
      assert.deepEqual(header.crit, ['io.cncf.notary.signingScheme']);
      assert.equal(header.cty, NOTARY_PAYLOAD_MEDIA_TYPE);
      assert.equal(header['io.cncf.notary.signingScheme'], 'notary.x509');
      assert.match(header['io.cncf.notary.signingTime'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.equal(header['io.cncf.notary.expiry'], undefined);
      const payload = Buffer.from(env.payload, 'base64url').toString();
      assert.equal(
        payload,
        `{"targetArtifact":{"annotations":{"org.example":"x"},"digest":"${target.digest}","mediaType":"${target.mediaType}","size":8}}`,
      );

      const parsed = parseJwsEnvelope(bytes);
      assert.equal(parsed.alg, header.alg);
      assert.deepEqual(parsed.payload.targetArtifact, { ...target, annotations: { 'org.example': 'x' } });
      assert.equal(parsed.signingScheme, 'notary.x509');
      assert.equal(parsed.signingTime.getMilliseconds(), 0);
      assert.equal(parsed.certificateChain.length, 2);
      assert.equal(parsed.signingAgent, 'tether');
    });
  }

  test('alg follows the key: PS256/384/512 and ES256/384/512', () => {
    const algs = KEY_TYPES.map((k) => {
      const c = chainFor(k);
      const env = decode(
        signJwsEnvelope({ target, privateKeyPem: c.leafPrivateKey, certificateChainPem: c.chain }),
      );
      return JSON.parse(Buffer.from(env.protected, 'base64url').toString()).alg;
    });
    assert.deepEqual(algs, ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512']);
  });

  test('expiry is signed, critical, and must follow the signing time', () => {
    const c = chainFor('ec-p256');
    const signingTime = new Date();
    const expiry = new Date(signingTime.getTime() + 3600_000);
    const bytes = signJwsEnvelope({
      target,
      privateKeyPem: c.leafPrivateKey,
      certificateChainPem: c.chain,
      signingTime,
      expiry,
    });
    const header = JSON.parse(Buffer.from(decode(bytes).protected, 'base64url').toString());
    assert.deepEqual(header.crit, ['io.cncf.notary.signingScheme', 'io.cncf.notary.expiry']);
    assert.equal(parseJwsEnvelope(bytes).expiry?.getTime(), Math.floor(expiry.getTime() / 1000) * 1000);
    assert.throws(
      () =>
        signJwsEnvelope({
          target,
          privateKeyPem: c.leafPrivateKey,
          certificateChainPem: c.chain,
          signingTime,
          expiry: signingTime,
        }),
      /expiry cannot be equal or before/,
    );
  });

  test('signing refuses a key that does not match the leaf, or an invalid chain', () => {
    const a = chainFor('ec-p256');
    const b = generateCertificateChain({ keyType: 'ec-p256' });
    assert.throws(
      () => signJwsEnvelope({ target, privateKeyPem: b.leafPrivateKey, certificateChainPem: a.chain }),
      (e: SignatureError) => e.code === 'INVALID_KEY',
    );
    assert.throws(
      () =>
        signJwsEnvelope({
          target,
          privateKeyPem: a.leafPrivateKey,
          certificateChainPem: a.leafCertificate + b.rootCertificate,
        }),
      (e: SignatureError) => e.code === 'INVALID_CERTIFICATE_CHAIN',
    );
  });
});

describe('signJwsEnvelope: times RFC 3339 can hold (audit F11)', () => {
  test('an expiry past 9999-12-31T23:59:59Z, or an invalid date, is refused with a reason, not a RangeError', () => {
    const c = chainFor('ec-p256');
    const sign = (expiry: Date) =>
      signJwsEnvelope({ target, privateKeyPem: c.leafPrivateKey, certificateChainPem: c.chain, expiry });
    for (const expiry of [new Date(Date.parse('9999-12-31T23:59:59Z') + 1000), new Date(Number.NaN)]) {
      assert.throws(
        () => sign(expiry),
        (e: unknown) => e instanceof SignatureError && /must fall in the years 0000 to 9999/.test(e.message),
      );
    }
    const latest = parseJwsEnvelope(sign(new Date('9999-12-31T23:59:59Z')));
    assert.equal(latest.expiry?.toISOString(), '9999-12-31T23:59:59.000Z');
  });
});

describe('parseJwsEnvelope rejects', () => {
  const c = chainFor('ec-p256');
  const key = createPrivateKey(c.leafPrivateKey);
  const good = () =>
    signJwsEnvelope({ target, privateKeyPem: c.leafPrivateKey, certificateChainPem: c.chain });

  test('a forged envelope with correct headers passes (so the negative cases below are meaningful)', () => {
    parseJwsEnvelope(forge({ protectedHeader: baseHeader(), key, alg: 'ES256', chain: c }));
  });
  test('tampered payload', () => {
    const env = decode(good());
    const other = { targetArtifact: { ...target, digest: digestOf('sha256', Buffer.from('evil')) } };
    rejects(
      encode({ ...env, payload: b64u(JSON.stringify(other)) }),
      'INVALID_SIGNATURE',
      /signature is invalid/,
    );
  });
  test('tampered signature', () => {
    const env = decode(good());
    const sig = Buffer.from(env.signature, 'base64url');
    sig[10]! ^= 0x01;
    rejects(encode({ ...env, signature: b64u(sig) }), 'INVALID_SIGNATURE', /signature is invalid/);
  });
  test('tampered protected header', () => {
    const env = decode(good());
    const header = JSON.parse(Buffer.from(env.protected, 'base64url').toString());
    header['io.cncf.notary.signingTime'] = '2020-01-01T00:00:00Z';
    rejects(
      encode({ ...env, protected: b64u(JSON.stringify(header)) }),
      'INVALID_SIGNATURE',
      /signature is invalid/,
    );
  });
  test('a signature by another key', () => {
    const other = createPrivateKey(generateCertificateChain({ keyType: 'ec-p256' }).leafPrivateKey);
    rejects(
      forge({ protectedHeader: baseHeader(), key: other, alg: 'ES256', chain: c }),
      'INVALID_SIGNATURE',
      /invalid/,
    );
  });
  test('DER-encoded ECDSA signatures (JWS needs raw r||s)', () => {
    rejects(
      forge({ protectedHeader: baseHeader(), key, alg: 'ES256', chain: c, derEcdsa: true }),
      'INVALID_SIGNATURE',
      /invalid/,
    );
  });
  test('padded base64url and non-base64 x5c', () => {
    const env = decode(good());
    rejects(encode({ ...env, signature: `${env.signature}=` }), 'MALFORMED_ENVELOPE', /unpadded base64url/);
    rejects(encode({ ...env, header: { x5c: ['***'] } }), 'MALFORMED_ENVELOPE', /x5c\[0\]/);
    rejects(encode({ ...env, header: {} }), 'MALFORMED_ENVELOPE', /certificate chain is not present/);
    rejects(Buffer.from('not json'), 'MALFORMED_ENVELOPE', /JSON/);
  });
  test('alg none/HS256/unknown, and alg that does not fit the key', () => {
    rejects(
      forge({ protectedHeader: baseHeader({ alg: 'none' }), key, alg: 'ES256', chain: c }),
      'UNSUPPORTED_ALGORITHM',
      /none/,
    );
    rejects(
      forge({ protectedHeader: baseHeader({ alg: 'HS256' }), key, alg: 'ES256', chain: c }),
      'UNSUPPORTED_ALGORITHM',
      /HS256/,
    );
    // ES384 over a P-256 key: golang-jwt refuses the curve mismatch.
    rejects(
      forge({ protectedHeader: baseHeader({ alg: 'ES384' }), key, alg: 'ES384', chain: c }),
      'INVALID_SIGNATURE',
      /invalid/,
    );
    // A 3072-bit RSA key signing with PS256 verifies cryptographically but breaks notation's key→alg table.
    const r = chainFor('rsa-3072');
    const rkey = createPrivateKey(r.leafPrivateKey);
    rejects(
      forge({ protectedHeader: baseHeader({ alg: 'PS256' }), key: rkey, alg: 'PS256', chain: r }),
      'ALGORITHM_MISMATCH',
      /derived from signing certificate \(PS384\).*\(PS256\)/,
    );
  });
  test('crit rules', () => {
    const f = (h: Record<string, unknown>) =>
      forge({ protectedHeader: baseHeader(h), key, alg: 'ES256', chain: c });
    rejects(f({ crit: undefined }), 'INVALID_HEADER', /missing "crit" header/);
    rejects(f({ crit: [] }), 'INVALID_HEADER', /missing "crit" header/);
    rejects(f({ crit: ['io.cncf.notary.signingTime'] }), 'INVALID_HEADER', /marked critical but not present/);
    rejects(
      f({ crit: ['io.cncf.notary.signingScheme', 'io.cncf.notary.signingScheme'] }),
      'INVALID_HEADER',
      /marked critical but not present/,
    );
    rejects(
      f({ crit: ['io.cncf.notary.signingScheme', 'x.absent'] }),
      'INVALID_HEADER',
      /"x\.absent" header is marked critical but not present/,
    );
    rejects(
      f({ 'io.cncf.notary.expiry': formatRfc3339(new Date(Date.now() + 3600_000)) }),
      'INVALID_HEADER',
      /not marked as critical: io\.cncf\.notary\.expiry/,
    );
    rejects(
      f({
        crit: ['io.cncf.notary.signingScheme', 'io.cncf.notary.verificationPlugin'],
        'io.cncf.notary.verificationPlugin': 'p',
      }),
      'INVALID_HEADER',
      /requires verification plugin "p"/,
    );
    rejects(
      f({ 'io.cncf.notary.verificationPlugin': 'p' }),
      'INVALID_HEADER',
      /is not a critical Extended attribute/,
    );
    // ⚠ notation v1.3.2 accepts other critical extended attributes; so do we, and report them.
    const critExt = parseJwsEnvelope(f({ crit: ['io.cncf.notary.signingScheme', 'x.ext'], 'x.ext': 'v' }));
    assert.deepEqual(critExt.extendedAttributes, [{ key: 'x.ext', value: 'v', critical: true }]);
    // A non-critical extended attribute is fine and reported.
    const parsed = parseJwsEnvelope(f({ 'x.custom': 1 }));
    assert.deepEqual(parsed.extendedAttributes, [{ key: 'x.custom', value: 1, critical: false }]);
  });
  test('signing scheme and time rules', () => {
    const f = (h: Record<string, unknown>) =>
      forge({ protectedHeader: baseHeader(h), key, alg: 'ES256', chain: c });
    rejects(
      f({ 'io.cncf.notary.signingScheme': 'notary.other' }),
      'INVALID_HEADER',
      /unsupported signingScheme/,
    );
    rejects(f({ 'io.cncf.notary.signingTime': undefined }), 'INVALID_HEADER', /signing-time not present/);
    rejects(f({ 'io.cncf.notary.signingTime': 'yesterday' }), 'INVALID_HEADER', /RFC 3339/);
    rejects(
      f({ 'io.cncf.notary.authenticSigningTime': formatRfc3339(new Date()) }),
      'INVALID_HEADER',
      /must not be present for notary\.x509/,
    );
    const now = new Date();
    rejects(
      f({
        crit: ['io.cncf.notary.signingScheme', 'io.cncf.notary.expiry'],
        'io.cncf.notary.signingTime': formatRfc3339(now),
        'io.cncf.notary.expiry': formatRfc3339(now),
      }),
      'INVALID_HEADER',
      /expiry cannot be equal or before the signing time/,
    );
    // notation keeps the local zone offset; any RFC 3339 offset must parse.
    const utc = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
    const withOffset = `${new Date(utc.getTime() + 3600_000).toISOString().slice(0, 19)}+01:00`;
    const local = parseJwsEnvelope(f({ 'io.cncf.notary.signingTime': withOffset }));
    assert.equal(local.signingTime.toISOString(), utc.toISOString());
  });
  test('a signing time outside the certificate validity is no integrity failure (notation, spec; audit F7)', () => {
    // The chain is checked against the time of verification (authenticTimestamp, verify.ts) instead.
    const parsed = parseJwsEnvelope(
      forge({
        protectedHeader: baseHeader({ 'io.cncf.notary.signingTime': '2001-01-01T00:00:00Z' }),
        key,
        alg: 'ES256',
        chain: c,
      }),
    );
    assert.equal(parsed.signingTime.toISOString(), '2001-01-01T00:00:00.000Z');
  });
  test('payload content type and shape', () => {
    rejects(
      forge({ protectedHeader: baseHeader({ cty: 'application/json' }), key, alg: 'ES256', chain: c }),
      'INVALID_PAYLOAD',
      /content type/,
    );
    rejects(
      forge({ protectedHeader: baseHeader(), payload: [1], key, alg: 'ES256', chain: c }),
      'INVALID_PAYLOAD',
      /JSON object/,
    );
    rejects(
      forge({ protectedHeader: baseHeader(), payload: {}, key, alg: 'ES256', chain: c }),
      'INVALID_PAYLOAD',
      /targetArtifact/,
    );
    rejects(
      forge({
        protectedHeader: baseHeader(),
        payload: { targetArtifact: { ...target, size: -1 } },
        key,
        alg: 'ES256',
        chain: c,
      }),
      'INVALID_PAYLOAD',
      /size/,
    );
  });
  test('the payload key order does not matter (verifiers use the stored bytes)', () => {
    const payload = {
      targetArtifact: { size: target.size, mediaType: target.mediaType, digest: target.digest },
    };
    const parsed = parseJwsEnvelope(
      forge({ protectedHeader: baseHeader(), payload, key, alg: 'ES256', chain: c }),
    );
    assert.deepEqual(parsed.payload.targetArtifact, target);
  });
});

describe("parseJwsEnvelope: only JSON that Go's decoder (notation) reads the same way (audit F2, F3)", () => {
  const c = chainFor('ec-p256');
  const key = createPrivateKey(c.leafPrivateKey);
  const other = digestOf('sha256', Buffer.from('another image'));
  const t = `"mediaType":"${target.mediaType}","digest":"${target.digest}","size":${target.size}`;
  const withPayload = (payloadJson: string) =>
    forge({ protectedHeader: baseHeader(), payloadJson, key, alg: 'ES256', chain: c });
  const withHeader = (protectedHeader: string) => forge({ protectedHeader, key, alg: 'ES256', chain: c });
  const header = (extra: string) => JSON.stringify(baseHeader()).replace(/}$/, `,${extra}}`);

  test('payload keys that differ from a field only in case: Go reads them, so they are refused', () => {
    // Tether would read image A, notation image B (the last case-insensitive match wins).
    rejects(
      withPayload(`{"targetArtifact":{${t},"Digest":"${other}"}}`),
      'INVALID_PAYLOAD',
      /payload\.targetArtifact has the key "Digest", which differs from the field "digest" only in case/,
    );
    rejects(
      withPayload(`{"targetArtifact":{${t}},"TargetArtifact":{"digest":"${other}"}}`),
      'INVALID_PAYLOAD',
      /"TargetArtifact".*"targetArtifact"/,
    );
    rejects(withPayload(`{"targetArtifact":{${t},"SIZE":9}}`), 'INVALID_PAYLOAD', /"SIZE"/);
    // Go folds ſ (U+017F) to s and the Kelvin sign to k as well.
    rejects(withPayload(`{"targetArtifact":{${t},"ſize":9}}`), 'INVALID_PAYLOAD', /only in case/);
  });
  test('duplicate keys, anywhere in the payload, are refused', () => {
    rejects(
      withPayload(`{"targetArtifact":{${t},"digest":"${other}"}}`),
      'INVALID_PAYLOAD',
      /duplicate key "digest"/,
    );
    rejects(
      withPayload(`{"targetArtifact":{${t},"annotations":{"k":"a","k":"b"}}}`),
      'INVALID_PAYLOAD',
      /duplicate key "k"/,
    );
  });
  test('values Go cannot decode into the descriptor are refused (notation fails on them)', () => {
    rejects(
      withPayload(`{"targetArtifact":{${t.replace(`"size":${target.size}`, `"size":${target.size}.0`)}}}`),
      'INVALID_PAYLOAD',
      /size must be an integer literal within int64, not 8\.0/,
    );
    rejects(withPayload(`{"targetArtifact":{${t},"urls":5}}`), 'INVALID_PAYLOAD', /urls must be an array/);
    rejects(withPayload(`{"targetArtifact":{${t},"data":"***"}}`), 'INVALID_PAYLOAD', /data must be/);
    rejects(
      withPayload(`{"targetArtifact":{${t},"platform":{"os":5}}}`),
      'INVALID_PAYLOAD',
      /platform\.os must be a string/,
    );
    rejects(withPayload(`\ufeff{"targetArtifact":{${t}}}`), 'INVALID_PAYLOAD', /not valid JSON/);
    rejects(
      withPayload(`{"targetArtifact":{${t},"artifactType":"\\ud800"}}`),
      'INVALID_PAYLOAD',
      /unpaired UTF-16 surrogate/,
    );
  });
  test('what Go reads the same way still verifies: unknown keys, nulls, an exact descriptor', () => {
    const parsed = parseJwsEnvelope(
      withPayload(
        `{"targetArtifact":{${t},"urls":null,"platform":{"os":"linux"},"annotations":{"Build":"1","build":"2"},"x":1},"extra":{"Digest":1}}`,
      ),
    );
    assert.deepEqual(parsed.payload.targetArtifact, { ...target, annotations: { Build: '1', build: '2' } });
  });
  test('protected header keys: a case variant of a Notary header is refused', () => {
    const past = formatRfc3339(new Date(Date.now() - 60_000));
    // notation reads IO.CNCF.NOTARY.EXPIRY as the expiry (and finds the signature expired).
    rejects(
      withHeader(header(`"IO.CNCF.NOTARY.EXPIRY":"${past}"`)),
      'MALFORMED_ENVELOPE',
      /protected header has the key "IO\.CNCF\.NOTARY\.EXPIRY", which differs from the field "io\.cncf\.notary\.expiry" only in case/,
    );
    rejects(withHeader(header('"CTY":"application/json"')), 'MALFORMED_ENVELOPE', /"CTY"/);
    rejects(withHeader(header('"Alg":"ES256"')), 'MALFORMED_ENVELOPE', /"Alg"/);
    rejects(withHeader(header('"cty":"application/json"')), 'MALFORMED_ENVELOPE', /duplicate key "cty"/);
    // Unrelated extended attributes are still fine.
    assert.equal(
      parseJwsEnvelope(withHeader(header('"x.custom":"v"'))).extendedAttributes[0]?.key,
      'x.custom',
    );
  });
  test('envelope and unprotected header keys: case variants and duplicates are refused', () => {
    const env = decode(
      signJwsEnvelope({ target, privateKeyPem: c.leafPrivateKey, certificateChainPem: c.chain }),
    );
    const text = JSON.stringify(env);
    rejects(
      Buffer.from(text.replace(/}$/, `,"Payload":"${env.payload}"}`)),
      'MALFORMED_ENVELOPE',
      /"Payload"/,
    );
    rejects(Buffer.from(text.replace('"x5c"', '"X5C"')), 'MALFORMED_ENVELOPE', /"X5C"/);
    rejects(
      Buffer.from(text.replace(/}$/, `,"signature":"${env.signature}"}`)),
      'MALFORMED_ENVELOPE',
      /duplicate key "signature"/,
    );
  });
});

describe('RFC 3339', () => {
  test('parse and format', () => {
    assert.equal(parseRfc3339('2026-11-22T14:30:31Z', 't').toISOString(), '2026-11-22T14:30:31.000Z');
    assert.equal(parseRfc3339('2026-11-22T14:30:31.25-02:30', 't').toISOString(), '2026-11-22T17:00:31.250Z');
    for (const bad of [
      '2026-13-01T00:00:00Z',
      '2026-02-30T00:00:00Z',
      '2026-11-22 14:30:31Z',
      '2026-11-22T14:30:31',
    ]) {
      assert.throws(() => parseRfc3339(bad, 't'), SignatureError, bad);
    }
    assert.equal(formatRfc3339(new Date('2026-11-22T14:30:31.999Z')), '2026-11-22T14:30:31Z');
    assert.equal(JWS_ENVELOPE_MEDIA_TYPE, 'application/jose+json');
  });
});
