import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { certificateInfo } from '../../src/sign/cert-info.ts';
import { generateKey, issueCertificate } from '../../src/sign/certs.ts';
import {
  certificateSubjectDN,
  isSubsetDN,
  notationSubjectString,
  parseDistinguishedName,
} from '../../src/sign/dn.ts';
import type { SignatureError } from '../../src/sign/errors.ts';
import { loadTrustPolicy } from '../../src/sign/registry.ts';
import {
  artifactPath,
  parseTrustPolicy,
  selectTrustPolicy,
  verificationLevel,
} from '../../src/sign/trust-policy.ts';
import { notationConfigDir } from '../../src/sign/trust-store.ts';

const ID = 'x509.subject: C=US, ST=WA, O=Acme';

function statement(over: Record<string, unknown> = {}) {
  return {
    name: 'p',
    registryScopes: ['registry.example/app'],
    signatureVerification: { level: 'strict' },
    trustStores: ['ca:acme'],
    trustedIdentities: [ID],
    ...over,
  };
}

function policyRejects(doc: unknown, pattern: RegExp) {
  assert.throws(
    () => parseTrustPolicy(doc),
    (e: SignatureError) => e.code === 'TRUST_POLICY' && pattern.test(e.message),
    String(pattern),
  );
}

describe('trust policy validation', () => {
  test('the documented minimal policy parses', () => {
    const doc = parseTrustPolicy(
      JSON.stringify({
        version: '1.0',
        trustPolicies: [
          {
            name: 'interop',
            registryScopes: ['127.0.0.1:5000/demo'],
            signatureVerification: { level: 'strict' },
            trustStores: ['ca:interop'],
            trustedIdentities: ['x509.subject: C=US, ST=WA, O=Example, CN=ts-signer'],
          },
        ],
      }),
    );
    assert.equal(doc.trustPolicies[0]!.name, 'interop');
  });
  test('document-level rules', () => {
    policyRejects('{', /not valid JSON/);
    policyRejects({ trustPolicies: [statement()] }, /empty version/);
    policyRejects({ version: '2.0', trustPolicies: [statement()] }, /unsupported version "2.0"/);
    policyRejects({ version: '1.0', trustPolicies: [] }, /zero trust policy statements/);
    policyRejects(
      { version: '1.0', trustPolicies: [statement(), statement({ registryScopes: ['r.example/b'] })] },
      /same name "p"/,
    );
    policyRejects({ version: '1.0', trustPolicies: [statement({ trustStores: 'ca:x' })] }, /malformed/);
  });
  test("JSON Go's decoder reads differently is refused: case variants, duplicates, a byte order mark", () => {
    const audit = JSON.stringify([statement({ signatureVerification: { level: 'audit' } })]);
    const strict = JSON.stringify([statement()]);
    // notation reads the last case-insensitive match: strict. Tether read the exact key: audit.
    policyRejects(
      `{"version":"1.0","trustPolicies":${audit},"TrustPolicies":${strict}}`,
      /the trust policy has the key "TrustPolicies", which differs from the field "trustPolicies" only in case/,
    );
    policyRejects(
      `{"version":"1.0","trustPolicies":${audit},"trustPolicies":${strict}}`,
      /duplicate key "trustPolicies"/,
    );
    policyRejects(
      `{"version":"1.0","trustPolicies":${strict.replace('"level"', '"Level"')}}`,
      /"Level", which differs from the field "level"/,
    );
    policyRejects(`\ufeff{"version":"1.0","trustPolicies":${strict}}`, /not valid JSON/);
    assert.equal(parseTrustPolicy(`{"version":"1.0","trustPolicies":${strict},"x":{"X":1}}`).version, '1.0');
  });
  test('statement rules', () => {
    const one = (s: Record<string, unknown>) => ({ version: '1.0', trustPolicies: [s] });
    policyRejects(one(statement({ name: '' })), /missing a name/);
    policyRejects(
      one(statement({ signatureVerification: { level: 'paranoid' } })),
      /invalid signature verification level "paranoid"/,
    );
    policyRejects(one(statement({ signatureVerification: {} })), /level is empty or missing/);
    policyRejects(one(statement({ trustStores: [] })), /either missing trust stores or trusted identities/);
    policyRejects(
      one(statement({ trustedIdentities: [] })),
      /either missing trust stores or trusted identities/,
    );
    policyRejects(
      one(statement({ signatureVerification: { level: 'skip' } })),
      /set to skip signature verification but configured/,
    );
    policyRejects(one(statement({ trustStores: ['acme'] })), /malformed trust store value "acme"/);
    policyRejects(one(statement({ trustStores: ['root:acme'] })), /unsupported trust store type "root"/);
    policyRejects(one(statement({ trustStores: ['ca:a/b'] })), /unsupported trust store name/);
    policyRejects(
      one(statement({ trustedIdentities: ['*', ID] })),
      /wildcard identity cannot be used in conjunction/,
    );
    policyRejects(one(statement({ trustedIdentities: [''] })), /empty trusted identity/);
    policyRejects(one(statement({ trustedIdentities: ['C=US'] })), /missing separator/);
    policyRejects(one(statement({ trustedIdentities: ['x509.subject:'] })), /without an identity value/);
    policyRejects(
      one(statement({ trustedIdentities: ['x509.subject: C=US, O=Acme'] })),
      /mandatory RDN attribute for "ST"/,
    );
    policyRejects(
      one(statement({ trustedIdentities: ['x509.subject: C=US+ST=WA, O=Acme'] })),
      /multi-valued/,
    );
    policyRejects(
      one(statement({ trustedIdentities: ['x509.subject: C=US, ST=WA, O=A, O=B'] })),
      /duplicate RDN attribute for "O"/,
    );
    policyRejects(
      one(statement({ trustedIdentities: [ID, `${ID}, CN=x`] })),
      /overlapping x509 trustedIdentities/,
    );
    policyRejects(
      one(statement({ signatureVerification: { level: 'strict', verifyTimestamp: 'never' } })),
      /verifyTimestamp/,
    );
    // Unknown identity prefixes are allowed (notation leaves them to plugins).
    parseTrustPolicy(one(statement({ trustedIdentities: [ID, 'plugin.identity:foo'] })));
    // `S` is accepted for ST.
    parseTrustPolicy(one(statement({ trustedIdentities: ['x509.subject: C=US, S=WA, O=Acme'] })));
    // skip without stores/identities is valid.
    parseTrustPolicy(
      one({ name: 's', registryScopes: ['r.example/x'], signatureVerification: { level: 'skip' } }),
    );
  });
  test('registry scope rules', () => {
    const one = (scopes: unknown) => ({
      version: '1.0',
      trustPolicies: [statement({ registryScopes: scopes as string[] })],
    });
    policyRejects(one([]), /zero registry scopes/);
    policyRejects(one(['*', 'r.example/a']), /wildcard scope cannot be used in conjunction/);
    policyRejects(one(['r.example/*']), /wild card/);
    policyRejects(one(['https://r.example/a']), /is not valid/);
    policyRejects(one(['r.example']), /is not valid/);
    policyRejects(one(['r.example/App']), /is not valid/);
    policyRejects(one(['r.example/a:tag']), /is not valid/);
    parseTrustPolicy(one(['localhost:5000/a/b-c_d.e', 'local/myOCILayout'.toLowerCase()]));
    policyRejects(
      { version: '1.0', trustPolicies: [statement(), statement({ name: 'q' })] },
      /registry scope "registry.example\/app" is present in multiple/,
    );
    policyRejects(
      {
        version: '1.0',
        trustPolicies: [
          statement({ registryScopes: ['*'] }),
          statement({ name: 'q', registryScopes: ['*'] }),
        ],
      },
      /registry scope "\*" is present in multiple/,
    );
  });
});

