import assert from 'node:assert/strict';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { digestOf } from '../../src/oci/digest.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { IMAGE_MANIFEST, pushSmallImage, runToolStatus, startDistribution2 } from '../helpers/interop.ts';
import {
  type CertFiles,
  craftEnvelope,
  opensslLeaf,
  opensslRoot,
  pushSignature,
  standardPayload,
  standardProtected,
  type Target,
} from '../helpers/notary-craft.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

/**
 * One signature, two verifiers: each case signs an image with an independent JWS signer (or a leaf
 * certificate made by openssl), then runs the real notation v1.3.2 and `tether verify` on it under the same
 * trust policy and store, and asserts that both reach the verdict notation reaches. These are the cases
 * where Tether and notation disagreed (the signing audit); "tether passes, notation fails" is the
 * dangerous direction.
 */
const ROOT = new URL('../../', import.meta.url).pathname;
const CLI = join(ROOT, 'src/cli/main.ts');

interface Run {
  code: number;
  out: string;
}

/** A run's status and everything it printed, stdout then stderr. */
async function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  const { code, stdout, stderr } = await runToolStatus(cmd, args, env);
  return { code, out: `${stdout}${stderr}` };
}

/** A pattern matching `text` as it is. */
const esc = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** notation -v: the one signature there is was read and refused for `reason`. */
const notationRefused = (reason: string) =>
  new RegExp(`Signature sha256:[0-9a-f]{64} failed verification with error: ${esc(reason)}`);
/** notation refused before it judged a signature (its trust policy), for `reason`. */
const notationError = (reason: string) => new RegExp(`^Error: ${esc(reason)}`, 'm');
/** notation -v: the leaf's subject matched none of `identities` (as notation parsed them). */
const notationIdentities = (identities: string) =>
  notationRefused(
    `signing certificate from the digital signature does not match the X.509 trusted identities [map[${identities}]] defined in the trust policy "verdicts"`,
  );
/** notation -v: the leaf's subject (as Go prints it) is one notation cannot compare. */
const notationSubject = (reason: string) =>
  notationRefused(
    `error while parsing the certificate subject from the digital signature. error : "${reason}`,
  );
/** notation could not retrieve a signature (it fails the whole verification), for `reason`. */
const notationUnretrievable = (reason: string) =>
  new RegExp(
    `^Error: signature verification failed: unable to retrieve digital signature with digest "sha256:[0-9a-f]{64}" associated with "\\S+" from the Repository, error : ${reason}`,
    'm',
  );
/** Tether judged the signatures and the verification failed for `reason`. */
const tetherRefused = (reason: string) =>
  new RegExp(`^tether: verification of \\S+ failed: ${esc(reason)}`, 'm');
/** Tether refused before it judged a signature (its trust policy), for `reason`. */
const tetherError = (reason: string) => new RegExp(`^tether: ${esc(reason)}`, 'm');
/** Tether could not retrieve a signature (it fails the whole verification, as notation does), for `reason`. */
const tetherUnretrievable = (reason: string) =>
  new RegExp(
    `^tether: verification of \\S+ failed: unable to retrieve the signature sha256:[0-9a-f]{64}: ${esc(reason)}`,
    'm',
  );
const tetherIdentities = (leaf: string, identity: string) =>
  tetherRefused(
    `authenticity: signing certificate from the digital signature ("${leaf}") does not match the X.509 trusted identities ["x509.subject: ${identity}"] defined in the trust policy "verdicts"`,
  );
const tetherSubject = (reason: string) =>
  tetherRefused(
    `authenticity: error while parsing the certificate subject from the digital signature: ${reason}`,
  );
const tetherPayload = (reason: string) =>
  tetherRefused(`integrity: unable to verify the digital signature (INVALID_PAYLOAD): ${reason}`);
const tetherHeader = (reason: string) =>
  tetherRefused(`integrity: unable to verify the digital signature (MALFORMED_ENVELOPE): ${reason}`);

/**
 * Both verdicts came with their reasons: a pass says what passed; a refusal must match the reason the
 * case expects, so a tool that refused for an unrelated reason (a misnamed trust store, a config
 * directory not read) fails the test instead of agreeing.
 */
function assertReasons(
  label: string,
  ref: string,
  expected: { notation: boolean; tether: boolean; skip?: boolean },
  says: { notationSays?: RegExp; tetherSays?: RegExp },
  runs: { notation: Run; tether: Run },
) {
  const context = `${label}\n--- notation:\n${runs.notation.out}\n--- tether:\n${runs.tether.out}`;
  const notationPass = expected.skip
    ? `Trust policy is configured to skip signature verification for ${ref}`
    : `Successfully verified signature for ${ref}`;
  const notationSays = expected.notation ? new RegExp(esc(notationPass)) : says.notationSays;
  const tetherSays = expected.tether ? new RegExp(`^verified ${esc(ref)}`, 'm') : says.tetherSays;
  if (!notationSays) throw new Error(`${label}: notation refuses; the case must say why (notationSays)`);
  if (!tetherSays) throw new Error(`${label}: Tether refuses; the case must say why (tetherSays)`);
  assert.match(runs.notation.out, notationSays, context);
  assert.match(runs.tether.out, tetherSays, context);
}

