/** The six workload families, each a function of (registry URL, label, options) → Result. */
import {
  BodySource,
  type DriveOptions,
  drive,
  exchange,
  expect,
  expectBody,
  imageManifest,
  MB,
  pushBlob,
  putManifest,
  type Result,
  smallBlob,
  timed,
  uniqueRepo,
} from './workloads.ts';

/**
 * A workload's options: how `drive` runs it (`c`, `n`, and `onMeasureStart`, which every workload here
 * calls right before its first timed operation, after its setup: the pushes a pull reads, the seeding
 * of referrers, tags or repositories) and what it moves.
 */
export interface WorkloadOptions extends DriveOptions {
  size?: number;
  chunked?: boolean;
}

const CONFIG = smallBlob(
  JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
);

/** 1. Whole-image push (layer + config + manifest) into a fresh repository per operation. */
export async function imagePush(base: string, label: string, o: WorkloadOptions): Promise<Result> {
  const size = o.size ?? MB;
  const source = new BodySource(size);
  const name = `push ${size / MB} MB ${o.chunked ? 'chunked' : 'monolithic'}`;
  return drive(name, label, o, () =>
    timed(async () => {
      const repo = uniqueRepo('bench/push');
      const layer = await pushBlob(base, repo, source, o.chunked ? 5 * MB : 0);
      await pushBlob(base, repo, CONFIG);
      await putManifest(
        base,
        repo,
        'latest',
        imageManifest({ digest: CONFIG.digest, size: CONFIG.bytes.length }, { digest: layer, size }),
      );
      return { bytes: size };
    }),
  );
}

/**
 * 2. Image pull: HEAD + GET manifest, GET config, GET layer (TTFB of the layer reported). Every answer
 * must be a 200, every body exactly as long as what was pushed, and the manifest must parse and name the
 * layer; MB/s counts the layer bytes received (as the push counts the layer bytes sent).
 */
export async function imagePull(base: string, label: string, o: WorkloadOptions): Promise<Result> {
  const size = o.size ?? MB;
  const repo = uniqueRepo('bench/pull');
  const layer = await pushBlob(base, repo, new BodySource(size));
  await pushBlob(base, repo, CONFIG);
  const manifest = imageManifest(
    { digest: CONFIG.digest, size: CONFIG.bytes.length },
    { digest: layer, size },
  );
  await putManifest(base, repo, 'latest', manifest);
  const accept = { Accept: 'application/vnd.oci.image.manifest.v1+json' };
  return drive(`pull ${size / MB} MB`, label, o, () =>
    timed(async () => {
      expect(
        await exchange(base, 'HEAD', `/v2/${repo}/manifests/latest`, { headers: accept }),
        [200],
        'manifest HEAD',
      );
      const got = expectBody(
        await exchange(base, 'GET', `/v2/${repo}/manifests/latest`, { headers: accept, keep: true }),
        [200],
        manifest.length,
        'manifest GET',
      );
      const layers = (JSON.parse(got.body.toString()) as { layers?: { digest?: string }[] }).layers;
      if (layers?.[0]?.digest !== layer)
        throw new Error('manifest GET: the manifest does not name the layer');
      expectBody(
        await exchange(base, 'GET', `/v2/${repo}/blobs/${CONFIG.digest}`),
        [200],
        CONFIG.bytes.length,
        'config GET',
      );
      return getBlob(base, repo, layer, size, 'layer GET');
    }),
  );
}

/** 3a. Blob push of `size` bytes per operation (MB/s). */
export async function blobPush(base: string, label: string, o: WorkloadOptions): Promise<Result> {
  const size = o.size ?? 1024 * MB;
  const source = new BodySource(size);
  const repo = uniqueRepo('bench/blob');
  return drive(`blob push ${size / MB} MB x${o.c}`, label, o, () =>
    timed(async () => {
      await pushBlob(base, repo, source);
      return { bytes: size };
    }),
  );
}