describe('trust policy selection', () => {
  const doc = parseTrustPolicy({
    version: '1.0',
    trustPolicies: [
      statement({ name: 'wild', registryScopes: ['*'], signatureVerification: { level: 'audit' } }),
      statement({ name: 'app', registryScopes: ['registry.example/app', 'localhost:5000/app'] }),
      { name: 'off', registryScopes: ['registry.example/legacy'], signatureVerification: { level: 'skip' } },
    ],
  });
  test('exact scope beats the wildcard, whatever the statement order', () => {
    assert.equal(selectTrustPolicy(doc, 'registry.example/app').name, 'app');
    assert.equal(selectTrustPolicy(doc, `localhost:5000/app@sha256:${'a'.repeat(64)}`).name, 'app');
    assert.equal(selectTrustPolicy(doc, 'registry.example/app:v1').name, 'app');
    assert.equal(selectTrustPolicy(doc, 'registry.example/other').name, 'wild');
    assert.equal(selectTrustPolicy(doc, 'registry.example/app/sub').name, 'wild', 'no prefix matching');
    assert.equal(selectTrustPolicy(doc, 'registry.example/legacy').name, 'off');
  });
  test('no wildcard and no exact scope: no policy', () => {
    const strictOnly = parseTrustPolicy({ version: '1.0', trustPolicies: [statement()] });
    assert.throws(
      () => selectTrustPolicy(strictOnly, 'registry.example/other'),
      (e: SignatureError) => e.code === 'NO_APPLICABLE_POLICY',
    );
  });
  test('artifact paths', () => {
    assert.equal(artifactPath('localhost:5000/a/b'), 'localhost:5000/a/b');
    assert.equal(artifactPath('localhost:5000/a/b:tag'), 'localhost:5000/a/b');
    assert.throws(() => artifactPath('just-a-name'), /registry scope "just-a-name" is not valid/);
  });
});