interface Case {
  /** openssl `-subj` of the signing leaf (default `/C=US/ST=WA/O=Example/CN=signer`). */
  leaf?: string;
  /** The signing leaf itself, when a subject is not enough to say which. */
  signer?: CertFiles;
  identities?: string[];
  level?: string;
  /** The protected header JSON text (default notation's, as `standardProtected`). */
  protectedJson?: string;
  /** The payload JSON text for the image (default `{"targetArtifact":…}`). */
  payloadJson?: (target: Target) => string;
  /** notation's verdict, which Tether must reach too. */
  verified: boolean;
  /**
   * Why notation refuses (required when it does): matched in `notation verify -v`'s output, so a notation
   * that failed for another reason (or never ran) does not count as agreeing.
   */
  notationSays?: RegExp;
  /** Why Tether refuses (required when it does), matched in its output. */
  tetherSays?: RegExp;
  /**
   * Tether's verdict where it is deliberately stricter than notation (documented in docs/signing.md):
   * only `false` with `verified: true`. Tether passing where notation fails is never expected.
   */
  tether?: false;
  /** Rewrites the signature manifest's JSON text. */
  manifestJson?: (manifest: Record<string, unknown>) => string;
  /**
   * Push to Distribution 2.8 (no referrers API: the signature is found through its fallback tag), for
   * signature manifests Tether itself refuses, such as a layer descriptor of the wrong size.
   */
  onDistribution?: boolean;
  /** Runs after trustpolicy.json is written, to change the configuration directory. */
  configure?: (config: string) => Promise<void>;
}