/** 3b. Blob pull of `size` bytes per operation (MB/s of the bytes received, which must be `size`; TTFB). */
export async function blobPull(base: string, label: string, o: WorkloadOptions): Promise<Result> {
  const size = o.size ?? 1024 * MB;
  const repo = uniqueRepo('bench/blob');
  const digest = await pushBlob(base, repo, new BodySource(size));
  return drive(`blob pull ${size / MB} MB x${o.c}`, label, o, () =>
    timed(() => getBlob(base, repo, digest, size, 'blob GET')),
  );
}

/** GETs a blob, which must answer 200 with exactly `size` bytes: the bytes received and the TTFB. */
async function getBlob(
  base: string,
  repo: string,
  digest: string,
  size: number,
  what: string,
): Promise<{ bytes: number; ttfbMs?: number }> {
  const reply = expectBody(await exchange(base, 'GET', `/v2/${repo}/blobs/${digest}`), [200], size, what);
  return { bytes: reply.received, ttfbMs: reply.ttfbMs };
}

async function manifestRepo(base: string): Promise<string> {
  const repo = uniqueRepo('bench/manifests');
  await pushBlob(base, repo, CONFIG);
  return repo;
}

/** 4a. Small manifest PUT (unique content, unique tag). */
export async function manifestPut(base: string, label: string, o: WorkloadOptions): Promise<Result> {
  const repo = await manifestRepo(base);
  const config = { digest: CONFIG.digest, size: CONFIG.bytes.length };
  return drive('manifest PUT', label, o, (i) =>
    timed(async () => {
      const bytes = imageManifest(config, { digest: '', size: 0 }, { n: String(i) });
      await putManifest(base, repo, `t${i}`, bytes);
      return { bytes: bytes.length };
    }),
  );
}

/** 4b. Small manifest GET by tag (the body received must be as long as the manifest pushed). */
export async function manifestGet(base: string, label: string, o: WorkloadOptions): Promise<Result> {
  const repo = await manifestRepo(base);
  const bytes = imageManifest({ digest: CONFIG.digest, size: CONFIG.bytes.length }, { digest: '', size: 0 });
  await putManifest(base, repo, 'latest', bytes);
  return drive('manifest GET', label, o, () =>
    timed(async () => {
      const reply = expectBody(
        await exchange(base, 'GET', `/v2/${repo}/manifests/latest`, {
          headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
        }),
        [200],
        bytes.length,
        'manifest GET',
      );
      return { bytes: reply.received };
    }),
  );
}

/** Pushes `count` manifests with `make(i)` at concurrency 32 (seeding, not measured). */
async function seed(count: number, make: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < count) await make(next++);
    }),
  );
}

/** Follows `Link: <…>; rel="next"` from `path`, handing each page's JSON to `onPage`; returns total bytes. */
async function walkPages(base: string, path: string, onPage: (body: unknown) => void): Promise<number> {
  let next: string | undefined = path;
  let bytes = 0;
  while (next) {
    const reply = expect(await exchange(base, 'GET', next, { keep: true }), [200], `GET ${next}`);
    bytes += reply.received;
    onPage(JSON.parse(reply.body.toString()));
    const link = reply.headers.link;
    next = typeof link === 'string' ? /<([^>]+)>/.exec(link)?.[1] : undefined;
  }
  return bytes;
}