describe('verification levels', () => {
  test('presets', () => {
    assert.deepEqual(verificationLevel({ level: 'permissive' }).enforcement, {
      integrity: 'enforce',
      authenticity: 'enforce',
      authenticTimestamp: 'log',
      expiry: 'log',
      revocation: 'log',
    });
    assert.equal(verificationLevel({ level: 'audit' }).enforcement.authenticity, 'log');
    assert.equal(verificationLevel({ level: 'skip' }).enforcement.integrity, 'skip');
    assert.equal(verificationLevel({ level: 'strict' }).enforcement.revocation, 'enforce');
  });
  test('overrides', () => {
    const custom = verificationLevel({ level: 'strict', override: { expiry: 'log', revocation: 'skip' } });
    assert.equal(custom.name, 'custom');
    assert.equal(custom.enforcement.expiry, 'log');
    assert.equal(custom.enforcement.revocation, 'skip');
    assert.equal(custom.enforcement.authenticity, 'enforce');
    assert.throws(
      () => verificationLevel({ level: 'strict', override: { integrity: 'log' } }),
      /can not be overridden/,
    );
    assert.throws(
      () => verificationLevel({ level: 'strict', override: { authenticity: 'skip' } }),
      /can not be skipped/,
    );
    assert.throws(
      () => verificationLevel({ level: 'skip', override: { expiry: 'log' } }),
      /can't be used to customize/,
    );
    assert.throws(
      () => verificationLevel({ level: 'strict', override: { bogus: 'log' } as never }),
      /verification type "bogus"/,
    );
    assert.throws(
      () => verificationLevel({ level: 'strict', override: { expiry: 'warn' } as never }),
      /action "warn"/,
    );
  });
});