describe('verdicts agree with notation v1.3.2 on the same signature', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let reg: RunningRegistry;
  let distribution: { host: string; stop(): void };
  let pki: string;
  let config: string;
  let env: NodeJS.ProcessEnv;
  const leaves = new Map<string, CertFiles>();
  let counter = 0;

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    reg = await startRegistry({ storage: { data: join(dir, 'tether') } });
    distribution = await startDistribution2(dir);
    pki = join(dir, 'pki');
    config = join(dir, 'notation');
    await mkdir(pki, { recursive: true });
    const root = opensslRoot(pki, 'root', '/C=US/ST=WA/O=Example/CN=Root');
    await mkdir(join(config, 'truststore/x509/ca/t'), { recursive: true });
    await writeFile(join(config, 'truststore/x509/ca/t/root.pem'), root.certPem);
    env = { HOME: join(dir, 'home'), XDG_CONFIG_HOME: join(dir, 'home/.config'), NOTATION_CONFIG: config };
  });
  after(async () => {
    distribution?.stop();
    await reg?.close();
    await cleanup?.();
  });

  function leaf(subject: string): CertFiles {
    let files = leaves.get(subject);
    if (!files) {
      files = opensslLeaf(pki, `leaf${leaves.size}`, subject, 'root');
      leaves.set(subject, files);
    }
    return files;
  }

  function policyText(identities: string[], level: string) {
    return JSON.stringify({
      version: '1.0',
      trustPolicies: [
        {
          name: 'verdicts',
          registryScopes: ['*'],
          signatureVerification: { level },
          // Level skip takes neither (a policy with them is invalid).
          ...(level === 'skip' ? {} : { trustStores: ['ca:t'], trustedIdentities: identities }),
        },
      ],
    });
  }

  async function policy(identities: string[], level: string) {
    for (const f of ['trustpolicy.json', 'trustpolicy.oci.json']) await rm(join(config, f), { force: true });
    await writeFile(join(config, 'trustpolicy.json'), policyText(identities, level));
  }

  /** Signs a fresh image as `c` says, runs both verifiers, and asserts both reach `c.verified`. */
  async function agree(label: string, c: Case) {
    const repo = 'verdicts/app';
    const host = c.onDistribution ? distribution.host : reg.host;
    const image = await pushSmallImage(host, repo, `c${++counter}`);
    const target: Target = { mediaType: IMAGE_MANIFEST, digest: image.digest, size: image.size };
    const envelope = craftEnvelope({
      signer: c.signer ?? leaf(c.leaf ?? '/C=US/ST=WA/O=Example/CN=signer'),
      protectedJson: c.protectedJson ?? JSON.stringify(standardProtected()),
      payloadJson: (c.payloadJson ?? standardPayload)(target),
    });
    await pushSignature(host, repo, target, envelope, c.manifestJson);
    await policy(c.identities ?? ['*'], c.level ?? 'strict');
    await c.configure?.(config);
    const ref = `${host}/${repo}@${image.digest}`;
    const { notation, tether } = await verdicts(ref);
    const expected = { notation: c.verified, tether: c.tether ?? c.verified };
    assert.deepEqual(
      { notation: notation.code === 0, tether: tether.code === 0 },
      expected,
      `${label}\n--- notation:\n${notation.out}\n--- tether:\n${tether.out}`,
    );
    assertReasons(label, ref, { ...expected, skip: c.level === 'skip' }, c, { notation, tether });
    return { notation: notation.out, tether: tether.out };
  }

  /** Both verifiers on `ref`, under the trust policy and store in place (notation -v says why it refuses). */
  async function verdicts(ref: string) {
    const notation = await exec('notation', ['verify', '-v', '--insecure-registry', ref], env);
    const tether = await exec(process.execPath, [CLI, 'verify', ref], env);
    return { notation, tether };
  }

  /** Another image in the same repository, to be named in a payload. */
  async function otherImage(): Promise<Target> {
    const image = await pushSmallImage(reg.host, 'verdicts/app', `o${++counter}`);
    return { mediaType: IMAGE_MANIFEST, digest: image.digest, size: image.size };
  }

  test('trusted identities: escaped and unescaped spaces around values (F1)', async () => {
    const id = (dn: string) => [`x509.subject: ${dn}`];
    await agree('leaf O="Example " vs identity O=Example', {
      leaf: '/C=US/ST=WA/O=Example /CN=sp',
      identities: id('C=US, ST=WA, O=Example'),
      verified: false,
      notationSays: notationIdentities('"C":"US" "O":"Example" "ST":"WA"'),
      tetherSays: tetherIdentities('C=US, ST=WA, O=Example\\ , CN=sp', 'C=US, ST=WA, O=Example'),
    });
    await agree('leaf O=" Example" vs identity O=Example', {
      leaf: '/C=US/ST=WA/O= Example/CN=lsp',
      identities: id('C=US, ST=WA, O=Example'),
      verified: false,
      notationSays: notationIdentities('"C":"US" "O":"Example" "ST":"WA"'),
      tetherSays: tetherIdentities('C=US, ST=WA, O=\\ Example, CN=lsp', 'C=US, ST=WA, O=Example'),
    });
    await agree('leaf CN="two  " vs identity CN=two', {
      leaf: '/C=US/ST=WA/O=Example/CN=two  ',
      identities: id('C=US, ST=WA, O=Example, CN=two'),
      verified: false,
      notationSays: notationIdentities('"C":"US" "CN":"two" "O":"Example" "ST":"WA"'),
      tetherSays: tetherIdentities('C=US, ST=WA, O=Example, CN=two \\ ', 'C=US, ST=WA, O=Example, CN=two'),
    });
    await agree('identity O=Example\\  (escaped space) vs leaf O=Example', {
      identities: id('C=US, ST=WA, O=Example\\ '),
      verified: false,
      // notation parsed the escaped space into the value.
      notationSays: notationIdentities('"C":"US" "O":"Example " "ST":"WA"'),
      tetherSays: tetherIdentities('C=US, ST=WA, O=Example, CN=signer', 'C=US, ST=WA, O=Example\\\\ '),
    });
    await agree('identity O=Example\\20 vs leaf O=Example', {
      identities: id('C=US, ST=WA, O=Example\\20'),
      verified: false,
      notationSays: notationIdentities('"C":"US" "O":"Example " "ST":"WA"'),
      tetherSays: tetherIdentities('C=US, ST=WA, O=Example, CN=signer', 'C=US, ST=WA, O=Example\\\\20'),
    });
    await agree('identity O=Example\\  matches leaf O="Example "', {
      leaf: '/C=US/ST=WA/O=Example /CN=sp',
      identities: id('C=US, ST=WA, O=Example\\ '),
      verified: true,
    });
    await agree('identity CN=two \\  matches leaf CN="two  "', {
      leaf: '/C=US/ST=WA/O=Example/CN=two  ',
      identities: id('C=US, ST=WA, O=Example, CN=two \\ '),
      verified: true,
    });
    await agree('unescaped spaces around types and values are not part of them', {
      identities: id('  C = US ,ST=WA,   O =  Example   '),
      verified: true,
    });
    await agree('a non-hex escape makes the policy invalid', {
      identities: id('C=US, ST=WA, O=Ex\\ample'),
      verified: false,
      notationSays:
        /^Error: trust policy: trust policy statement "verdicts" has trusted identity .* failed to decode escaped character: encoding\/hex: invalid byte: U\+006D 'm'/m,
      tetherSays:
        /^tether: trust policy statement "verdicts" has trusted identity .* failed to decode escaped character: invalid hex escape "\\am"/m,
    });
    await agree('a trailing comma makes the policy invalid', {
      identities: id('C=US, ST=WA, O=Example,'),
      verified: false,
      notationSays:
        /^Error: trust policy: trust policy statement "verdicts" has trusted identity "x509\.subject: C=US, ST=WA, O=Example," .*DN ended with incomplete type, value pair/m,
      tetherSays:
        /^tether: trust policy statement "verdicts" has trusted identity "x509\.subject: C=US, ST=WA, O=Example," .*DN ended with incomplete type, value pair/m,
    });
  });

  test('payload keys Go matches case-insensitively or twice: one signature must not name two images (F2)', async () => {
    const b = await otherImage();
    const mixed = (a: Target, x: Target) =>
      `{"targetArtifact":{"mediaType":"${a.mediaType}","digest":"${a.digest}","size":${a.size},"Digest":"${x.digest}","Size":${x.size}}}`;
    // notation reads the last case-insensitive match: B. Tether used to read A and pass.
    const out = await agree('payload {digest: A, Digest: B} verifying A', {
      payloadJson: (a) => mixed(a, b),
      verified: false,
      // notation read B, which is not the image verified.
      notationSays: notationRefused('content descriptor mismatch'),
      tetherSays: tetherPayload(
        'payload.targetArtifact has the key "Digest", which differs from the field "digest" only in case',
      ),
    });
    assert.match(out.tether, /differs from the field "digest" only in case/);
    await agree('payload {targetArtifact: A, TargetArtifact: B} verifying A', {
      payloadJson: (a) => `{"targetArtifact":${JSON.stringify(a)},"TargetArtifact":${JSON.stringify(b)}}`,
      verified: false,
      notationSays: notationRefused('content descriptor mismatch'),
      tetherSays: tetherPayload(
        'payload has the key "TargetArtifact", which differs from the field "targetArtifact" only in case',
      ),
    });
    await agree('payload with a duplicate "digest" (A, then B) verifying A', {
      payloadJson: (a) =>
        `{"targetArtifact":{"mediaType":"${a.mediaType}","digest":"${a.digest}","size":${a.size},"digest":"${b.digest}"}}`,
      verified: false,
      notationSays: notationRefused('content descriptor mismatch'),
      tetherSays: tetherPayload('payload is not valid JSON: duplicate key "digest"'),
    });
    await agree('payload size written 8.0 (Go cannot decode it into int64)', {
      payloadJson: (a) =>
        `{"targetArtifact":{"mediaType":"${a.mediaType}","digest":"${a.digest}","size":${a.size}.0}}`,
      verified: false,
      notationSays:
        /failed verification with error: json: cannot unmarshal number \d+\.0 into Go struct field Descriptor\.targetArtifact\.size of type int64/,
      tetherSays:
        /\(INVALID_PAYLOAD\): payload\.targetArtifact\.size must be an integer literal within int64, not \d+\.0/,
    });
    await agree('payload urls of the wrong type (Go fails the whole payload)', {
      payloadJson: (a) =>
        `{"targetArtifact":{"mediaType":"${a.mediaType}","digest":"${a.digest}","size":${a.size},"urls":5}}`,
      verified: false,
      notationSays: notationRefused(
        'json: cannot unmarshal number into Go struct field Descriptor.targetArtifact.urls of type []string',
      ),
      tetherSays: tetherPayload('payload.targetArtifact.urls must be an array, not number'),
    });
    // The reverse direction, documented: notation accepts these for the image it reads, Tether refuses
    // every payload with two readings.
    // The image verified is the one named by "Digest"/"Size", so notation passes it.
    const a = await otherImage();
    await agree('payload {digest: A, Digest: B} verifying B', {
      payloadJson: (verified) => mixed(a, verified),
      verified: true,
      tetherSays: tetherPayload(
        'payload.targetArtifact has the key "Digest", which differs from the field "digest" only in case',
      ),
      tether: false,
    });
  });

  test('protected header keys Go matches case-insensitively (F3)', async () => {
    const past = new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
    const future = new Date(Date.now() + 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
    const header = (extra: Record<string, unknown>) =>
      JSON.stringify({ ...standardProtected(new Date(Date.now() - 600_000)), ...extra });
    await agree('IO.CNCF.NOTARY.EXPIRY in the past beside a future expiry', {
      protectedJson: header({
        crit: ['io.cncf.notary.signingScheme', 'io.cncf.notary.expiry'],
        'io.cncf.notary.expiry': future,
        'IO.CNCF.NOTARY.EXPIRY': past,
      }),
      verified: false,
      notationSays: notationRefused('digital signature has expired on'),
      tetherSays: tetherHeader(
        'protected header has the key "IO.CNCF.NOTARY.EXPIRY", which differs from the field "io.cncf.notary.expiry" only in case',
      ),
    });
    await agree(
      'Io.cncf.notary.Expiry in the past (notation reads it as the expiry, which crit does not name)',
      {
        protectedJson: header({ 'Io.cncf.notary.Expiry': past }),
        verified: false,
        notationSays: notationRefused(
          'these required headers are not marked as critical: [io.cncf.notary.expiry]',
        ),
        tetherSays: tetherHeader(
          'protected header has the key "Io.cncf.notary.Expiry", which differs from the field "io.cncf.notary.expiry" only in case',
        ),
      },
    );
    await agree('CTY application/json (notation: wrong payload content type)', {
      protectedJson: header({ CTY: 'application/json' }),
      verified: false,
      notationSays: notationRefused('payload content type "application/json" not supported'),
      tetherSays: tetherHeader(
        'protected header has the key "CTY", which differs from the field "cty" only in case',
      ),
    });
    // Reverse direction, documented: CTY first and cty last reads as the right cty in Go; Tether refuses.
    const standard = standardProtected(new Date(Date.now() - 600_000));
    await agree('CTY before cty', {
      protectedJson: `{"CTY":"application/json",${JSON.stringify(standard).slice(1)}`,
      verified: true,
      tetherSays: tetherHeader(
        'protected header has the key "CTY", which differs from the field "cty" only in case',
      ),
      tether: false,
    });
  });

  test('which trust policy file: trustpolicy.json only, as a regular file (F4)', async () => {
    const nobody = policyText(['x509.subject: C=US, ST=WA, O=Nobody'], 'strict');
    const anyone = policyText(['*'], 'strict');
    await agree('trustpolicy.json refuses the signer, trustpolicy.oci.json trusts anyone', {
      configure: async (dir) => {
        await writeFile(join(dir, 'trustpolicy.json'), nobody);
        await writeFile(join(dir, 'trustpolicy.oci.json'), anyone);
      },
      verified: false,
      notationSays: notationIdentities('"C":"US" "O":"Nobody" "ST":"WA"'),
      tetherSays: tetherIdentities('C=US, ST=WA, O=Example, CN=signer', 'C=US, ST=WA, O=Nobody'),
    });
    await agree('only trustpolicy.oci.json', {
      configure: async (dir) => {
        await rm(join(dir, 'trustpolicy.json'));
        await writeFile(join(dir, 'trustpolicy.oci.json'), anyone);
      },
      verified: false,
      notationSays: notationError('trust policy is not present.'),
      tetherSays:
        /^tether: no trust policy: create \S+\/trustpolicy\.json .*trustpolicy\.oci\.json is not read/m,
    });
    await agree('trustpolicy.json is a symlink to a policy that trusts anyone', {
      configure: async (dir) => {
        await writeFile(join(pki, 'linked-policy.json'), anyone);
        await rm(join(dir, 'trustpolicy.json'));
        await symlink(join(pki, 'linked-policy.json'), join(dir, 'trustpolicy.json'));
      },
      verified: false,
      notationSays: notationError('trust policy is not a regular file (symlinks are not supported)'),
      tetherSays:
        /^tether: the trust policy \S+\/trustpolicy\.json is not a regular file \(symlinks are not supported/m,
    });
    // notation reads the last of two case-insensitive matches (strict); Tether used to read the exact
    // key (audit, which only logs the untrusted identity).
    const auditNobody = policyText(['x509.subject: C=US, ST=WA, O=Nobody'], 'audit');
    await agree('"trustPolicies" at level audit, then "TrustPolicies" at level strict', {
      configure: async (dir) => {
        const statements = (text: string) => JSON.stringify(JSON.parse(text).trustPolicies);
        await writeFile(
          join(dir, 'trustpolicy.json'),
          `{"version":"1.0","trustPolicies":${statements(auditNobody)},"TrustPolicies":${statements(nobody)}}`,
        );
      },
      verified: false,
      // notation judged by the strict statement (the audit one would have passed).
      notationSays: notationIdentities('"C":"US" "O":"Nobody" "ST":"WA"'),
      tetherSays: tetherError(
        'malformed trust policy: the trust policy has the key "TrustPolicies", which differs from the field "trustPolicies" only in case',
      ),
    });
    await agree('trustpolicy.json trusts, trustpolicy.oci.json refuses (and is ignored)', {
      configure: async (dir) => writeFile(join(dir, 'trustpolicy.oci.json'), nobody),
      verified: true,
    });
  });

  test('leaf attributes Go has no short name for, and #hex identities (F5, F6)', async () => {
    // The leaves' subjects as Go prints them: the attributes it has no short name for by OID and BER hex.
    const EMAIL_DN = 'CN=mail,O=Example,ST=WA,C=US,1.2.840.113549.1.9.1=#0c056140622e63';
    const UID_DN = 'CN=uid,O=Example,ST=WA,C=US,0.9.2342.19200300.100.1.1=#13027531';
    const TITLE_DN = 'CN=title,O=Example,ST=WA,C=US,2.5.4.12=#1304426f7373';
    const id = (dn: string) => [`x509.subject: ${dn}`];
    const email = '/C=US/ST=WA/O=Example/CN=mail/emailAddress=a@b.c';
    await agree('leaf with emailAddress, identity C/ST/O', {
      leaf: email,
      identities: id('C=US, ST=WA, O=Example'),
      verified: false,
      notationSays: notationSubject(`unsupported distinguished name (DN) \\"${EMAIL_DN}\\"`),
      tetherSays: tetherSubject(`unsupported distinguished name (DN) "${EMAIL_DN}"`),
    });
    await agree('leaf with emailAddress, identity naming it by OID', {
      leaf: email,
      identities: id('C=US, ST=WA, O=Example, 1.2.840.113549.1.9.1=a@b.c'),
      verified: false,
      notationSays: notationSubject(`unsupported distinguished name (DN) \\"${EMAIL_DN}\\"`),
      tetherSays: tetherSubject(`unsupported distinguished name (DN) "${EMAIL_DN}"`),
    });
    await agree('leaf with UID', {
      leaf: '/C=US/ST=WA/O=Example/UID=u1/CN=uid',
      identities: id('C=US, ST=WA, O=Example'),
      verified: false,
      notationSays: notationSubject(`unsupported distinguished name (DN) \\"${UID_DN}\\"`),
      tetherSays: tetherSubject(`unsupported distinguished name (DN) "${UID_DN}"`),
    });
    await agree('leaf with title, identity naming it by OID', {
      leaf: '/C=US/ST=WA/O=Example/title=Boss/CN=title',
      identities: id('C=US, ST=WA, O=Example, 2.5.4.12=Boss'),
      verified: false,
      notationSays: notationSubject(`unsupported distinguished name (DN) \\"${TITLE_DN}\\"`),
      tetherSays: tetherSubject(`unsupported distinguished name (DN) "${TITLE_DN}"`),
    });
    await agree('leaf with emailAddress, any identity', { leaf: email, identities: ['*'], verified: true });
    await agree('identity with a BER #hex value', {
      identities: id('C=US, ST=WA, O=#0c074578616d706c65'),
      verified: false,
      notationSays: notationError(
        'trust policy: trust policy statement "verdicts" has trusted identity "x509.subject: C=US, ST=WA, O=#0c074578616d706c65" with invalid identity value: unsupported distinguished name (DN)',
      ),
      tetherSays: tetherError(
        'trust policy statement "verdicts" has trusted identity "x509.subject: C=US, ST=WA, O=#0c074578616d706c65" with invalid identity value: unsupported distinguished name (DN)',
      ),
    });
  });

  test("leaf subjects regrouped as Go's Subject.String() does, empty identity values (F10)", async () => {
    const id = (dn: string) => [`x509.subject: ${dn}`];
    await agree('leaf with two CNs: the last one counts', {
      leaf: '/C=US/ST=WA/O=Example/CN=first/CN=last',
      identities: id('C=US, ST=WA, O=Example, CN=last'),
      verified: true,
    });
    await agree('leaf with two CNs: the first one does not', {
      leaf: '/C=US/ST=WA/O=Example/CN=first/CN=last',
      identities: id('C=US, ST=WA, O=Example, CN=first'),
      verified: false,
      notationSays: notationIdentities('"C":"US" "CN":"first" "O":"Example" "ST":"WA"'),
      tetherSays: tetherIdentities(
        'C=US, ST=WA, O=Example, CN=first, CN=last',
        'C=US, ST=WA, O=Example, CN=first',
      ),
    });
    await agree('identity with an empty OU, leaf without OU', {
      identities: id('C=US, ST=WA, O=Example, OU='),
      verified: true,
    });
    await agree('identity with an empty OU, leaf with an OU', {
      leaf: '/C=US/ST=WA/O=Example/OU=unit/CN=withou',
      identities: id('C=US, ST=WA, O=Example, OU='),
      verified: false,
      notationSays: notationIdentities('"C":"US" "O":"Example" "OU":"" "ST":"WA"'),
      tetherSays: tetherIdentities(
        'C=US, ST=WA, O=Example, OU=unit, CN=withou',
        'C=US, ST=WA, O=Example, OU=',
      ),
    });
    await agree('an empty-OU identity overlaps any other (invalid policy)', {
      identities: [...id('C=US, ST=WA, O=Example, OU='), ...id('C=US, ST=WA, O=Example, CN=signer')],
      verified: false,
      notationSays: notationError(
        'trust policy: trust policy statement "verdicts" has overlapping x509 trustedIdentities',
      ),
      tetherSays: tetherError('trust policy statement "verdicts" has overlapping x509 trustedIdentities'),
    });
    await agree('leaf with two OUs', {
      leaf: '/C=US/ST=WA/O=Example/OU=a/OU=b/CN=ou',
      identities: id('C=US, ST=WA, O=Example'),
      verified: false,
      notationSays: notationSubject(
        'distinguished name (DN) \\"CN=ou,OU=a+OU=b,O=Example,ST=WA,C=US\\" has multi-valued RDN attributes',
      ),
      tetherSays: tetherSubject(
        'distinguished name (DN) "CN=ou,OU=a+OU=b,O=Example,ST=WA,C=US" has multi-valued RDN attributes',
      ),
    });
  });

  test('level skip reads no signature, so a malformed one cannot fail it (F8)', async () => {
    // Tether refuses a descriptor whose size is not its blob's (400 MANIFEST_INVALID); Distribution
    // takes it.
    await agree('skip, signature manifest whose layer descriptor has the wrong size', {
      onDistribution: true,
      level: 'skip',
      manifestJson: (m) => JSON.stringify({ ...m, layers: [{ ...(m.layers as object[])[0], size: 10 }] }),
      verified: true,
    });
    await agree('skip, signature manifest with two layers', {
      level: 'skip',
      manifestJson: (m) =>
        JSON.stringify({ ...m, layers: [...(m.layers as object[]), ...(m.layers as object[])] }),
      verified: true,
    });
    await agree('strict, the same wrong layer size', {
      onDistribution: true,
      manifestJson: (m) => JSON.stringify({ ...m, layers: [{ ...(m.layers as object[])[0], size: 10 }] }),
      verified: false,
      notationSays: notationUnretrievable('GET "\\S+/blobs/sha256:[0-9a-f]{64}": mismatch Content-Length'),
      tetherSays:
        /^tether: verification of \S+ failed: unable to retrieve the signature sha256:\w+: envelope: blob sha256:\w+: the registry sends \d+ bytes, its descriptor says 10$/m,
    });
  });

  test('a signing time before the leaf was issued: only the validity now counts (F7)', async () => {
    // The default leaf was issued an hour ago; its root a day ago.
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    for (const level of ['strict', 'permissive', 'audit']) {
      await agree(`${level}, notary.x509 signing time 2 h ago`, {
        level,
        protectedJson: JSON.stringify(standardProtected(twoHoursAgo)),
        verified: true,
      });
    }
  });

  test('a signature notation cannot retrieve fails the verification when it is listed before a good one', async () => {
    const repo = 'verdicts/app';
    // Referrers are listed by digest: a nonce annotation puts the broken manifest before or after the good.
    const twoLayers = (good: string, before: boolean) => (m: Record<string, unknown>) => {
      for (let nonce = 0; ; nonce++) {
        const text = JSON.stringify({
          ...m,
          layers: [...(m.layers as object[]), ...(m.layers as object[])],
          annotations: { ...(m.annotations as object), nonce: String(nonce) },
        });
        if (digestOf('sha256', Buffer.from(text)) < good === before) return text;
      }
    };
    await policy(['*'], 'strict');
    for (const badFirst of [true, false]) {
      const image = await otherImage();
      const envelope = craftEnvelope({
        signer: leaf('/C=US/ST=WA/O=Example/CN=signer'),
        protectedJson: JSON.stringify(standardProtected()),
        payloadJson: standardPayload(image),
      });
      const good = await pushSignature(reg.host, repo, image, envelope);
      await pushSignature(reg.host, repo, image, envelope, twoLayers(good, badFirst));
      const { notation, tether } = await verdicts(`${reg.host}/${repo}@${image.digest}`);
      assert.deepEqual(
        { notation: notation.code === 0, tether: tether.code === 0 },
        { notation: !badFirst, tether: !badFirst },
        `bad first: ${badFirst}\n--- notation:\n${notation.out}\n--- tether:\n${tether.out}`,
      );
      const context = `bad first: ${badFirst}\n--- notation:\n${notation.out}\n--- tether:\n${tether.out}`;
      assert.match(
        notation.out,
        badFirst
          ? notationUnretrievable('signature manifest requries exactly one signature envelope blob, got 2')
          : new RegExp(esc(`Successfully verified signature for ${reg.host}/${repo}@${image.digest}`)),
        context,
      );
      if (!badFirst)
        assert.match(tether.out, new RegExp(`^verified ${esc(`${reg.host}/${repo}@${image.digest}`)}`, 'm'));
      if (badFirst)
        assert.match(
          tether.out,
          /unable to retrieve the signature sha256:\w+: a signature manifest has exactly one layer, this has 2/,
        );
    }
  });

  test('signature manifests Go decodes another way: a case-variant key (pushed to Distribution 2.8)', async () => {
    // Control: the same rewrite path with the manifest left as it is verifies in both.
    await agree('manifest rewritten unchanged (control)', {
      manifestJson: (m) => JSON.stringify(m),
      verified: true,
    });
    // Tether refuses a member spelled like a field in another case (400 MANIFEST_INVALID); Distribution
    // 2.8 takes it, so both verifiers meet it through the fallback tag.
    await agree('manifest with "Layers": [] after "layers"', {
      manifestJson: (m) => JSON.stringify(m).replace(/}$/, ',"Layers":[]}'),
      onDistribution: true,
      verified: false,
      notationSays: notationUnretrievable(
        'signature manifest requries exactly one signature envelope blob, got 0',
      ),
      tetherSays: tetherUnretrievable(
        'signature manifest has the key "Layers", which differs from the field "layers" only in case',
      ),
    });
    // A "Config": 5 beside "config" (Go decodes it into config and fails) can no longer be pushed to either
    // registry: Tether refuses the case variant and Distribution 2.8 the number. The verifier's refusal
    // of case variants is also a unit test (test/unit/sign-registry.test.ts).
  });

  test("Tether's own manifest shape rule: artifactType beside the notary config (F9, documented)", async () => {
    // notation v1.3.2 checks no shape; Tether skips a manifest that is neither Notary shape.
    await agree('artifactType and config both application/vnd.cncf.notary.signature', {
      manifestJson: (m) => JSON.stringify({ ...m, artifactType: 'application/vnd.cncf.notary.signature' }),
      verified: true,
      tetherSays: tetherRefused(
        'not a valid Notary Project signature manifest (neither artifactType nor config shape)',
      ),
      tether: false,
    });
  });

  test('OCI layouts: only what notation v1.3.2 lists there is a signature (the config shape)', async () => {
    await policy(['*'], 'strict');
    const image = await otherImage();
    const signer = leaf('/C=US/ST=WA/O=Example/CN=signer');
    await writeFile(join(pki, 'layout-chain.pem'), signer.chainPem);
    await writeFile(join(pki, 'layout-leaf.key'), signer.keyPem);
    for (const [shape, verified] of [
      ['artifactType', false],
      ['config', true],
    ] as const) {
      const layout = join(dir, `layout-${shape}`);
      const copied = await exec(
        process.execPath,
        [CLI, 'cp', `${reg.host}/verdicts/app@${image.digest}`, `oci:${layout}:v1`],
        env,
      );
      assert.equal(copied.code, 0, copied.out);
      const signed = await exec(
        process.execPath,
        [
          CLI,
          'sign',
          `oci:${layout}@${image.digest}`,
          '--key',
          join(pki, 'layout-leaf.key'),
          '--cert',
          join(pki, 'layout-chain.pem'),
          '--shape',
          shape,
        ],
        env,
      );
      assert.equal(signed.code, 0, signed.out);
      const notation = await exec(
        'notation',
        ['verify', '--oci-layout', '--scope', 'local/demo', `${layout}@${image.digest}`],
        { ...env, NOTATION_EXPERIMENTAL: '1' },
      );
      const tether = await exec(
        process.execPath,
        [CLI, 'verify', `oci:${layout}@${image.digest}`, '--scope', 'local/demo'],
        env,
      );
      assert.deepEqual(
        { notation: notation.code === 0, tether: tether.code === 0 },
        { notation: verified, tether: verified },
        `--shape ${shape}\n--- notation:\n${notation.out}\n--- tether:\n${tether.out}`,
      );
      const context = `--shape ${shape}\n--- notation:\n${notation.out}\n--- tether:\n${tether.out}`;
      if (verified) {
        assert.match(
          notation.out,
          new RegExp(esc(`Successfully verified signature for ${layout}@${image.digest}`)),
          context,
        );
        assert.match(tether.out, new RegExp(`^verified local/demo@${image.digest}`, 'm'), context);
      } else {
        // notation lists no signature there; Tether says why it does not take the one there is.
        assert.match(
          notation.out,
          notationError(
            `signature verification failed: no signature is associated with "local/demo@${image.digest}"`,
          ),
          context,
        );
        assert.match(
          tether.out,
          /notation v1\.3\.2 does not take it for a signature in an OCI layout: its config media type is "application\/vnd\.oci\.empty\.v1\+json"/,
          context,
        );
      }
    }
  });

  test("a leaf Go's x509 parser refuses: a negative serial number", async () => {
    const negative = opensslLeaf(pki, 'negative', '/C=US/ST=WA/O=Example/CN=negative', 'root', undefined, -5);
    await agree('leaf with serial -5', {
      signer: negative,
      verified: false,
      notationSays: notationRefused('malformed leaf certificate'),
      tetherSays: tetherRefused(
        "integrity: unable to verify the digital signature (INVALID_CERTIFICATE_CHAIN): certificate has a negative serial number, which Go's x509 parser refuses",
      ),
    });
    const positive = opensslLeaf(pki, 'positive', '/C=US/ST=WA/O=Example/CN=positive', 'root', undefined, 5);
    await agree('leaf with serial 5 (control)', { signer: positive, verified: true });
  });
});
