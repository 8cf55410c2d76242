/**
 * Referrers benchmark: page latency as the repository grows.
 *
 * For each repository size (referrers spread over subjects of 10 each) it seeds a fresh data directory,
 * plus one "hot" subject holding 10 000 more referrers, starts `tether serve` as a separate process and measures
 * over HTTP: the first page (unfiltered, artifactType-filtered, annotation-filtered), a full walk of the
 * hot subject, a page of a cold subject, and a 304 poll. Reports p50/p99 per page as JSON and a table.
 *
 * Seeding goes through SqliteMetaStore.putManifest (the very transaction a manifest PUT runs), with
 * synchronous=NORMAL, because pushing a million manifests over HTTP would time the seeding, not the reads.
 *
 *   node bench/referrers.ts [--sizes 1000,100000,1000000] [--hot 10000] [--samples 200]
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SqliteMetaStore } from '../src/storage/meta/sqlite.ts';
import { spawnTether } from '../test/helpers/tether-process.ts';
import { percentile } from './lib/workloads.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1000,100000,1000000' },
    hot: { type: 'string', default: '10000' },
    samples: { type: 'string', default: '200' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const hotCount = Number(values.hot);
const samples = Number(values.samples);
const REPO = 'bench/app';
const TYPES = [
  'application/vnd.example.sig',
  'application/spdx+json',
  'application/vnd.in-toto+json',
  'application/vnd.example.tuf',
];

const digestOf = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

async function seed(dir: string, total: number): Promise<{ hot: string; cold: string }> {
  const meta = new SqliteMetaStore({ path: join(dir, 'meta.db'), synchronous: 'NORMAL' });
  const hot = digestOf('hot-subject');
  let cold = '';
  const perSubject = 10;
  for (let i = 0; i < total + hotCount; i++) {
    const isHot = i < hotCount;
    const subject = isHot ? hot : digestOf(`subject-${Math.floor(i / perSubject)}`);
    if (!isHot && !cold) cold = subject;
    const type = TYPES[i % TYPES.length]!;
    const annotations = { 'org.example.signer': i % 2 ? 'alice' : 'bob', 'org.example.n': String(i) };
    const body = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: type,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf('{}'), size: 2 },
      layers: [],
      subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: subject, size: 1 },
      annotations,
    });
    const bytes = Buffer.from(body);
    await meta.putManifest(
      {
        repo: REPO,
        digest: digestOf(body),
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactType: type,
        size: bytes.length,
        subjectDigest: subject,
        annotations,
        bytes,
        blobs: [],
        children: [],
      },
      [],
    );
  }
  await meta.close();
  return { hot, cold };
}

async function measure(label: string, fn: () => Promise<void>, n = samples) {
  for (let i = 0; i < Math.min(10, n); i++) await fn(); // warm-up
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return {
    label,
    samples: n,
    p50ms: +percentile(times, 50).toFixed(3),
    p99ms: +percentile(times, 99).toFixed(3),
  };
}

async function page(url: string, headers: Record<string, string> = {}, expect = 200): Promise<Response> {
  const res = await fetch(url, { headers });
  await res.arrayBuffer();
  if (res.status !== expect) throw new Error(`${url}: ${res.status}`);
  return res;
}

const results: Record<string, unknown>[] = [];
for (const total of sizes) {
  const dir = await mkdtemp(join(tmpdir(), 'tether-bench-'));
  try {
    const seedStart = performance.now();
    const { hot, cold } = await seed(dir, total);
    const seedSeconds = (performance.now() - seedStart) / 1000;
    const server = await spawnTether(dir, ['--log-level', 'warn']);
    try {
      const base = `${server.url}/v2/${REPO}/referrers`;
      const etag = (await page(`${base}/${hot}`)).headers.get('etag')!;
      const rows = [
        await measure('hot: first page (1000)', () => page(`${base}/${hot}`).then(() => {})),
        await measure('hot: first page n=100', () => page(`${base}/${hot}?n=100`).then(() => {})),
        await measure('hot: artifactType filter (1/4 match)', () =>
          page(`${base}/${hot}?artifactType=${encodeURIComponent(TYPES[1]!)}`).then(() => {}),
        ),
        await measure('hot: annotation filter (1/2 match)', () =>
          page(`${base}/${hot}?annotation=org.example.signer=alice`).then(() => {}),
        ),
        await measure('hot: 304 poll', () =>
          page(`${base}/${hot}`, { 'If-None-Match': etag }, 304).then(() => {}),
        ),
        await measure('cold subject page (10)', () => page(`${base}/${cold}`).then(() => {})),
        await measure(
          'hot: full walk, per page (n=1000)',
          async () => {
            let next: string | undefined = `/v2/${REPO}/referrers/${hot}`;
            let pages = 0;
            while (next) {
              const res = await page(`${server.url}${next}`);
              pages++;
              const link = res.headers.get('link');
              next = link ? /^<([^>]+)>/.exec(link)![1] : undefined;
            }
            if (pages !== Math.ceil(hotCount / 1000)) throw new Error(`walked ${pages} pages`);
          },
          Math.max(5, Math.floor(samples / 20)),
        ),
      ];
      const walk = rows.at(-1)!;
      walk.p50ms = +(walk.p50ms / Math.ceil(hotCount / 1000)).toFixed(3);
      walk.p99ms = +(walk.p99ms / Math.ceil(hotCount / 1000)).toFixed(3);
      for (const row of rows)
        results.push({
          repositoryReferrers: total + hotCount,
          seedSeconds: +seedSeconds.toFixed(1),
          ...row,
        });
    } finally {
      await server.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

console.log(JSON.stringify(results, null, 2));
console.log('\n| referrers in repo | workload | p50 ms | p99 ms |\n|---:|---|---:|---:|');
for (const r of results) console.log(`| ${r.repositoryReferrers} | ${r.label} | ${r.p50ms} | ${r.p99ms} |`);
