import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/client/client.ts';
import { parseImageReference } from '../../src/client/reference.ts';
import { digestOf } from '../../src/oci/digest.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { certGenerateArgs } from '../helpers/cli.ts';
import { pushSmallImage, runToolStatus, startDistribution2 } from '../helpers/interop.ts';
import { tempDataDir } from '../helpers/tether-process.ts';
import { strictTrustPolicy } from '../helpers/trust-policy.ts';

/**
 * Notary Project signatures between Tether and the real notation v1.3.2, both ways, on Tether (referrers
 * API) and on Debian's Distribution 2.8 (fallback tag), with an ECDSA P-384 and an RSA-3072 key.
 */
const ROOT = new URL('../../', import.meta.url).pathname;
const CLI = join(ROOT, 'src/cli/main.ts');
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface Run {
  code: number;
  out: string;
  err: string;
}

async function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  const { code, stdout, stderr } = await runToolStatus(cmd, args, env);
  return { code, out: stdout, err: stderr };
}

async function ok(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const r = await exec(cmd, args, env);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.out}\n${r.err}`);
  return r.out;
}

const tether = (args: string[], env: NodeJS.ProcessEnv) => exec(process.execPath, [CLI, ...args], env);

const anonymous = new RegistryClient({ credentials: async () => undefined });

/** Pushes a small image with Tether's client; returns its digest. */
const pushImage = async (host: string, repo: string, tag: string) =>
  (await pushSmallImage(host, repo, tag)).digest;

describe('signing interop with notation v1.3.2', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let reg: RunningRegistry;
  let stopDistribution: (() => void) | undefined;
  let distHost: string;

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    reg = await startRegistry({ storage: { data: join(dir, 'tether') } });
    ({ host: distHost, stop: stopDistribution } = await startDistribution2(dir));
  });
  after(async () => {
    stopDistribution?.();
    await reg?.close();
    await cleanup?.();
  });

  /**
   * One notation configuration per key type: `tether cert generate` makes the chain and trusts its root
   * in notation's trust store; notation signs with the same key (signingkeys.json); one strict policy.
   */
  async function setup(keyType: string) {
    const home = join(dir, keyType);
    const config = join(home, 'notation');
    const env = { HOME: home, DOCKER_CONFIG: join(home, 'docker'), NOTATION_CONFIG: config };
    await mkdir(config, { recursive: true });
    await ok(process.execPath, [CLI, ...certGenerateArgs(join(home, 'keys'), 'tether', { keyType })], env);
    await writeFile(
      join(config, 'signingkeys.json'),
      JSON.stringify({
        default: 'tether',
        keys: [
          {
            name: 'tether',
            keyPath: join(home, 'keys', 'leaf.key'),
            certPath: join(home, 'keys', 'chain.pem'),
          },
        ],
      }),
    );
    const policy = (identities: string[], stores = ['ca:tether']) =>
      strictTrustPolicy({
        name: 'interop',
        registryScopes: ['*'],
        trustStores: stores,
        trustedIdentities: identities,
      });
    await writeFile(join(config, 'trustpolicy.json'), policy(['x509.subject: C=US, ST=WA, O=Tether Test']));
    await writeFile(
      join(config, 'trustpolicy.oci.json'),
      policy(['x509.subject: C=US, ST=WA, O=Tether Test']),
    );
    await writeFile(
      join(home, 'wrong-identity.json'),
      policy(['x509.subject: C=US, ST=WA, O=Somebody Else']),
    );
    await writeFile(join(home, 'wrong-store.json'), policy(['*'], ['ca:nobody']));
    const keys = { key: join(home, 'keys', 'leaf.key'), cert: join(home, 'keys', 'chain.pem') };
    return { env, home, keys };
  }

  for (const keyType of ['ec-p384', 'rsa-3072']) {
    test(`${keyType}: notation signs on Tether, tether verify passes; tampering and policy changes fail with reasons`, async () => {
      const { env, home } = await setup(keyType);
      const repo = `signed/${keyType}`;
      const digest = await pushImage(reg.host, repo, 'v1');
      const ref = `${reg.host}/${repo}@${digest}`;
      await ok('notation', ['sign', '--insecure-registry', ref], env);
      const verified = await tether(['verify', ref], env);
      assert.equal(verified.code, 0, verified.err);
      assert.match(verified.out, new RegExp(`verified ${reg.host}/${repo}@${digest} by signature sha256:`));
      const json = JSON.parse((await tether(['verify', '--format', 'json', ref], env)).out) as {
        ok: boolean;
        verifiedBy: string;
        signatures: { digest: string; policy: string; signer: string }[];
      };
      assert.equal(json.ok, true);
      assert.equal(json.signatures[0]?.policy, 'interop');
      assert.match(json.signatures[0]!.signer, /O=Tether Test/);

      // The trust policy: an identity that is not the signer's, or a store without the root.
      const identity = await tether(
        ['verify', ref, '--trust-policy', join(home, 'wrong-identity.json')],
        env,
      );
      assert.equal(identity.code, 1);
      assert.match(identity.err, /authenticity: .*does not match the X\.509 trusted identities/);
      const store = await tether(['verify', ref, '--trust-policy', join(home, 'wrong-store.json')], env);
      assert.equal(store.code, 1);
      assert.match(store.err, /authenticity/);

      // The signature blob: notation's envelope with one byte of its signature changed, pushed as the only
      // signature of a second image (the registry stores content by digest, so tampering makes new content).
      const sigDescriptor = (
        await anonymous.referrers(
          { ...parseImageReference(`${reg.host}/${repo}`), digest },
          'application/vnd.cncf.notary.signature',
        )
      )[0]!;
      const sig = await anonymous.getManifest({
        ...parseImageReference(`${reg.host}/${repo}`),
        digest: sigDescriptor.digest,
      });
      const layer = (sig.json.layers as { digest: string; mediaType: string }[])[0]!;
      const envelope = JSON.parse(
        (await anonymous.getBlob(parseImageReference(`${reg.host}/${repo}`), layer.digest)).toString(),
      ) as {
        signature: string;
      };
      const flip = (s: string) => `${s.slice(0, 10)}${s[10] === 'A' ? 'B' : 'A'}${s.slice(11)}`;
      const other = await pushImage(reg.host, repo, 'v2');
      const tamper = async (label: string, bytes: Buffer, subject: string) => {
        const blob = await anonymous.pushBlob(parseImageReference(`${reg.host}/${repo}`), bytes);
        const manifest = {
          ...sig.json,
          layers: [{ mediaType: layer.mediaType, digest: blob.digest, size: blob.size }],
          subject: {
            mediaType: MANIFEST,
            digest: subject,
            size: (
              await anonymous.resolve({ ...parseImageReference(`${reg.host}/${repo}`), digest: subject })
            ).size,
          },
          annotations: { ...(sig.json.annotations as object), 'org.example.case': label },
        };
        const manifestBytes = Buffer.from(JSON.stringify(manifest));
        await anonymous.putManifest(
          parseImageReference(`${reg.host}/${repo}`),
          digestOf('sha256', manifestBytes),
          manifestBytes,
          MANIFEST,
        );
      };
      await tamper(
        'bad-signature',
        Buffer.from(JSON.stringify({ ...envelope, signature: flip(envelope.signature) })),
        other,
      );
      const badSig = await tether(['verify', `${reg.host}/${repo}@${other}`], env);
      assert.equal(badSig.code, 1);
      assert.match(badSig.err, /integrity: FAILED/);
      // The manifest: the untouched envelope of image v1 presented as a signature of image v3.
      const third = await pushImage(reg.host, repo, 'v3');
      await tamper('wrong-subject', Buffer.from(JSON.stringify(envelope)), third);
      const moved = await tether(['verify', `${reg.host}/${repo}@${third}`], env);
      assert.equal(moved.code, 1);
      assert.match(moved.err, /integrity: FAILED - .*(mismatch|digest)/i);
      // And the original still verifies.
      assert.equal((await tether(['verify', ref], env)).code, 0);
    });

    test(`${keyType}: tether signs, notation verifies, on Tether and on Distribution 2.8 (fallback tag)`, async () => {
      const { env, keys } = await setup(keyType);
      for (const host of [reg.host, distHost]) {
        const repo = `ours/${keyType}`;
        const digest = await pushImage(host, repo, 'v1');
        const signed = await tether(
          ['sign', `${host}/${repo}:v1`, '--key', keys.key, '--cert', keys.cert],
          env,
        );
        assert.equal(signed.code, 0, signed.err);
        assert.match(signed.err, new RegExp(`signed ${host}/${repo}@${digest}`));
        const out = await ok('notation', ['verify', '--insecure-registry', `${host}/${repo}@${digest}`], env);
        assert.match(out, /Successfully verified signature/);
        assert.equal((await tether(['verify', `${host}/${repo}@${digest}`], env)).code, 0);
        // The spec's artifactType shape: notation finds it through the referrers listing too.
        const other = await pushImage(host, repo, 'v2');
        const shaped = await tether(
          [
            'sign',
            `${host}/${repo}@${other}`,
            '--key',
            keys.key,
            '--cert',
            keys.cert,
            '--shape',
            'artifactType',
          ],
          env,
        );
        assert.equal(shaped.code, 0, shaped.err);
        await ok('notation', ['verify', '--insecure-registry', `${host}/${repo}@${other}`], env);
        assert.equal((await tether(['verify', `${host}/${repo}@${other}`], env)).code, 0);
        const discovered = await tether(['discover', `${host}/${repo}@${digest}`, '--verify'], env);
        assert.match(
          discovered.out,
          /\[signature\] application\/vnd\.cncf\.notary\.signature\s+sha256:\w+\s+✓ verified/,
        );
      }
    });
  }

  test('signing a tag signs its digest: after the tag moves, the tag fails and the old digest verifies', async () => {
    const { env, keys } = await setup('ec-p256');
    const repo = 'moving/app';
    const first = await pushImage(reg.host, repo, 'release');
    assert.equal(
      (await tether(['sign', `${reg.host}/${repo}:release`, '--key', keys.key, '--cert', keys.cert], env))
        .code,
      0,
    );
    assert.equal((await tether(['verify', `${reg.host}/${repo}:release`], env)).code, 0);
    const second = await pushImage(reg.host, repo, 'release');
    assert.notEqual(first, second);
    const moved = await tether(['verify', `${reg.host}/${repo}:release`], env);
    assert.equal(moved.code, 1);
    assert.match(moved.err, new RegExp(`no signature is associated with ${reg.host}/${repo}@${second}`));
    assert.equal((await tether(['verify', `${reg.host}/${repo}@${first}`], env)).code, 0);
    const notation = await exec(
      'notation',
      ['verify', '--insecure-registry', `${reg.host}/${repo}@${second}`],
      env,
    );
    assert.equal(notation.code, 1, 'notation agrees the new digest is unsigned');
    // For that reason, not another: notation ran, reached the registry and found no signature.
    assert.match(
      notation.err,
      new RegExp(`no signature is associated with "${reg.host}/${repo}@${second}"`.replace(/[.+]/g, '\\$&')),
    );
    await ok('notation', ['verify', '--insecure-registry', `${reg.host}/${repo}@${first}`], env);
    // The expiry flag is honoured as a signed attribute notation reads.
    const expiring = await pushImage(reg.host, repo, 'short');
    await ok(
      process.execPath,
      [
        CLI,
        'sign',
        `${reg.host}/${repo}@${expiring}`,
        '--key',
        keys.key,
        '--cert',
        keys.cert,
        '--expiry',
        '1h',
      ],
      env,
    );
    const inspect = JSON.parse(
      await ok(
        'notation',
        ['inspect', '--insecure-registry', '--output', 'json', `${reg.host}/${repo}@${expiring}`],
        env,
      ),
    ) as { Signatures: { signedAttributes: Record<string, string> }[] };
    // notation v1.3.2 names the list `Signatures`.
    assert.ok(inspect.Signatures[0]?.signedAttributes.expiry, 'notation sees the expiry');
  });
});