describe('distinguished names', () => {
  test('RFC 4514 parsing as go-ldap does (order-free map, trimmed, escapes)', () => {
    const dn = parseDistinguishedName(' CN = signer\\, inc ,O=Acme\\2C Ltd;ST=WA, C=US ');
    assert.deepEqual({ ...dn }, { CN: 'signer, inc', O: 'Acme, Ltd', ST: 'WA', C: 'US' });
    assert.ok(
      isSubsetDN(parseDistinguishedName('C=US, ST=WA, O=Acme'), {
        C: 'US',
        ST: 'WA',
        O: 'Acme',
      }),
    );
    assert.ok(
      !isSubsetDN(parseDistinguishedName('C=US, ST=WA, O=Acme, CN=a'), { C: 'US', ST: 'WA', O: 'Acme' }),
    );
    assert.throws(() => parseDistinguishedName('C=US, ST=WA'), /mandatory RDN attribute for "O"/);
    assert.throws(() => parseDistinguishedName('C=US, ST=WA, O'), /not valid/);
  });
  test('spaces: only unescaped outer spaces are dropped (go-ldap v3.4.10), values compare exactly', () => {
    const o = (dn: string) => parseDistinguishedName(`C=US, ST=WA, ${dn}`).O;
    assert.equal(o('O=Example\\ '), 'Example ');
    assert.equal(o('O=Example\\20'), 'Example ');
    assert.equal(o('O=\\  Example'), '  Example');
    assert.equal(o('O=Example \\ '), 'Example  ');
    assert.equal(o('O =  Example  '), 'Example');
    // go-ldap's quirk: an escaped backslash before an unescaped trailing space keeps the space.
    assert.equal(o('O=x\\\\ '), 'x\\ ');
    assert.equal(o('O=\\c3\\a9'), 'é');
    assert.ok(
      !isSubsetDN(parseDistinguishedName('C=US, ST=WA, O=Example\\ '), { C: 'US', ST: 'WA', O: 'Example' }),
    );
    // `\ff` is not UTF-8: it equals only the same bytes, never a (UTF-8) certificate value.
    assert.notEqual(o('O=\\ff'), '\ufffd');
    assert.equal(o('O=\\ff'), o('O=\\FF'));
    assert.throws(() => parseDistinguishedName('C=US, ST=WA, O=Ex\\ample'), /not valid.*escaped character/);
    assert.throws(() => parseDistinguishedName('C=US, ST=WA, O=Example,'), /DN ended with incomplete type/);
    assert.throws(() => parseDistinguishedName('C=US, ST=WA, O=Example\\'), /not valid/);
  });

  test("certificate values keep their spaces: leaf O='Acme ' matches only O=Acme\\ ", () => {
    const { publicKey, privateKey } = generateKey('ec-p256');
    const dn = certificateSubjectDN(
      new X509Certificate(
        issueCertificate({
          subject: { country: 'US', state: 'WA', organization: 'Acme ', commonName: ' signer' },
          subjectPublicKey: publicKey,
          issuerPrivateKey: privateKey,
          notBefore: new Date(Date.now() - 1000),
          notAfter: new Date(Date.now() + 3600_000),
          ca: false,
        }),
      ),
    );
    assert.equal(dn.O, 'Acme ');
    assert.equal(dn.CN, ' signer');
    assert.ok(!isSubsetDN(parseDistinguishedName('C=US, ST=WA, O=Acme'), dn));
    assert.ok(isSubsetDN(parseDistinguishedName('C=US, ST=WA, O=Acme\\ , CN=\\ signer'), dn));
  });

  test('certificate subjects: any order, repeated attributes refused', () => {
    const { publicKey, privateKey } = generateKey('ec-p256');
    const now = Date.now();
    const cert = (subject: Record<string, string>) =>
      new X509Certificate(
        issueCertificate({
          subject,
          subjectPublicKey: publicKey,
          issuerPrivateKey: privateKey,
          notBefore: new Date(now - 1000),
          notAfter: new Date(now + 3600_000),
          ca: false,
        }),
      );
    const dn = certificateSubjectDN(
      cert({ country: 'US', state: 'WA', organization: 'Acme', commonName: 'x' }),
    );
    assert.deepEqual({ ...dn }, { C: 'US', ST: 'WA', O: 'Acme', CN: 'x' });
    assert.ok(isSubsetDN(parseDistinguishedName('CN=x, O=Acme, ST=WA, C=US'), dn));
    assert.throws(
      () => certificateSubjectDN(cert({ country: 'US', organization: 'Acme' })),
      /mandatory RDN attribute for "ST"/,
    );
  });
});

