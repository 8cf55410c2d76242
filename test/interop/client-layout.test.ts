import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/client/client.ts';
import { parseImageReference } from '../../src/client/reference.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import {
  discoveredDigests,
  pushSmallImage,
  runTether,
  runTool,
  startDistribution2,
} from '../helpers/interop.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

/**
 * Copies through OCI image layouts, judged by oras and regctl: a multi-platform image whose index and
 * children carry referrers goes registry → layout → another registry (Distribution 2.8, fallback tags)
 * with every digest intact; oras and regctl read the layouts Tether writes; Tether reads theirs.
 */
const run = runTool;
const tether = runTether;

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';

interface Fixture {
  index: string;
  amd64: string;
  arm64: string;
  indexSig: string;
  amd64Sbom: string;
  sbomSig: string;
  arm64Sig: string;
}

/** A two-platform image; a signature on the index, an SBOM (itself signed) on amd64, a signature on arm64. */
async function pushMultiPlatform(
  host: string,
  repo: string,
  env: NodeJS.ProcessEnv,
  dir: string,
): Promise<Fixture> {
  const client = new RegistryClient({ credentials: async () => undefined });
  const ref = parseImageReference(`${host}/${repo}`);
  const children: { digest: string; size: number; platform: object }[] = [];
  for (const architecture of ['amd64', 'arm64']) {
    const { digest, size } = await pushSmallImage(host, repo, undefined, architecture);
    children.push({ digest, size, platform: { architecture, os: 'linux' } });
  }
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: INDEX,
      manifests: children.map((c) => ({ mediaType: MANIFEST, ...c })),
    }),
  );
  await client.putManifest(ref, 'v1', index, INDEX);
  const indexDigest = (await client.resolve({ ...ref, tag: 'v1' })).digest;
  await writeFile(join(dir, 'sig.txt'), 'signature bytes');
  await writeFile(join(dir, 'sbom.json'), '{"spdxVersion":"SPDX-2.3"}');
  const attach = async (at: string, file: string, type: string) =>
    (await tether(['attach', `${host}/${repo}@${at}`, file, '--artifact-type', type], env, dir)).trim();
  const amd64 = children[0]!.digest;
  const arm64 = children[1]!.digest;
  const amd64Sbom = await attach(amd64, 'sbom.json', 'application/spdx+json');
  return {
    index: indexDigest,
    amd64,
    arm64,
    indexSig: await attach(indexDigest, 'sig.txt', 'application/vnd.example.sig'),
    amd64Sbom,
    sbomSig: await attach(amd64Sbom, 'sig.txt', 'application/vnd.example.sig'),
    arm64Sig: await attach(arm64, 'sig.txt', 'application/vnd.example.sig'),
  };
}

