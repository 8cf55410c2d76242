import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
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
 * Tether's client against registries with and without the referrers API, judged by oras and regctl:
 * Tether itself (API) and Debian's Distribution 2.8 (no API: the fallback tag).
 */
const run = runTool;
const INDEX = 'application/vnd.oci.image.index.v1+json';
const tether = runTether;

/** Pushes a small image with the client itself; returns its digest. */
const pushImage = async (host: string, repo: string, tag: string) =>
  (await pushSmallImage(host, repo, tag)).digest;

/**
 * `oras attach` of one file (`PATH:MEDIATYPE`) to `subject` as `artifactType`, `extra` flags before the
 * subject; resolves with the digest of the manifest oras pushed.
 */
async function orasAttach(
  subject: string,
  artifactType: string,
  file: string,
  env: NodeJS.ProcessEnv,
  extra: string[] = [],
): Promise<string> {
  const out = await run(
    'oras',
    [
      'attach',
      '--plain-http',
      '--disable-path-validation',
      '--format',
      'json',
      '--artifact-type',
      artifactType,
      ...extra,
      subject,
      file,
    ],
    env,
  );
  return (JSON.parse(out) as { digest: string }).digest;
}

function discovered(json: string): string[] {
  const tree = JSON.parse(json) as {
    referrers?: { digest: string; referrers?: unknown[] }[];
    manifests?: { digest: string }[];
  };
  return (tree.referrers ?? tree.manifests ?? []).map((r) => r.digest).sort();
}

