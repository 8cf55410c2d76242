/**
 * Every client command on OCI image layouts (notes/audit-cli.md, gap G3), judged by the tools that
 * have a layout mode: oras (`--oci-layout`), regctl (`ocidir://`) and notation (`--oci-layout`,
 * experimental). What tether writes they read; what they write tether reads. test/interop/run.sh
 * installs the tools first.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/client/client.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { generateCertificateChain } from '../../src/sign/certs.ts';
import { addToTrustStore } from '../../src/sign/trust-store.ts';
import { IMAGE_MANIFEST, pushSmallImage, runTether, runTool } from '../helpers/interop.ts';
import { sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';
import { strictTrustPolicy } from '../helpers/trust-policy.ts';

const REF_NAME = 'org.opencontainers.image.ref.name';

interface Discovered {
  digest: string;
  artifactType?: string;
  annotations?: Record<string, string>;
}

describe('client commands on OCI layouts, with oras, regctl and notation', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let env: NodeJS.ProcessEnv;
  // In the test's directory, so the files tether and oras push are titled by their bare names.
  const tether = (...args: string[]) => runTether(args, env, dir);
  const oras = (...args: string[]) => runTool('oras', args, env, dir);
  const at = (name: string) => join(dir, name);

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    env = { HOME: dir, DOCKER_CONFIG: join(dir, 'docker') };
    await writeFile(at('a.txt'), 'file a\n');
    await writeFile(at('sig.json'), '{"signed":true}\n');
  });
  after(async () => {
    await cleanup?.();
  });

  test('tether push/tag into a layout; oras pulls, resolves and lists the same; tether manifest delete removes it for oras too', async () => {
    const layout = at('pushed');
    const digest = (
      await tether('push', `oci:${layout}:v1`, 'a.txt:text/plain', '--artifact-type', 'application/x.t')
    ).trim();
    await oras('pull', '--oci-layout', `${layout}:v1`, '-o', at('oras-out'));
    assert.equal(await readFile(join(at('oras-out'), 'a.txt'), 'utf8'), 'file a\n');
    assert.equal((await oras('resolve', '--oci-layout', `${layout}:v1`)).trim(), digest);

    await tether('tag', `oci:${layout}:v1`, 'v2');
    assert.equal((await oras('resolve', '--oci-layout', `${layout}:v2`)).trim(), digest);
    assert.deepEqual((await oras('repo', 'tags', '--oci-layout', layout)).trim().split('\n'), ['v1', 'v2']);
    assert.deepEqual((await tether('repo', 'tags', `oci:${layout}`)).trim().split('\n'), ['v1', 'v2']);

    assert.equal((await tether('manifest', 'delete', `oci:${layout}:v2`)).trim(), digest);
    await assert.rejects(oras('resolve', '--oci-layout', `${layout}:v1`), /not found/);
    assert.equal((await oras('repo', 'tags', '--oci-layout', layout)).trim(), '');
  });

  test('oras push and attach into a layout; tether discovers (with annotations) and pulls both', async () => {
    const layout = at('oras-made');
    await oras(
      'push',
      '--oci-layout',
      `${layout}:v1`,
      'a.txt:text/plain',
      '--artifact-type',
      'application/x.t',
    );
    const attached = await oras(
      'attach',
      '--oci-layout',
      `${layout}:v1`,
      'sig.json',
      '--artifact-type',
      'application/vnd.example.sig',
      '--annotation',
      'org.example.k=v',
      '--format',
      'json',
    );
    const referrer = (JSON.parse(attached) as { digest: string }).digest;
    const tree = JSON.parse(await tether('discover', `oci:${layout}:v1`, '--format', 'json'));
    assert.deepEqual(
      tree.referrers.map((r: Discovered) => [r.digest, r.artifactType, r.annotations?.['org.example.k']]),
      [[referrer, 'application/vnd.example.sig', 'v']],
    );
    assert.match(
      await tether('discover', `oci:${layout}:v1`),
      new RegExp(`application/vnd\\.example\\.sig  ${referrer}\\n {4}└── \\[annotations\\]\\n`),
    );
    await tether('pull', `oci:${layout}:v1`, '-o', at('pulled'));
    assert.equal(await readFile(join(at('pulled'), 'a.txt'), 'utf8'), 'file a\n');
    await tether('pull', `oci:${layout}@${referrer}`, '-o', at('pulled'));
    assert.equal(await readFile(join(at('pulled'), 'sig.json'), 'utf8'), '{"signed":true}\n');
  });

  test('tether attach into a layout: oras discover finds it; in tag mode regctl artifact list does too', async () => {
    const layout = at('attached');
    await tether('push', `oci:${layout}:v1`, 'a.txt', '--artifact-type', 'application/x.t');
    const first = (
      await tether(
        'attach',
        `oci:${layout}:v1`,
        'sig.json',
        '--artifact-type',
        'application/vnd.example.sig',
        '--annotation',
        'org.example.k=v',
      )
    ).trim();
    const second = (
      await tether(
        'attach',
        `oci:${layout}:v1`,
        'sig.json',
        '--artifact-type',
        'application/vnd.example.sbom',
        '--referrers-mode',
        'tag',
      )
    ).trim();
    const found = JSON.parse(await oras('discover', '--oci-layout', `${layout}:v1`, '--format', 'json'));
    assert.deepEqual(
      found.referrers.map((r: Discovered) => [r.digest, r.annotations?.['org.example.k']]).sort(),
      [
        [first, 'v'],
        [second, undefined],
      ].sort(),
    );
    // regctl reads the fallback-tag index (written in tag mode) without scanning the layout.
    const listed = JSON.parse(
      await runTool('regctl', ['artifact', 'list', `ocidir://${layout}:v1`, '--format', '{{json .}}'], env),
    ) as { descriptors: Discovered[] };
    assert.deepEqual(
      listed.descriptors.map((d) => d.digest),
      [second],
    );
  });

  test('a re-tagged layout keeps the old manifest listed, so oras still fetches it by digest (nit N10)', async () => {
    const layout = at('retag');
    const first = (
      await tether('push', `oci:${layout}:t`, 'a.txt', '--artifact-type', 'application/x.one')
    ).trim();
    await tether('push', `oci:${layout}:t`, 'sig.json', '--artifact-type', 'application/x.two');
    const descriptor = JSON.parse(
      await oras('manifest', 'fetch', '--oci-layout', `${layout}@${first}`, '--descriptor'),
    ) as { mediaType: string; digest: string };
    assert.deepEqual(
      [descriptor.digest, descriptor.mediaType],
      [first, 'application/vnd.oci.image.manifest.v1+json'],
    );
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
      manifests: { digest: string; annotations?: Record<string, string> }[];
    };
    assert.deepEqual(
      index.manifests.map((m) => [m.digest === first, m.annotations?.[REF_NAME]]),
      [
        [true, undefined],
        [false, 't'],
      ],
    );
  });

  test("discover shows an index's manifests with their referrers as regctl artifact tree does, and annotations as oras discover does (gap G5)", async () => {
    const reg: RunningRegistry = await startRegistry();
    try {
      const amd64 = await pushSmallImage(reg.host, 'g5', undefined, 'amd64');
      const arm64 = await pushSmallImage(reg.host, 'g5', undefined, 'arm64');
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [
            { mediaType: IMAGE_MANIFEST, ...amd64, platform: { os: 'linux', architecture: 'amd64' } },
            { mediaType: IMAGE_MANIFEST, ...arm64, platform: { os: 'linux', architecture: 'arm64' } },
          ],
        }),
      );
      await new RegistryClient().putManifest(
        { host: reg.host, repository: 'g5' },
        'v1',
        index,
        'application/vnd.oci.image.index.v1+json',
      );
      const attach = async (subject: string, type: string, ...more: string[]) =>
        (
          await tether('attach', `${reg.host}/g5@${subject}`, 'sig.json', '--artifact-type', type, ...more)
        ).trim();
      const sbom = await attach(
        sha256(index),
        'application/spdx+json',
        '--annotation',
        'org.example.tool=syft',
      );
      const amd64Sig = await attach(amd64.digest, 'application/vnd.example.sig');
      const arm64Sig = await attach(arm64.digest, 'application/vnd.example.sig');
      // In tag mode the layout keeps regctl's fallback-tag indexes too, so regctl needs no scan.
      const layout = at('g5');
      await tether('cp', '-r', '--referrers-mode', 'tag', `${reg.host}/g5:v1`, `oci:${layout}:v1`);

      type Shape = { digest: string; manifests: Shape[]; referrers: string[] };
      type RegctlNode = { reference: { Digest: string }; child?: RegctlNode[]; referrer?: RegctlNode[] };
      const fromRegctl = (n: RegctlNode, digest = n.reference.Digest): Shape => ({
        digest,
        manifests: (n.child ?? []).map((c) => fromRegctl(c)),
        referrers: (n.referrer ?? []).map((r) => r.reference.Digest).sort(),
      });
      type TetherNode = { digest: string; manifests?: TetherNode[]; referrers: TetherNode[] };
      const fromTether = (n: TetherNode): Shape => ({
        digest: n.digest,
        manifests: (n.manifests ?? []).map(fromTether),
        referrers: n.referrers.map((r) => r.digest).sort(),
      });
      const regctlTree = JSON.parse(
        await runTool('regctl', ['artifact', 'tree', `ocidir://${layout}:v1`, '--format', '{{json .}}'], env),
      ) as RegctlNode;
      const tetherTree = JSON.parse(
        await tether('discover', `oci:${layout}:v1`, '--format', 'json'),
      ) as TetherNode;
      assert.deepEqual(fromTether(tetherTree), fromRegctl(regctlTree, sha256(index)));
      assert.deepEqual(fromTether(tetherTree), {
        digest: sha256(index),
        manifests: [
          { digest: amd64.digest, manifests: [], referrers: [amd64Sig] },
          { digest: arm64.digest, manifests: [], referrers: [arm64Sig] },
        ],
        referrers: [sbom],
      });

      const orasTree = JSON.parse(
        await oras('discover', '--oci-layout', `${layout}:v1`, '--format', 'json'),
      ) as {
        referrers: Discovered[];
      };
      const ours = tetherTree as unknown as { referrers: Discovered[] };
      assert.deepEqual(
        ours.referrers.map((r) => [r.digest, r.annotations]),
        orasTree.referrers.map((r) => [r.digest, r.annotations]),
      );
      assert.equal(ours.referrers[0]?.annotations?.['org.example.tool'], 'syft');
    } finally {
      await reg.close();
    }
  });

  test('signatures in layouts: tether sign → notation verify --oci-layout; notation sign --oci-layout → tether verify --scope', async () => {
    const config = at('notation');
    const chain = generateCertificateChain({ keyType: 'ec-p384' });
    await mkdir(config, { recursive: true });
    await writeFile(at('leaf.key'), chain.leafPrivateKey);
    await writeFile(at('chain.pem'), chain.chain);
    await addToTrustStore(join(config, 'truststore'), 'ca', 'layouts', { 'root.pem': chain.rootCertificate });
    await writeFile(
      join(config, 'trustpolicy.json'),
      strictTrustPolicy({
        name: 'layouts',
        registryScopes: ['local/demo'],
        trustStores: ['ca:layouts'],
        trustedIdentities: ['*'],
      }),
    );
    await writeFile(
      join(config, 'signingkeys.json'),
      JSON.stringify({
        default: 'k',
        keys: [{ name: 'k', keyPath: at('leaf.key'), certPath: at('chain.pem') }],
      }),
    );
    const notationEnv = { ...env, NOTATION_EXPERIMENTAL: '1', NOTATION_CONFIG: config };
    const notation = (...args: string[]) => runTool('notation', args, notationEnv);
    const trust = [
      '--trust-policy',
      join(config, 'trustpolicy.json'),
      '--trust-store',
      join(config, 'truststore'),
    ];

    const ours = at('signed-by-tether');
    const image = (
      await tether('push', `oci:${ours}:v1`, 'a.txt', '--artifact-type', 'application/x.t')
    ).trim();
    const signature = (
      await tether('sign', '-q', `oci:${ours}:v1`, '--key', at('leaf.key'), '--cert', at('chain.pem'))
    ).trim();
    assert.match(
      await notation('verify', '--oci-layout', `${ours}@${image}`, '--scope', 'local/demo'),
      /Successfully verified signature/,
    );
    assert.match(
      await tether('verify', `oci:${ours}:v1`, '--scope', 'local/demo', ...trust),
      new RegExp(`^verified local/demo@${image} by signature ${signature}`),
    );

    const theirs = at('signed-by-notation');
    const other = (
      await tether('push', `oci:${theirs}:v1`, 'sig.json', '--artifact-type', 'application/x.t')
    ).trim();
    await notation('sign', '--oci-layout', `${theirs}@${other}`, '--key', 'k');
    const verified = JSON.parse(
      await tether('verify', `oci:${theirs}:v1`, '--scope', 'local/demo', ...trust, '--format', 'json'),
    ) as { ok: boolean; reference: string };
    assert.deepEqual([verified.ok, verified.reference], [true, `local/demo@${other}`]);
    await assert.rejects(
      tether('verify', `oci:${theirs}:v1`, '--scope', 'other/scope', ...trust),
      /no applicable oci trust policy/,
    );
  });
});