/** 5. Referrers of a subject with `hot` referrers, in a repository of `total` manifests; pages walked. */
export async function referrers(
  base: string,
  label: string,
  o: WorkloadOptions & { hot: number; total: number; filter?: boolean },
): Promise<Result> {
  const repo = await manifestRepo(base);
  const empty = smallBlob('{}');
  await pushBlob(base, repo, empty);
  const subjectBytes = imageManifest(
    { digest: CONFIG.digest, size: CONFIG.bytes.length },
    { digest: '', size: 0 },
  );
  await putManifest(base, repo, 'subject', subjectBytes);
  const subject = smallBlob(subjectBytes.toString()).digest;
  const types = [
    'application/vnd.example.sig',
    'application/spdx+json',
    'application/vnd.in-toto+json',
    'application/vnd.example.tuf',
  ];
  await seed(o.total, async (i) => {
    const referrer = i < o.hot;
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactType: types[i % types.length],
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: 2 },
        layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: 2 }],
        ...(referrer
          ? {
              subject: {
                mediaType: 'application/vnd.oci.image.manifest.v1+json',
                digest: subject,
                size: subjectBytes.length,
              },
            }
          : {}),
        annotations: { n: String(i) },
      }),
    );
    await putManifest(base, repo, smallBlob(body.toString()).digest, body);
  });
  const wanted = types[1]!;
  const query = o.filter ? `?artifactType=${encodeURIComponent(wanted)}` : '';
  // The referrers are i < hot; i gets types[i mod 4], so the filter on types[1] matches i ≡ 1 (mod 4):
  // floor((hot + 2) / 4) of them.
  const expected = o.filter ? Math.floor((o.hot + 2) / 4) : o.hot;
  return drive(`referrers ${o.hot} of ${o.total}${o.filter ? ' filtered' : ''} (walk)`, label, o, () =>
    timed(async () => {
      let entries = 0;
      const bytes = await walkPages(base, `/v2/${repo}/referrers/${subject}${query}`, (page) => {
        const manifests = (page as { manifests: { artifactType?: string }[] }).manifests;
        entries += manifests.length;
        if (o.filter && manifests.some((m) => m.artifactType !== wanted))
          throw new Error(`a referrer of another artifactType than ${wanted} was listed: filter ignored`);
      });
      if (entries !== expected) throw new Error(`saw ${entries} referrers, expected ${expected}`);
      return { bytes };
    }),
  );
}

/**
 * 6a. Tags list of a repository with `count` tags, asked in pages of `n=1000` and followed through Link
 * to the end, like the catalog, so an operation is the same requests on every registry that honours
 * n=1000 (one that allows larger pages does not get to answer in one); all `count` tags must be listed.
 */
export async function tagsList(
  base: string,
  label: string,
  o: WorkloadOptions & { count: number },
): Promise<Result> {
  const repo = await manifestRepo(base);
  const bytes = imageManifest({ digest: CONFIG.digest, size: CONFIG.bytes.length }, { digest: '', size: 0 });
  await seed(o.count, (i) => putManifest(base, repo, `tag-${i}`, bytes));
  return drive(`tags list (${o.count})`, label, o, () =>
    timed(async () => {
      let seen = 0;
      const bytes = await walkPages(base, `/v2/${repo}/tags/list?n=1000`, (page) => {
        seen += ((page as { tags: string[] | null }).tags ?? []).length;
      });
      if (seen !== o.count) throw new Error(`listed ${seen} tags, expected ${o.count}`);
      return { bytes };
    }),
  );
}

/**
 * 6b. Catalog of `count` repositories, asked in pages of `n=1000` and followed through Link to the end; at
 * least `count` repositories must be listed (the other workloads' repositories are in it too).
 */
export async function catalog(
  base: string,
  label: string,
  o: WorkloadOptions & { count: number },
): Promise<Result> {
  const index = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }),
  );
  // One fixed set of names: a later round (or a rerun against the same server) puts the same manifests
  // into the same repositories again, so the catalog stays at `count` repositories plus what the other
  // workloads created, instead of growing by `count` every round.
  const prefix = 'bench/catalog';
  await seed(o.count, (i) =>
    putManifest(base, `${prefix}/r${i}`, 'latest', index, 'application/vnd.oci.image.index.v1+json'),
  );
  return drive(`catalog (${o.count} repos)`, label, o, () =>
    timed(async () => {
      let seen = 0;
      const bytes = await walkPages(base, '/v2/_catalog?n=1000', (page) => {
        seen += (page as { repositories: string[] }).repositories.length;
      });
      if (seen < o.count) throw new Error(`catalog listed ${seen}`);
      return { bytes };
    }),
  );
}