describe('client OCI layout interop', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let reg: RunningRegistry;
  let stopDistribution: (() => void) | undefined;
  let distHost: string;
  let env: NodeJS.ProcessEnv;
  let fx: Fixture;
  let src: string;

  /** What `discover` must show under the index and each child, wherever the image lands. */
  async function assertReferrers(at: (digest: string) => string, label: string) {
    assert.deepEqual(
      discoveredDigests(await tether(['discover', '--format', 'json', at(fx.index)], env)),
      [fx.indexSig],
      label,
    );
    assert.deepEqual(
      discoveredDigests(await tether(['discover', '--format', 'json', at(fx.amd64)], env)),
      [fx.amd64Sbom, fx.sbomSig].sort(),
      label,
    );
    assert.deepEqual(
      discoveredDigests(await tether(['discover', '--format', 'json', at(fx.arm64)], env)),
      [fx.arm64Sig],
      label,
    );
  }

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    env = { HOME: dir, DOCKER_CONFIG: join(dir, 'docker') };
    reg = await startRegistry({ storage: { data: join(dir, 'tether') } });
    ({ host: distHost, stop: stopDistribution } = await startDistribution2(dir));
    await run('regctl', ['registry', 'set', reg.host, '--tls', 'disabled'], env);
    fx = await pushMultiPlatform(reg.host, 'multi/app', env, dir);
    src = `${reg.host}/multi/app:v1`;
  });
  after(async () => {
    stopDistribution?.();
    await reg?.close();
    await cleanup?.();
  });

  test('multi-platform image with referrers on index and children: registry → layout → Distribution 2.8, digests identical', async () => {
    const layout = join(dir, 'layout');
    assert.equal((await tether(['cp', '-r', src, `oci:${layout}:v1`], env)).trim(), fx.index);
    await assertReferrers((d) => `oci:${layout}@${d}`, 'in the layout');
    const table = (await tether(['discover', '--format', 'table', `oci:${layout}@${fx.amd64}`], env))
      .trim()
      .split('\n')
      .map((line) => line.split(/\s{2,}/));
    assert.deepEqual(table[0], ['DEPTH', 'DIGEST', 'ARTIFACT TYPE', 'SIZE', 'SUBJECT']);
    assert.deepEqual(
      table.slice(1).map((r) => [r[0], r[1], r[2], r[4]]),
      [
        ['1', fx.amd64Sbom, 'application/spdx+json', fx.amd64],
        ['2', fx.sbomSig, 'application/vnd.example.sig', fx.amd64Sbom],
      ],
    );
    const dst = `${distHost}/multi/app:v1`;
    assert.equal((await tether(['cp', '-r', `oci:${layout}:v1`, dst], env)).trim(), fx.index);
    assert.equal((await tether(['resolve', dst], env)).trim(), fx.index);
    await assertReferrers((d) => `${distHost}/multi/app@${d}`, 'on Distribution');
    // oras, reading Distribution's fallback tags, agrees for a child.
    const oras = JSON.parse(
      await run(
        'oras',
        ['discover', '--plain-http', '--format', 'json', `${distHost}/multi/app@${fx.amd64}`],
        env,
      ),
    ) as { referrers: { digest: string }[] };
    assert.deepEqual(
      oras.referrers.map((r) => r.digest),
      [fx.amd64Sbom],
    );
    // The layout's copy is complete: a second run moves nothing.
    const again = JSON.parse(
      await tether(['cp', '-r', '--format', 'json', src, `oci:${layout}:v1`], env),
    ) as {
      manifests: { copied: number };
      blobs: { transferred: number };
    };
    assert.equal(again.manifests.copied, 0);
    assert.equal(again.blobs.transferred, 0);
  });

  test('oras and regctl read the layouts Tether writes (oras style by default, fallback tags in tag mode)', async () => {
    const layout = join(dir, 'for-oras');
    await tether(['cp', '-r', src, `oci:${layout}:v1`], env);
    const oras = JSON.parse(
      await run('oras', ['discover', '--oci-layout', '--format', 'json', `${layout}@${fx.amd64}`], env),
    ) as { referrers: { digest: string; referrers?: { digest: string }[] }[] };
    assert.deepEqual(
      oras.referrers.map((r) => r.digest),
      [fx.amd64Sbom],
    );
    assert.deepEqual(
      oras.referrers[0]?.referrers?.map((r) => r.digest),
      [fx.sbomSig],
    );
    const tagged = join(dir, 'for-regctl');
    await tether(['cp', '-r', '--referrers-mode', 'tag', src, `oci:${tagged}:v1`], env);
    const listed = await run(
      'regctl',
      ['artifact', 'list', `ocidir://${tagged}@${fx.arm64}`, '--format', '{{jsonPretty .Manifest}}'],
      env,
    );
    assert.deepEqual(
      (JSON.parse(listed) as { manifests: { digest: string }[] }).manifests.map((m) => m.digest),
      [fx.arm64Sig],
    );
    // And skopeo copies the image out of Tether's layout, byte for byte.
    await run(
      'skopeo',
      [
        'copy',
        '--all',
        '--preserve-digests',
        '--dest-tls-verify=false',
        `oci:${tagged}:v1`,
        `docker://${distHost}/from-layout:v1`,
      ],
      env,
    );
    assert.equal((await tether(['resolve', `${distHost}/from-layout:v1`], env)).trim(), fx.index);
  });

  test('Tether reads layouts written by oras (untagged referrers) and regctl (fallback tags)', async () => {
    const orasLayout = join(dir, 'by-oras');
    await run('oras', ['cp', '-r', '--from-plain-http', src, '--to-oci-layout', `${orasLayout}:v1`], env);
    const orasIndex = JSON.parse(await readFile(join(orasLayout, 'index.json'), 'utf8')) as {
      manifests: unknown[];
    };
    assert.ok(orasIndex.manifests.length > 1, 'oras listed referrers in index.json');
    assert.deepEqual(
      discoveredDigests(await tether(['discover', '--format', 'json', `oci:${orasLayout}:v1`], env)),
      [fx.indexSig],
    );
    assert.equal(
      (await tether(['cp', '-r', `oci:${orasLayout}:v1`, `${reg.host}/from-oras:v1`], env)).trim(),
      fx.index,
    );
    assert.deepEqual(
      discoveredDigests(await tether(['discover', '--format', 'json', `${reg.host}/from-oras:v1`], env)),
      [fx.indexSig],
    );
    const regctlLayout = join(dir, 'by-regctl');
    await run('regctl', ['image', 'copy', '--referrers', src, `ocidir://${regctlLayout}:v1`], env);
    await assertReferrers((d) => `oci:${regctlLayout}@${d}`, 'in the regctl layout');
    assert.equal(
      (await tether(['cp', '-r', `oci:${regctlLayout}:v1`, `${reg.host}/from-regctl:v1`], env)).trim(),
      fx.index,
    );
    await assertReferrers((d) => `${reg.host}/from-regctl@${d}`, 'copied from the regctl layout');
  });

  test('--platform copies one image (with its referrers); --referrers-to puts referrers in another repository', async () => {
    const arm = `${reg.host}/arm/app:v1`;
    assert.equal((await tether(['cp', '-r', '--platform', 'linux/arm64', src, arm], env)).trim(), fx.arm64);
    assert.equal((await tether(['resolve', arm], env)).trim(), fx.arm64);
    assert.deepEqual(discoveredDigests(await tether(['discover', '--format', 'json', arm], env)), [
      fx.arm64Sig,
    ]);
    await assert.rejects(
      tether(['cp', '--platform', 'linux/s390x', src, `${reg.host}/none:v1`], env),
      /has no image for linux\/s390x/,
    );

    const dst = `${distHost}/sep/app:v1`;
    const sigs = `${distHost}/sep/app-referrers`;
    assert.equal((await tether(['cp', '-r', src, dst, '--referrers-to', sigs], env)).trim(), fx.index);
    assert.deepEqual(
      discoveredDigests(
        await tether(['discover', '--format', 'json', `${distHost}/sep/app@${fx.index}`], env),
      ),
      [],
    );
    await assertReferrers((d) => `${sigs}@${d}`, 'in the separate referrers repository');
  });
});