describe("leaf subjects as notation reads them: Go's Subject.String(), then the identity rules (audit F5, F6, F10)", () => {
  const tmp = mkdtempSync(join(tmpdir(), 'tether-subject-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const key = join(tmp, 'k.pem');
  execFileSync('openssl', [
    'genpkey',
    '-algorithm',
    'EC',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-out',
    key,
  ]);
  /** A self-signed certificate with the openssl `-subj` given (attributes in that order, repeats kept). */
  const withSubject = (subj: string) =>
    new X509Certificate(
      execFileSync('openssl', ['req', '-x509', '-new', '-key', key, '-days', '1', '-utf8', '-subj', subj]),
    );

  test('attributes Go has no short name for print as OID=#hex, which notation refuses', () => {
    const email = withSubject('/C=US/ST=WA/O=Example/CN=e/emailAddress=a@b.c');
    assert.equal(
      notationSubjectString(email),
      'CN=e,O=Example,ST=WA,C=US,1.2.840.113549.1.9.1=#0c056140622e63',
    );
    assert.throws(
      () => certificateSubjectDN(email),
      /notation does not support x509\.subject identities containing "=#"/,
    );
    assert.throws(() => certificateSubjectDN(withSubject('/C=US/ST=WA/O=Example/UID=u1/CN=u')), /"=#"/);
    assert.throws(() => certificateSubjectDN(withSubject('/C=US/ST=WA/O=Example/title=Boss/CN=t')), /"=#"/);
    // "=#" inside a standard value is refused too, exactly as notation's string test does.
    assert.throws(() => certificateSubjectDN(withSubject('/C=US/ST=WA/O=Example/CN=a=#b')), /"=#"/);
  });

  test('identities with =# (BER #hex values, dotted OIDs with them) are invalid policy', () => {
    assert.throws(() => parseDistinguishedName('C=US, ST=WA, O=#0c074578616d706c65'), /"=#"/);
    policyRejects(
      {
        version: '1.0',
        trustPolicies: [
          statement({ trustedIdentities: ['x509.subject: C=US, ST=WA, O=#0c074578616d706c65'] }),
        ],
      },
      /invalid identity value: unsupported distinguished name.*"=#"/,
    );
  });

  test("Go's regrouping: a second CN replaces the first; two OUs are one multi-valued RDN", () => {
    const twoCn = withSubject('/C=US/ST=WA/O=Example/CN=x/CN=y');
    assert.equal(notationSubjectString(twoCn), 'CN=y,O=Example,ST=WA,C=US');
    assert.equal(certificateSubjectDN(twoCn).CN, 'y');
    const twoOu = withSubject('/C=US/ST=WA/O=Example/OU=a/OU=b/CN=z');
    assert.equal(notationSubjectString(twoOu), 'CN=z,OU=a+OU=b,O=Example,ST=WA,C=US');
    assert.throws(() => certificateSubjectDN(twoOu), /multi-valued RDN/);
    // Go escapes , + " \ < > ; anywhere, a space at either end and a leading #.
    const escaped = withSubject('/C=US/ST=WA/O=a,b\\+c/OU=\\#x /CN= lead');
    assert.equal(notationSubjectString(escaped), 'CN=\\ lead,OU=\\#x\\ ,O=a\\,b\\+c,ST=WA,C=US');
    assert.deepEqual(
      { ...certificateSubjectDN(escaped) },
      { C: 'US', ST: 'WA', O: 'a,b+c', OU: '#x ', CN: ' lead' },
    );
  });

  test('an empty value in an identity matches a leaf without that attribute (Go map zero value)', () => {
    const id = parseDistinguishedName('C=US, ST=WA, O=Acme, OU=');
    assert.ok(isSubsetDN(id, { C: 'US', ST: 'WA', O: 'Acme' }));
    assert.ok(isSubsetDN(id, { C: 'US', ST: 'WA', O: 'Acme', OU: '' }));
    assert.ok(!isSubsetDN(id, { C: 'US', ST: 'WA', O: 'Acme', OU: 'x' }));
    // An inherited property is no attribute.
    assert.ok(
      !isSubsetDN(parseDistinguishedName('C=US, ST=WA, O=Acme, constructor=x'), {
        C: 'US',
        ST: 'WA',
        O: 'Acme',
      }),
    );
    // ... which makes these two identities overlap, as notation says.
    policyRejects(
      {
        version: '1.0',
        trustPolicies: [
          statement({
            trustedIdentities: [
              'x509.subject: C=US, ST=WA, O=Acme, OU=',
              'x509.subject: C=US, ST=WA, O=Acme, CN=x',
            ],
          }),
        ],
      },
      /overlapping x509 trustedIdentities/,
    );
  });

  test("a Name string Go's x509 parser refuses makes the certificate unusable, as in notation", () => {
    const der = Buffer.from(
      execFileSync('openssl', [
        'req',
        '-x509',
        '-new',
        '-key',
        key,
        '-days',
        '1',
        '-subj',
        '/C=US/ST=WA/O=ZZZZ',
        '-outform',
        'DER',
      ]),
    );
    // The O value as a PrintableString holding '@' (Go: "invalid PrintableString"); OpenSSL reads it.
    const patched = Buffer.from(der.toString('latin1').replaceAll('\x0c\x04ZZZZ', '\x13\x04Z@ZZ'), 'latin1');
    assert.notDeepEqual(patched, der);
    assert.throws(
      () => certificateInfo(new X509Certificate(patched)),
      /invalid PrintableString, which Go's x509 parser refuses/,
    );
  });
});

describe('notation config directory', () => {
  test("NOTATION_CONFIG, then Go's os.UserConfigDir", () => {
    assert.equal(notationConfigDir({ NOTATION_CONFIG: '/n' }, 'linux', '/home/u'), '/n');
    assert.equal(notationConfigDir({ XDG_CONFIG_HOME: '/x' }, 'linux', '/home/u'), '/x/notation');
    assert.equal(
      notationConfigDir({ XDG_CONFIG_HOME: 'rel' }, 'linux', '/home/u'),
      '/home/u/.config/notation',
    );
    assert.equal(notationConfigDir({}, 'linux', '/home/u'), '/home/u/.config/notation');
    assert.equal(
      notationConfigDir({}, 'darwin', '/Users/u'),
      '/Users/u/Library/Application Support/notation',
    );
  });
});

describe('loadTrustPolicy: the file notation v1.3.2 reads (audit F4)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'tether-policy-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  let n = 0;
  const doc = (name: string) =>
    JSON.stringify({ version: '1.0', trustPolicies: [statement({ name, registryScopes: ['*'] })] });
  const configDir = (files: Record<string, string>) => {
    const dir = join(tmp, `c${++n}`);
    mkdirSync(dir);
    for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
    return dir;
  };

  test('trustpolicy.json only: trustpolicy.oci.json is never read, whichever exists', async () => {
    const both = configDir({ 'trustpolicy.json': doc('json'), 'trustpolicy.oci.json': doc('oci') });
    assert.equal((await loadTrustPolicy(undefined, both)).trustPolicies[0]?.name, 'json');
    const ociOnly = configDir({ 'trustpolicy.oci.json': doc('oci') });
    await assert.rejects(
      loadTrustPolicy(undefined, ociOnly),
      /no trust policy: create .*trustpolicy\.json.*trustpolicy\.oci\.json is not read/,
    );
    // A broken trustpolicy.oci.json beside a good trustpolicy.json does not matter either.
    const broken = configDir({ 'trustpolicy.json': doc('json'), 'trustpolicy.oci.json': '{' });
    assert.equal((await loadTrustPolicy(undefined, broken)).trustPolicies[0]?.name, 'json');
  });

  test('a symlink or a directory is refused, as notation refuses it; --trust-policy FILE is read as given', async () => {
    const target = join(tmp, 'elsewhere.json');
    writeFileSync(target, doc('linked'));
    const linked = configDir({});
    symlinkSync(target, join(linked, 'trustpolicy.json'));
    await assert.rejects(
      loadTrustPolicy(undefined, linked),
      /not a regular file \(symlinks are not supported/,
    );
    const dir = configDir({});
    mkdirSync(join(dir, 'trustpolicy.json'));
    await assert.rejects(loadTrustPolicy(undefined, dir), /not a regular file/);
    assert.equal((await loadTrustPolicy(join(linked, 'trustpolicy.json'))).trustPolicies[0]?.name, 'linked');
  });
});
