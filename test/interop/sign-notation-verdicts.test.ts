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
    const { notation, tether } = await verdicts(`${host}/${repo}@${image.digest}`);
    assert.deepEqual(
      { notation: notation.code === 0, tether: tether.code === 0 },
      { notation: c.verified, tether: c.tether ?? c.verified },
      `${label}\n--- notation:\n${notation.out}\n--- tether:\n${tether.out}`,
    );
    return { notation: notation.out, tether: tether.out };
  }

  /** Both verifiers on `ref`, under the trust policy and store in place. */
  async function verdicts(ref: string) {
    const notation = await exec('notation', ['verify', '--insecure-registry', ref], env);
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
    });
    await agree('leaf O=" Example" vs identity O=Example', {
      leaf: '/C=US/ST=WA/O= Example/CN=lsp',
      identities: id('C=US, ST=WA, O=Example'),
      verified: false,
    });
    await agree('leaf CN="two  " vs identity CN=two', {
      leaf: '/C=US/ST=WA/O=Example/CN=two  ',
      identities: id('C=US, ST=WA, O=Example, CN=two'),
      verified: false,
    });
    await agree('identity O=Example\\  (escaped space) vs leaf O=Example', {
      identities: id('C=US, ST=WA, O=Example\\ '),
      verified: false,
    });
    await agree('identity O=Example\\20 vs leaf O=Example', {
      identities: id('C=US, ST=WA, O=Example\\20'),
      verified: false,
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
    });
    await agree('a trailing comma makes the policy invalid', {
      identities: id('C=US, ST=WA, O=Example,'),
      verified: false,
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
    });
    assert.match(out.tether, /differs from the field "digest" only in case/);
    await agree('payload {targetArtifact: A, TargetArtifact: B} verifying A', {
      payloadJson: (a) => `{"targetArtifact":${JSON.stringify(a)},"TargetArtifact":${JSON.stringify(b)}}`,
      verified: false,
    });
    await agree('payload with a duplicate "digest" (A, then B) verifying A', {
      payloadJson: (a) =>
        `{"targetArtifact":{"mediaType":"${a.mediaType}","digest":"${a.digest}","size":${a.size},"digest":"${b.digest}"}}`,
      verified: false,
    });
    await agree('payload size written 8.0 (Go cannot decode it into int64)', {
      payloadJson: (a) =>
        `{"targetArtifact":{"mediaType":"${a.mediaType}","digest":"${a.digest}","size":${a.size}.0}}`,
      verified: false,
    });
    await agree('payload urls of the wrong type (Go fails the whole payload)', {
      payloadJson: (a) =>
        `{"targetArtifact":{"mediaType":"${a.mediaType}","digest":"${a.digest}","size":${a.size},"urls":5}}`,
      verified: false,
    });
    // The reverse direction, documented: notation accepts these for the image it reads, Tether refuses
    // every payload with two readings.
    // The image verified is the one named by "Digest"/"Size", so notation passes it.
    const a = await otherImage();
    await agree('payload {digest: A, Digest: B} verifying B', {
      payloadJson: (verified) => mixed(a, verified),
      verified: true,
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
    });
    await agree('Io.cncf.notary.Expiry in the past (notation: expired)', {
      protectedJson: header({ 'Io.cncf.notary.Expiry': past }),
      verified: false,
    });
    await agree('CTY application/json (notation: wrong payload content type)', {
      protectedJson: header({ CTY: 'application/json' }),
      verified: false,
    });
    // Reverse direction, documented: CTY first and cty last reads as the right cty in Go; Tether refuses.
    const standard = standardProtected(new Date(Date.now() - 600_000));
    await agree('CTY before cty', {
      protectedJson: `{"CTY":"application/json",${JSON.stringify(standard).slice(1)}`,
      verified: true,
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
    });
    await agree('only trustpolicy.oci.json', {
      configure: async (dir) => {
        await rm(join(dir, 'trustpolicy.json'));
        await writeFile(join(dir, 'trustpolicy.oci.json'), anyone);
      },
      verified: false,
    });
    await agree('trustpolicy.json is a symlink to a policy that trusts anyone', {
      configure: async (dir) => {
        await writeFile(join(pki, 'linked-policy.json'), anyone);
        await rm(join(dir, 'trustpolicy.json'));
        await symlink(join(pki, 'linked-policy.json'), join(dir, 'trustpolicy.json'));
      },
      verified: false,
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
    });
    await agree('trustpolicy.json trusts, trustpolicy.oci.json refuses (and is ignored)', {
      configure: async (dir) => writeFile(join(dir, 'trustpolicy.oci.json'), nobody),
      verified: true,
    });
  });

  test('leaf attributes Go has no short name for, and #hex identities (F5, F6)', async () => {
    const id = (dn: string) => [`x509.subject: ${dn}`];
    const email = '/C=US/ST=WA/O=Example/CN=mail/emailAddress=a@b.c';
    await agree('leaf with emailAddress, identity C/ST/O', {
      leaf: email,
      identities: id('C=US, ST=WA, O=Example'),
      verified: false,
    });
    await agree('leaf with emailAddress, identity naming it by OID', {
      leaf: email,
      identities: id('C=US, ST=WA, O=Example, 1.2.840.113549.1.9.1=a@b.c'),
      verified: false,
    });
    await agree('leaf with UID', {
      leaf: '/C=US/ST=WA/O=Example/UID=u1/CN=uid',
      identities: id('C=US, ST=WA, O=Example'),
      verified: false,
    });
    await agree('leaf with title, identity naming it by OID', {
      leaf: '/C=US/ST=WA/O=Example/title=Boss/CN=title',
      identities: id('C=US, ST=WA, O=Example, 2.5.4.12=Boss'),
      verified: false,
    });
    await agree('leaf with emailAddress, any identity', { leaf: email, identities: ['*'], verified: true });
    await agree('identity with a BER #hex value', {
      identities: id('C=US, ST=WA, O=#0c074578616d706c65'),
      verified: false,
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
    });
    await agree('identity with an empty OU, leaf without OU', {
      identities: id('C=US, ST=WA, O=Example, OU='),
      verified: true,
    });
    await agree('identity with an empty OU, leaf with an OU', {
      leaf: '/C=US/ST=WA/O=Example/OU=unit/CN=withou',
      identities: id('C=US, ST=WA, O=Example, OU='),
      verified: false,
    });
    await agree('an empty-OU identity overlaps any other (invalid policy)', {
      identities: [...id('C=US, ST=WA, O=Example, OU='), ...id('C=US, ST=WA, O=Example, CN=signer')],
      verified: false,
    });
    await agree('leaf with two OUs', {
      leaf: '/C=US/ST=WA/O=Example/OU=a/OU=b/CN=ou',
      identities: id('C=US, ST=WA, O=Example'),
      verified: false,
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
      if (badFirst)
        assert.match(
          tether.out,
          /unable to retrieve the signature sha256:\w+: a signature manifest has exactly one layer, this has 2/,
        );
    }
  });

  test('signature manifests Go decodes another way: case-variant keys, wrong types', async () => {
    await agree('manifest with "Layers": [] after "layers"', {
      manifestJson: (m) => JSON.stringify(m).replace(/}$/, ',"Layers":[]}'),
      verified: false,
    });
    await agree('manifest with a "Config": 5 Go decodes into config and fails on', {
      manifestJson: (m) => JSON.stringify({ ...m, Config: 5 }),
      verified: false,
    });
  });

  test("Tether's own manifest shape rule: artifactType beside the notary config (F9, documented)", async () => {
    // notation v1.3.2 checks no shape; Tether skips a manifest that is neither Notary shape.
    await agree('artifactType and config both application/vnd.cncf.notary.signature', {
      manifestJson: (m) => JSON.stringify({ ...m, artifactType: 'application/vnd.cncf.notary.signature' }),
      verified: true,
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
    }
  });

  test("a leaf Go's x509 parser refuses: a negative serial number", async () => {
    const negative = opensslLeaf(pki, 'negative', '/C=US/ST=WA/O=Example/CN=negative', 'root', undefined, -5);
    await agree('leaf with serial -5', { signer: negative, verified: false });
    const positive = opensslLeaf(pki, 'positive', '/C=US/ST=WA/O=Example/CN=positive', 'root', undefined, 5);
    await agree('leaf with serial 5 (control)', { signer: positive, verified: true });
  });
});