describe('client referrers interop', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let tetherReg: RunningRegistry;
  let stopDistribution: (() => void) | undefined;
  let distHost: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    env = { HOME: dir, DOCKER_CONFIG: join(dir, 'docker') };
    tetherReg = await startRegistry({ storage: { data: join(dir, 'tether') } });
    ({ host: distHost, stop: stopDistribution } = await startDistribution2(dir));
    await writeFile(join(dir, 'sbom.json'), '{"spdxVersion":"SPDX-2.3"}');
    await run('regctl', ['registry', 'set', tetherReg.host, '--tls', 'disabled'], env);
  });
  after(async () => {
    stopDistribution?.();
    await tetherReg?.close();
    await cleanup?.();
  });

  test('tether attach on Tether: oras discover and regctl artifact tree see it; oras attach shows in tether discover', async () => {
    const subject = await pushImage(tetherReg.host, 'app', 'v1');
    const ref = `${tetherReg.host}/app:v1`;
    const ours = (
      await tether(
        [
          'attach',
          ref,
          'sbom.json:application/spdx+json',
          '--artifact-type',
          'application/spdx+json',
          '--annotation',
          'org.example.k=v',
        ],
        env,
        dir,
      )
    ).trim();
    const oras = JSON.parse(
      await run('oras', ['discover', '--plain-http', '--format', 'json', ref], env),
    ) as { referrers: { digest: string; artifactType: string }[] };
    assert.ok(oras.referrers.some((r) => r.digest === ours && r.artifactType === 'application/spdx+json'));
    const tree = await run('regctl', ['artifact', 'tree', ref], env);
    assert.match(tree, new RegExp(ours.slice(7, 19)));
    const orasDigest = await orasAttach(
      `${tetherReg.host}/app@${subject}`,
      'application/vnd.example.sig',
      `${join(dir, 'sbom.json')}:application/json`,
      env,
    );
    const ourView = discovered(await tether(['discover', '--format', 'json', ref], env));
    assert.deepEqual(ourView, [ours, orasDigest].sort());
  });

  test('on Distribution 2.8 (no referrers API) tether uses the fallback tag, and oras discover sees it', async () => {
    const subject = await pushImage(distHost, 'app', 'v1');
    const ref = `${distHost}/app:v1`;
    const ours = (
      await tether(['attach', ref, 'sbom.json', '--artifact-type', 'application/spdx+json'], env, dir)
    ).trim();
    const fallback = await fetch(`http://${distHost}/v2/app/manifests/${subject.replace(':', '-')}`, {
      headers: { Accept: 'application/vnd.oci.image.index.v1+json' },
    });
    assert.equal(fallback.status, 200, 'the fallback index exists');
    const oras = JSON.parse(
      await run('oras', ['discover', '--plain-http', '--format', 'json', ref], env),
    ) as { referrers: { digest: string }[] };
    assert.deepEqual(
      oras.referrers.map((r) => r.digest),
      [ours],
    );
    assert.deepEqual(discovered(await tether(['discover', '--format', 'json', ref], env)), [ours]);
  });

  test('on Tether, oras --distribution-spec v1.1-referrers-tag sees what the API holds after a tag-mode writer', async () => {
    const subject = await pushImage(tetherReg.host, 'split', 'v1');
    const at = `${tetherReg.host}/split@${subject}`;
    const tagUrl = `${tetherReg.url}/v2/split/manifests/${subject.replace(':', '-')}`;
    // A tag-mode writer stores the fallback index; an API client attaches afterwards.
    const sbom = (
      await tether(
        ['attach', at, 'sbom.json', '--artifact-type', 'application/spdx+json', '--referrers-mode', 'tag'],
        env,
        dir,
      )
    ).trim();
    assert.equal((await fetch(tagUrl)).status, 200, 'the tag was pushed');
    await writeFile(join(dir, 'split-sig.txt'), 'signature');
    const sig = await orasAttach(
      at,
      'application/vnd.example.sig',
      `${join(dir, 'split-sig.txt')}:text/plain`,
      env,
    );
    const orasView = async (mode: string) =>
      discovered(
        await run(
          'oras',
          ['discover', '--plain-http', '--distribution-spec', mode, '--format', 'json', at],
          env,
        ),
      );
    assert.deepEqual(await orasView('v1.1-referrers-tag'), [sbom, sig].sort());
    assert.deepEqual(
      discovered(await tether(['discover', '--format', 'json', '--referrers-mode', 'tag', at], env)),
      [sbom, sig].sort(),
    );
    // A manifest with no subject, listed under the tag by hand, shows in neither view.
    const stray = JSON.parse(
      await run(
        'oras',
        [
          'push',
          '--plain-http',
          '--disable-path-validation',
          '--format',
          'json',
          '--artifact-type',
          'application/vnd.example.stray',
          `${tetherReg.host}/split:stray`,
          `${join(dir, 'split-sig.txt')}:text/plain`,
        ],
        env,
      ),
    ) as { digest: string; size: number; mediaType: string };
    const current = await fetch(tagUrl);
    const index = (await current.json()) as { manifests: unknown[] };
    index.manifests.push({ mediaType: stray.mediaType, digest: stray.digest, size: stray.size });
    const put = await fetch(tagUrl, {
      method: 'PUT',
      body: JSON.stringify(index),
      headers: {
        'Content-Type': 'application/vnd.oci.image.index.v1+json',
        'If-Match': current.headers.get('etag')!,
      },
    });
    assert.equal(put.status, 201);
    assert.deepEqual(await orasView('v1.1-referrers-tag'), [sbom, sig].sort());
    assert.deepEqual(await orasView('v1.1-referrers-api'), [sbom, sig].sort());
    // Deleted through the API: gone from the tag view too.
    await run(
      'oras',
      ['manifest', 'delete', '--plain-http', '--force', `${tetherReg.host}/split@${sig}`],
      env,
    );
    assert.deepEqual(await orasView('v1.1-referrers-tag'), [sbom]);
  });

  test('on Tether, oras in tag mode reports referrers too large for one fallback index instead of listing some', async () => {
    const subject = await pushImage(tetherReg.host, 'huge', 'v1');
    const at = `${tetherReg.host}/huge@${subject}`;
    for (let i = 0; i < 5; i++) {
      // 900 KiB of annotation each (from a file: one command-line argument may hold at most 128 KiB).
      const file = join(dir, `huge-${i}.json`);
      await writeFile(file, JSON.stringify({ $manifest: { big: String(i).repeat(900 * 1024) } }));
      await orasAttach(at, 'application/vnd.example.big', `${join(dir, 'sbom.json')}:application/json`, env, [
        '--annotation-file',
        file,
      ]);
    }
    let listed = 0;
    for (let next: string | undefined = `/v2/huge/referrers/${subject}`; next; ) {
      const res = await fetch(`${tetherReg.url}${next}`);
      listed += ((await res.json()) as { manifests: unknown[] }).manifests.length;
      next = /^<([^>]+)>; rel="next"$/.exec(res.headers.get('link') ?? '')?.[1];
    }
    assert.equal(listed, 5, 'the API pages through all of them');
    await assert.rejects(
      run('oras', ['discover', '--plain-http', '--distribution-spec', 'v1.1-referrers-tag', at], env),
      /do not fit in one fallback index of at most 4194304 bytes/,
    );
  });

  test('tether cp -r (signature, SBOM, signed SBOM) to Tether and Distribution 2.8; regctl copies back; digests identical', async () => {
    const subject = await pushImage(tetherReg.host, 'cp/src', 'v1');
    const src = `${tetherReg.host}/cp/src:v1`;
    await writeFile(join(dir, 'sig.txt'), 'signature');
    const sig = (
      await tether(['attach', src, 'sig.txt', '--artifact-type', 'application/vnd.example.sig'], env, dir)
    ).trim();
    const sbom = (
      await tether(['attach', src, 'sbom.json', '--artifact-type', 'application/spdx+json'], env, dir)
    ).trim();
    const sbomSig = (
      await tether(
        [
          'attach',
          `${tetherReg.host}/cp/src@${sbom}`,
          'sig.txt',
          '--artifact-type',
          'application/vnd.example.sig',
        ],
        env,
        dir,
      )
    ).trim();
    const expected = [sig, sbom, sbomSig].sort();
    assert.deepEqual(discoveredDigests(await tether(['discover', '--format', 'json', src], env)), expected);
    for (const dst of [`${tetherReg.host}/cp/dst:v1`, `${distHost}/cp/dst:v1`]) {
      assert.equal((await tether(['cp', '-r', src, dst], env)).trim(), subject);
      assert.equal((await tether(['resolve', dst], env)).trim(), subject);
      assert.deepEqual(
        discoveredDigests(await tether(['discover', '--format', 'json', dst], env)),
        expected,
        dst,
      );
    }
    // And a tool nobody here wrote copies it back, referrers included, digests unchanged.
    await run(
      'regctl',
      ['image', 'copy', '--referrers', `${tetherReg.host}/cp/dst:v1`, `${tetherReg.host}/cp/back:v1`],
      env,
    );
    assert.deepEqual(
      discoveredDigests(await tether(['discover', '--format', 'json', `${tetherReg.host}/cp/back:v1`], env)),
      expected,
    );
    // Re-running a copy finishes instantly and changes nothing.
    assert.equal((await tether(['cp', '-r', src, `${tetherReg.host}/cp/dst:v1`], env)).trim(), subject);
  });

  test('Distribution 2.8: a fallback index without mediaType is read, and tether attach keeps its entries (finding 2)', async () => {
    const subject = await pushImage(distHost, 'nomt', 'v1');
    const ref = `${distHost}/nomt:v1`;
    await writeFile(join(dir, 'first.txt'), 'first');
    const first = await orasAttach(
      `${distHost}/nomt@${subject}`,
      'application/vnd.first',
      `${join(dir, 'first.txt')}:text/plain`,
      env,
    );
    // The same index without its optional top-level mediaType; the Content-Type still says OCI index.
    const url = `http://${distHost}/v2/nomt/manifests/${subject.replace(':', '-')}`;
    const index = (await (await fetch(url, { headers: { Accept: INDEX } })).json()) as Record<
      string,
      unknown
    >;
    delete index.mediaType;
    const put = await fetch(url, {
      method: 'PUT',
      body: JSON.stringify(index),
      headers: { 'Content-Type': INDEX },
    });
    assert.equal(put.status, 201);

    assert.deepEqual(discovered(await tether(['discover', '--format', 'json', ref], env)), [first]);
    const ours = (
      await tether(['attach', ref, 'sbom.json', '--artifact-type', 'application/spdx+json'], env, dir)
    ).trim();
    const oras = JSON.parse(
      await run('oras', ['discover', '--plain-http', '--format', 'json', ref], env),
    ) as {
      referrers: { digest: string }[];
    };
    assert.deepEqual(oras.referrers.map((r) => r.digest).sort(), [first, ours].sort());
  });

  test('Distribution 2.8: tether attach refuses to overwrite an image manifest under the fallback tag (finding 7)', async () => {
    const subject = await pushImage(distHost, 'nonidx', 'v1');
    const tag = subject.replace(':', '-');
    await writeFile(join(dir, 'ni.txt'), 'not an index');
    // Asked for an index alone, Distribution answers 404 for this tag: the client must ask for any manifest.
    await run(
      'oras',
      [
        'push',
        '--plain-http',
        '--disable-path-validation',
        '--artifact-type',
        'application/vnd.something.else',
        `${distHost}/nonidx:${tag}`,
        `${join(dir, 'ni.txt')}:text/plain`,
      ],
      env,
    );
    const before = (await run('oras', ['resolve', '--plain-http', `${distHost}/nonidx:${tag}`], env)).trim();
    await assert.rejects(
      tether(
        ['attach', `${distHost}/nonidx@${subject}`, 'sbom.json', '--artifact-type', 'application/spdx+json'],
        env,
        dir,
      ),
      (err: Error) =>
        err.message.includes(`referrers tag ${distHost}/nonidx:${tag} holds an image manifest`) &&
        err.message.includes('not an image index; it is left as it is'),
    );
    assert.equal(
      (await run('oras', ['resolve', '--plain-http', `${distHost}/nonidx:${tag}`], env)).trim(),
      before,
    );
  });

  test('Distribution 2.8: tether cp -r records a referrer that is already there by digest (finding 3)', async () => {
    const subject = await pushImage(tetherReg.host, 'partial/src', 'v1');
    const src = `${tetherReg.host}/partial/src`;
    const sbom = (
      await tether(['attach', `${src}:v1`, 'sbom.json', '--artifact-type', 'application/spdx+json'], env, dir)
    ).trim();
    await writeFile(join(dir, 'sig.txt'), 'signature');
    const sig = (
      await tether(
        ['attach', `${src}@${sbom}`, 'sig.txt', '--artifact-type', 'application/vnd.example.sig'],
        env,
        dir,
      )
    ).trim();
    // What an interrupted copy leaves: the SBOM at the destination by digest, in no fallback index.
    const dst = `${distHost}/partial/dst`;
    await tether(['cp', '--referrers-mode', 'api', `${src}@${sbom}`, `${dst}@${sbom}`], env);

    assert.equal((await tether(['cp', '-r', `${src}:v1`, `${dst}:v1`], env)).trim(), subject);
    const oras = JSON.parse(
      await run('oras', ['discover', '--plain-http', '--format', 'json', `${dst}:v1`], env),
    ) as {
      referrers: { digest: string }[];
    };
    assert.deepEqual(
      oras.referrers.map((r) => r.digest),
      [sbom],
    );
    assert.deepEqual(
      discoveredDigests(await tether(['discover', '--format', 'json', `${dst}:v1`], env)),
      [sbom, sig].sort(),
    );
  });

  for (const target of ['tether-forced-tag', 'distribution'] as const) {
    test(`16 concurrent tether attach processes lose no fallback entry (${target})`, async () => {
      const host = target === 'distribution' ? distHost : tetherReg.host;
      const repo = `race-${target}`;
      const subject = await pushImage(host, repo, 'v1');
      const extra = target === 'distribution' ? [] : ['--referrers-mode', 'tag'];
      const digests = await Promise.all(
        Array.from({ length: 16 }, async (_, i) => {
          const file = `note-${target}-${i}.txt`;
          await writeFile(join(dir, file), `note ${i}`);
          return (
            await tether(
              [
                'attach',
                `${host}/${repo}@${subject}`,
                file,
                '--artifact-type',
                'application/vnd.example.note',
                ...extra,
              ],
              env,
              dir,
            )
          ).trim();
        }),
      );
      // Read the fallback index itself (through the client, which retries Distribution's transient 500s).
      const reader = new RegistryClient({ referrersMode: 'tag', credentials: async () => undefined });
      const index = {
        manifests: await reader.referrers({ ...parseImageReference(`${host}/${repo}:v1`), digest: subject }),
      };
      assert.deepEqual(index.manifests.map((m) => m.digest).sort(), digests.sort());
    });
  }
});
