import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { pushBlob, pushImage, pushManifest, sha256 } from '../helpers/oci.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const sha512 = (data: string) => `sha512:${createHash('sha512').update(data).digest('hex')}`;
const EMPTY = { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 };

interface Subject {
  digest: string;
  size: number;
  mediaType?: string;
}

function artifact(
  subject: Subject | undefined,
  artifactType: string | undefined,
  annotations?: Record<string, string>,
) {
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    ...(artifactType ? { artifactType } : {}),
    config: EMPTY,
    layers: [EMPTY],
    ...(subject
      ? {
          subject: {
            mediaType: subject.mediaType ?? OCI_MANIFEST,
            digest: subject.digest,
            size: subject.size,
          },
        }
      : {}),
    ...(annotations ? { annotations } : {}),
  };
}

async function referrers(base: string, repo: string, digest: string, query = '') {
  const res = await fetch(`${base}/v2/${repo}/referrers/${digest}${query}`);
  assert.equal(res.status, 200, `referrers of ${digest}${query}`);
  assert.equal(res.headers.get('content-type'), OCI_INDEX);
  const body = (await res.json()) as {
    schemaVersion: number;
    mediaType: string;
    manifests: Record<string, unknown>[];
  };
  assert.equal(body.schemaVersion, 2);
  assert.equal(body.mediaType, OCI_INDEX);
  return { res, body, digests: body.manifests.map((m) => m.digest as string).sort() };
}

async function pushArtifact(
  base: string,
  repo: string,
  subject: Subject | undefined,
  type?: string,
  annotations?: Record<string, string>,
  ref?: string,
) {
  const body = artifact(subject, type, annotations);
  const digest = sha256(JSON.stringify(body));
  const pushed = await pushManifest(base, repo, ref ?? digest, body);
  assert.equal(pushed.response.status, 201, await pushed.response.clone().text());
  return pushed;
}

async function allPages(base: string, repo: string, digest: string, query: string): Promise<string[]> {
  const seen: string[] = [];
  let next: string | undefined = `/v2/${repo}/referrers/${digest}${query}`;
  while (next) {
    const res = await fetch(`${base}${next}`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { manifests: { digest: string }[] };
    seen.push(...body.manifests.map((m) => m.digest));
    const link = res.headers.get('link');
    next = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1] : undefined;
  }
  return seen;
}

describe('referrers API', () => {
  let reg: RunningRegistry;
  before(async () => {
    reg = await startRegistry({ settings: { 'limits.pageSizeMax': 1000 } });
  });
  after(() => reg.close());

  test('a signature pushed before its image is accepted, listed, and found once the image arrives', async () => {
    await pushBlob(reg.url, 'early', '{}');
    const layer = 'future image layer';
    const config = JSON.stringify({ architecture: 'amd64', os: 'linux' });
    const configDigest = await pushBlob(reg.url, 'early', config);
    const layerDigest = await pushBlob(reg.url, 'early', layer);
    const image = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length },
      ],
    };
    const imageBytes = JSON.stringify(image);
    const subject = { digest: sha256(imageBytes), size: imageBytes.length };
    const sig = await pushArtifact(reg.url, 'early', subject, 'application/vnd.example.sig');
    assert.equal(sig.response.headers.get('oci-subject'), subject.digest);
    assert.deepEqual((await referrers(reg.url, 'early', subject.digest)).digests, [sig.digest]);
    const pushedImage = await pushManifest(reg.url, 'early', 'v1', imageBytes);
    assert.equal(pushedImage.response.status, 201);
    assert.deepEqual((await referrers(reg.url, 'early', subject.digest)).digests, [sig.digest]);
  });

  test('descriptors carry artifactType by precedence and annotations verbatim; index without type omits it', async () => {
    const img = await pushImage(reg.url, 'desc', 'v1');
    await pushBlob(reg.url, 'desc', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const explicit = await pushArtifact(reg.url, 'desc', subject, 'application/vnd.example.explicit', {
      a: '1',
      b: '',
      c: 'a "quote", a \\ and é',
    });
    const configBytes = 'custom config';
    const configDigest = await pushBlob(reg.url, 'desc', configBytes);
    const derivedBody = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.example.derived',
        digest: configDigest,
        size: configBytes.length,
      },
      layers: [],
      subject: { mediaType: OCI_MANIFEST, digest: img.digest, size: img.bytes.length },
    };
    const derived = await pushManifest(reg.url, 'desc', sha256(JSON.stringify(derivedBody)), derivedBody);
    assert.equal(derived.response.status, 201);
    const indexBody = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: explicit.digest, size: explicit.bytes.length }],
      subject: { mediaType: OCI_MANIFEST, digest: img.digest, size: img.bytes.length },
      annotations: { kind: 'index' },
    };
    const index = await pushManifest(reg.url, 'desc', 'idx-tag', indexBody, OCI_INDEX);
    assert.equal(index.response.status, 201);
    assert.equal(index.response.headers.get('oci-subject'), img.digest);

    const { body } = await referrers(reg.url, 'desc', img.digest);
    const byDigest = new Map(body.manifests.map((m) => [m.digest as string, m]));
    assert.deepEqual(byDigest.get(explicit.digest), {
      mediaType: OCI_MANIFEST,
      digest: explicit.digest,
      size: explicit.bytes.length,
      artifactType: 'application/vnd.example.explicit',
      annotations: { a: '1', b: '', c: 'a "quote", a \\ and é' },
    });
    assert.deepEqual(byDigest.get(derived.digest), {
      mediaType: OCI_MANIFEST,
      digest: derived.digest,
      size: derived.bytes.length,
      artifactType: 'application/vnd.example.derived',
    });
    assert.deepEqual(byDigest.get(index.digest), {
      mediaType: OCI_INDEX,
      digest: index.digest,
      size: index.bytes.length,
      annotations: { kind: 'index' },
    });
    // Byte for byte, as clients that hash or diff the index see it: the descriptor's keys in the order
    // of the OCI descriptor (mediaType, digest, size, artifactType, annotations), no whitespace.
    const raw = await (await fetch(`${reg.url}/v2/desc/referrers/${img.digest}`)).text();
    assert.ok(
      raw.includes(
        `{"mediaType":"${OCI_MANIFEST}","digest":"${explicit.digest}","size":${explicit.bytes.length},` +
          `"artifactType":"application/vnd.example.explicit",` +
          `"annotations":{"a":"1","b":"","c":"a \\"quote\\", a \\\\ and é"}}`,
      ),
      raw,
    );
    // The index is also a subject of its own referrers.
    const onIndex = await pushArtifact(
      reg.url,
      'desc',
      { digest: index.digest, size: index.bytes.length, mediaType: OCI_INDEX },
      'application/x',
    );
    assert.deepEqual((await referrers(reg.url, 'desc', index.digest)).digests, [onIndex.digest]);
  });

  test('a referrer that is also tagged appears once', async () => {
    const img = await pushImage(reg.url, 'tagged', 'v1');
    await pushBlob(reg.url, 'tagged', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const a = await pushArtifact(reg.url, 'tagged', subject, 'application/x', undefined, 'sig-tag');
    await pushArtifact(reg.url, 'tagged', subject, 'application/x', undefined, 'sig-tag-2');
    await pushArtifact(reg.url, 'tagged', subject, 'application/x', undefined, a.digest);
    assert.deepEqual((await referrers(reg.url, 'tagged', img.digest)).digests, [a.digest]);
  });

  test('referrers are scoped to their repository: a separate signature repository works', async () => {
    const img = await pushImage(reg.url, 'app/image', 'v1');
    await pushBlob(reg.url, 'app/signatures', '{}');
    const sig = await pushArtifact(
      reg.url,
      'app/signatures',
      { digest: img.digest, size: img.bytes.length },
      'application/sig',
    );
    assert.deepEqual((await referrers(reg.url, 'app/signatures', img.digest)).digests, [sig.digest]);
    assert.deepEqual((await referrers(reg.url, 'app/image', img.digest)).digests, []);
    // Unknown repository: still 200 with an empty index, never a 404 while the API is on.
    assert.deepEqual((await referrers(reg.url, 'never/pushed', img.digest)).digests, []);
  });

  test('deleting a subject keeps its referrers; re-pushing it finds them; deleting a referrer removes it at once', async () => {
    const img = await pushImage(reg.url, 'weak', 'v1');
    await pushBlob(reg.url, 'weak', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const sig = await pushArtifact(reg.url, 'weak', subject, 'application/sig');
    const sbom = await pushArtifact(reg.url, 'weak', subject, 'application/sbom');
    assert.equal(
      (await fetch(`${reg.url}/v2/weak/manifests/${img.digest}`, { method: 'DELETE' })).status,
      202,
    );
    assert.equal((await fetch(`${reg.url}/v2/weak/manifests/${img.digest}`)).status, 404);
    assert.deepEqual(
      (await referrers(reg.url, 'weak', img.digest)).digests,
      [sig.digest, sbom.digest].sort(),
    );
    const again = await pushManifest(reg.url, 'weak', 'v1', img.bytes.toString());
    assert.equal(again.response.status, 201);
    assert.deepEqual(
      (await referrers(reg.url, 'weak', img.digest)).digests,
      [sig.digest, sbom.digest].sort(),
    );
    assert.equal(
      (await fetch(`${reg.url}/v2/weak/manifests/${sig.digest}`, { method: 'DELETE' })).status,
      202,
    );
    assert.deepEqual((await referrers(reg.url, 'weak', img.digest)).digests, [sbom.digest]);
  });

  test('filters apply before paging: artifactType ORs, annotation ANDs, OCI-Filters-Applied names them', async () => {
    const img = await pushImage(reg.url, 'filters', 'v1');
    await pushBlob(reg.url, 'filters', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const pushed: { digest: string; type: string; signer: string }[] = [];
    for (let i = 0; i < 30; i++) {
      const type = ['application/sig', 'application/sbom', 'application/tuf'][i % 3]!;
      const signer = i % 2 === 0 ? 'alice' : 'bob';
      const p = await pushArtifact(reg.url, 'filters', subject, type, { signer, n: String(i) });
      pushed.push({ digest: p.digest, type, signer });
    }
    const sigs = await referrers(reg.url, 'filters', img.digest, '?artifactType=application/sig');
    assert.equal(sigs.res.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(
      sigs.digests,
      pushed
        .filter((p) => p.type === 'application/sig')
        .map((p) => p.digest)
        .sort(),
    );
    const two = await referrers(
      reg.url,
      'filters',
      img.digest,
      '?artifactType=application/sig&artifactType=application/tuf',
    );
    assert.equal(two.digests.length, 20);
    const alice = await referrers(
      reg.url,
      'filters',
      img.digest,
      '?annotation=signer=alice&artifactType=application/sbom',
    );
    assert.equal(alice.res.headers.get('oci-filters-applied'), 'artifactType,annotation');
    assert.deepEqual(
      alice.digests,
      pushed
        .filter((p) => p.type === 'application/sbom' && p.signer === 'alice')
        .map((p) => p.digest)
        .sort(),
    );
    const none = await referrers(
      reg.url,
      'filters',
      img.digest,
      '?annotation=signer=alice&annotation=signer=bob',
    );
    assert.deepEqual(none.digests, []);
    // Paged and filtered: every page is full until the last, and the walk equals the filtered set.
    const walked = await allPages(reg.url, 'filters', img.digest, '?artifactType=application/sig&n=3');
    assert.deepEqual(walked.sort(), sigs.digests);
    const unfiltered = await referrers(reg.url, 'filters', img.digest);
    assert.equal(unfiltered.res.headers.get('oci-filters-applied'), null);
    for (const bad of ['?artifactType=not-a-type', '?annotation=novalue', '?annotation==x']) {
      const res = await fetch(`${reg.url}/v2/filters/referrers/${img.digest}${bad}`);
      assert.equal(res.status, 400, bad);
      assert.ok(((await res.json()) as { errors: unknown[] }).errors.length > 0);
    }
    for (const bad of ['sha256:abc', 'sha256-' + 'a'.repeat(64), 'md5:' + 'a'.repeat(32)]) {
      const res = await fetch(`${reg.url}/v2/filters/referrers/${bad}`);
      assert.equal(res.status, 400, bad);
      assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]!.code, 'DIGEST_INVALID');
    }
  });

  test("an artifactType with '+' filters the same sent raw (a query's space) or percent-encoded", async () => {
    const img = await pushImage(reg.url, 'plus', 'v1');
    await pushBlob(reg.url, 'plus', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const spdx = await pushArtifact(reg.url, 'plus', subject, 'application/spdx+json');
    await pushArtifact(reg.url, 'plus', subject, 'application/spdx');
    await pushArtifact(reg.url, 'plus', subject, 'application/sig');
    for (const query of [
      '?artifactType=application/spdx+json',
      '?artifactType=application/spdx%2Bjson',
      '?artifactType=application/spdx%20json',
    ]) {
      const listed = await referrers(reg.url, 'plus', img.digest, query);
      assert.equal(listed.res.headers.get('oci-filters-applied'), 'artifactType', query);
      assert.deepEqual(listed.digests, [spdx.digest], query);
      assert.equal(listed.body.manifests[0]!.artifactType, 'application/spdx+json');
    }
  });

  test('ETag: HEAD works, 304 while unchanged, 200 with a new ETag after any change to the set', async () => {
    const img = await pushImage(reg.url, 'etag', 'v1');
    await pushBlob(reg.url, 'etag', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const url = `${reg.url}/v2/etag/referrers/${img.digest}`;
    const first = await fetch(url);
    const etag = first.headers.get('etag')!;
    assert.match(etag, /^"[0-9a-f]{40}"$/);
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('etag'), etag);
    assert.equal(head.headers.get('content-length'), first.headers.get('content-length'));
    assert.equal((await fetch(url, { headers: { 'If-None-Match': etag } })).status, 304);
    const sig = await pushArtifact(reg.url, 'etag', subject, 'application/sig');
    const changed = await fetch(url, { headers: { 'If-None-Match': etag } });
    assert.equal(changed.status, 200);
    const etag2 = changed.headers.get('etag')!;
    assert.notEqual(etag2, etag);
    assert.equal((await fetch(url, { headers: { 'If-None-Match': etag2 } })).status, 304);
    // Unrelated pushes leave the set, and its ETag, alone.
    await pushImage(reg.url, 'etag', 'other');
    assert.equal((await fetch(url, { headers: { 'If-None-Match': etag2 } })).status, 304);
    await fetch(`${reg.url}/v2/etag/manifests/${sig.digest}`, { method: 'DELETE' });
    assert.equal((await fetch(url, { headers: { 'If-None-Match': etag2 } })).status, 200);
    // Filters and pages have their own validators.
    assert.notEqual((await fetch(`${url}?artifactType=application/sig`)).headers.get('etag'), etag2);
  });

  test('Docker manifests ignore subject; a malformed subject is 400 MANIFEST_INVALID', async () => {
    const img = await pushImage(reg.url, 'docker', 'v1');
    const cfg = await pushBlob(reg.url, 'docker', '{"os":"linux"}');
    const docker = {
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: cfg, size: 14 },
      layers: [],
      subject: { mediaType: OCI_MANIFEST, digest: img.digest, size: img.bytes.length },
    };
    const pushed = await pushManifest(reg.url, 'docker', 'd1', docker, docker.mediaType);
    assert.equal(pushed.response.status, 201);
    assert.equal(pushed.response.headers.get('oci-subject'), null);
    assert.deepEqual((await referrers(reg.url, 'docker', img.digest)).digests, []);
    await pushBlob(reg.url, 'docker', '{}');
    for (const subject of [
      { mediaType: OCI_MANIFEST, digest: 'sha256:nothex', size: 1 },
      { mediaType: OCI_MANIFEST, digest: img.digest, size: -1 },
      { mediaType: OCI_MANIFEST, digest: img.digest },
      'not-an-object',
    ]) {
      const body = { ...artifact(undefined, 'application/x'), subject };
      const res = await pushManifest(reg.url, 'docker', 'bad', body);
      assert.equal(res.response.status, 400, JSON.stringify(subject));
      assert.equal(
        ((await res.response.json()) as { errors: { code: string }[] }).errors[0]!.code,
        'MANIFEST_INVALID',
      );
    }
  });

  test('pages stay under 4 MiB whatever the annotations weigh', async () => {
    const img = await pushImage(reg.url, 'heavy', 'v1');
    await pushBlob(reg.url, 'heavy', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const big = 'x'.repeat(900 * 1024);
    for (let i = 0; i < 6; i++)
      await pushArtifact(reg.url, 'heavy', subject, 'application/x', { big, i: String(i) });
    const first = await fetch(`${reg.url}/v2/heavy/referrers/${img.digest}`);
    const bytes = Buffer.from(await first.arrayBuffer());
    assert.ok(bytes.length <= 4 * 1024 * 1024, `page is ${bytes.length} bytes`);
    assert.ok(first.headers.get('link'), 'a Link to the rest');
    assert.equal((await allPages(reg.url, 'heavy', img.digest, '')).length, 6);
  });
});

describe('concurrency', () => {
  let reg: RunningRegistry;
  before(async () => {
    reg = await startRegistry({ settings: { 'limits.pageSizeMax': 1000 } });
  });
  after(() => reg.close());

  test('64 concurrent referrer pushes to one subject: none lost', async () => {
    const img = await pushImage(reg.url, 'race', 'v1');
    await pushBlob(reg.url, 'race', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const pushed = await Promise.all(
      Array.from({ length: 64 }, (_, i) =>
        pushArtifact(reg.url, 'race', subject, 'application/sig', { i: String(i) }),
      ),
    );
    const { digests } = await referrers(reg.url, 'race', img.digest);
    assert.deepEqual(digests, pushed.map((p) => p.digest).sort());
  });

  test('32 concurrent fallback-index writers with If-Match retries: none lost', async () => {
    const img = await pushImage(reg.url, 'fallback-race', 'v1');
    await pushBlob(reg.url, 'fallback-race', '{}');
    const tag = img.digest.replace(':', '-');
    let conflicts = 0;
    const writer = async (i: number) => {
      // A tag-mode client (oras --distribution-spec v1.1-referrers-tag, notation): push the artifact with
      // its subject, then add it to the fallback index with a read-modify-write.
      const art = await pushArtifact(
        reg.url,
        'fallback-race',
        { digest: img.digest, size: img.bytes.length },
        'application/old',
        { i: String(i) },
      );
      const entry = {
        mediaType: OCI_MANIFEST,
        digest: art.digest,
        size: art.bytes.length,
        artifactType: 'application/old',
      };
      for (let attempt = 0; attempt < 200; attempt++) {
        const current = await fetch(`${reg.url}/v2/fallback-race/manifests/${tag}`);
        const index =
          current.status === 404
            ? { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] as unknown[] }
            : ((await current.json()) as { schemaVersion: 2; mediaType: string; manifests: unknown[] });
        const condition: Record<string, string> =
          current.status === 404 ? { 'If-None-Match': '*' } : { 'If-Match': current.headers.get('etag')! };
        if (!index.manifests.some((m) => (m as { digest: string }).digest === art.digest))
          index.manifests.push(entry);
        // Each writer signs the index it writes, so no two writers write the same bytes.
        const signed = { ...index, annotations: { 'org.example.writer': String(i) } };
        const put = await pushManifest(reg.url, 'fallback-race', tag, signed, OCI_INDEX, condition);
        if (put.response.status === 201) return art.digest;
        assert.equal(put.response.status, 412, await put.response.text());
        conflicts++;
        await new Promise((r) => setTimeout(r, Math.random() * 10));
      }
      throw new Error('writer starved');
    };
    const written = await Promise.all(Array.from({ length: 32 }, (_, i) => writer(i)));
    const stored = (await (await fetch(`${reg.url}/v2/fallback-race/manifests/${tag}`)).json()) as {
      manifests: { digest: string }[];
    };
    assert.deepEqual(stored.manifests.map((m) => m.digest).sort(), written.sort());
    assert.ok(conflicts > 0, 'the writers really raced');
    // And the API lists the same set.
    assert.deepEqual((await referrers(reg.url, 'fallback-race', img.digest)).digests, written.sort());
  });

  test('pagination over 5000 referrers while another task inserts more: every original seen exactly once', async () => {
    const img = await pushImage(reg.url, 'pages', 'v1');
    await pushBlob(reg.url, 'pages', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const original: string[] = [];
    for (let batch = 0; batch < 50; batch++) {
      const pushed = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          pushArtifact(reg.url, 'pages', subject, 'application/x', { i: `${batch}-${i}` }),
        ),
      );
      original.push(...pushed.map((p) => p.digest));
    }
    let inserting = true;
    const inserter = (async () => {
      let i = 0;
      while (inserting) await pushArtifact(reg.url, 'pages', subject, 'application/x', { late: String(i++) });
      return i;
    })();
    const seen = await allPages(reg.url, 'pages', img.digest, '?n=250');
    inserting = false;
    const late = await inserter;
    assert.ok(late > 0, 'inserts ran during the walk');
    assert.equal(new Set(seen).size, seen.length, 'no referrer twice');
    const seenSet = new Set(seen);
    for (const digest of original) assert.ok(seenSet.has(digest), `missing ${digest}`);
  });
});

describe('fallback tags and the API agree both ways', () => {
  let reg: RunningRegistry;
  before(async () => {
    reg = await startRegistry();
  });
  after(() => reg.close());

  test('a fallback index counts only listed manifests whose subject is the tag digest, judged when they arrive', async () => {
    const img = await pushImage(reg.url, 'merge', 'v1');
    const other = await pushImage(reg.url, 'merge', 'v2');
    await pushBlob(reg.url, 'merge', '{}');
    const tag = img.digest.replace(':', '-');
    const subject = { digest: img.digest, size: img.bytes.length };
    const good = await pushArtifact(reg.url, 'merge', subject, 'application/good');
    const noSubject = await pushArtifact(reg.url, 'merge', undefined, 'application/nosubject');
    const wrongSubject = await pushArtifact(
      reg.url,
      'merge',
      { digest: other.digest, size: other.bytes.length },
      'application/wrong',
    );
    // Listed while they exist only as blobs (an index may list blobs), pushed as manifests afterwards.
    const lateBad = JSON.stringify(artifact(undefined, 'application/late-bad'));
    const lateGood = JSON.stringify(artifact(subject, 'application/late-good'));
    await pushBlob(reg.url, 'merge', lateBad);
    await pushBlob(reg.url, 'merge', lateGood);
    const entry = (digest: string, size: number, artifactType: string) => ({
      mediaType: OCI_MANIFEST,
      digest,
      size,
      artifactType,
    });
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        entry(noSubject.digest, noSubject.bytes.length, 'application/nosubject'),
        entry(wrongSubject.digest, wrongSubject.bytes.length, 'application/wrong'),
        entry(good.digest, good.bytes.length, 'application/good'),
        entry(sha256(lateBad), lateBad.length, 'application/late-bad'),
        entry(sha256(lateGood), lateGood.length, 'application/late-good'),
        // A platform image of a multi-arch index that happens to carry such a tag.
        entry(other.digest, other.bytes.length, 'application/vnd.oci.image.config.v1+json'),
      ],
    };
    assert.equal((await pushManifest(reg.url, 'merge', tag, index, OCI_INDEX)).response.status, 201);
    assert.deepEqual((await referrers(reg.url, 'merge', img.digest)).digests, [good.digest]);
    for (const type of ['application/nosubject', 'application/wrong']) {
      assert.deepEqual(
        (await referrers(reg.url, 'merge', img.digest, `?artifactType=${type}`)).digests,
        [],
        type,
      );
    }
    // The manifest that names another subject is a referrer of that one, and only of that one.
    assert.deepEqual((await referrers(reg.url, 'merge', other.digest)).digests, [wrongSubject.digest]);
    // Manifests pushed after the tag are judged by their own subject when they arrive.
    assert.equal((await pushManifest(reg.url, 'merge', sha256(lateBad), lateBad)).response.status, 201);
    assert.equal((await pushManifest(reg.url, 'merge', sha256(lateGood), lateGood)).response.status, 201);
    assert.deepEqual(
      (await referrers(reg.url, 'merge', img.digest)).digests,
      [good.digest, sha256(lateGood)].sort(),
    );
    // Deleting a listed referrer removes it (the tag does not keep it alive).
    await fetch(`${reg.url}/v2/merge/manifests/${good.digest}`, { method: 'DELETE' });
    assert.deepEqual((await referrers(reg.url, 'merge', img.digest)).digests, [sha256(lateGood)]);
  });

  test('sha512: a fallback tag carries 64 hex of the subject; its entries count only with that exact subject', async () => {
    await pushBlob(reg.url, 'merge512', '{}');
    const image = JSON.stringify({ ...artifact(undefined, 'application/vnd.example.image'), n: 512 });
    const digest = sha512(image);
    assert.equal((await pushManifest(reg.url, 'merge512', digest, image)).response.status, 201);
    const tag = `sha512-${digest.slice('sha512:'.length, 'sha512:'.length + 64)}`;
    const subject = { digest, size: image.length };
    const good = await pushArtifact(reg.url, 'merge512', subject, 'application/good');
    const noSubject = await pushArtifact(reg.url, 'merge512', undefined, 'application/nosubject');
    // Same first 64 hex, another digest: listed under the same tag, but not this subject's referrer.
    const lookalike = { digest: `${digest.slice(0, -1)}${digest.endsWith('0') ? '1' : '0'}`, size: 1 };
    const twin = await pushArtifact(reg.url, 'merge512', lookalike, 'application/twin');
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [good, noSubject, twin].map((m) => ({
        mediaType: OCI_MANIFEST,
        digest: m.digest,
        size: m.bytes.length,
      })),
    };
    assert.equal((await pushManifest(reg.url, 'merge512', tag, index, OCI_INDEX)).response.status, 201);
    assert.deepEqual((await referrers(reg.url, 'merge512', digest)).digests, [good.digest]);
    assert.deepEqual((await referrers(reg.url, 'merge512', lookalike.digest)).digests, [twin.digest]);
  });

  test('an unpushed fallback tag answers an index of the API referrers, and 404 when there are none', async () => {
    const img = await pushImage(reg.url, 'synth', 'v1');
    await pushBlob(reg.url, 'synth', '{}');
    const tag = img.digest.replace(':', '-');
    assert.equal((await fetch(`${reg.url}/v2/synth/manifests/${tag}`)).status, 404);
    const sig = await pushArtifact(
      reg.url,
      'synth',
      { digest: img.digest, size: img.bytes.length },
      'application/sig',
      { k: 'v' },
    );
    const res = await fetch(`${reg.url}/v2/synth/manifests/${tag}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), OCI_INDEX);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(res.headers.get('docker-content-digest'), sha256(bytes));
    const index = JSON.parse(bytes.toString()) as { manifests: Record<string, unknown>[] };
    assert.deepEqual(index.manifests, [
      {
        mediaType: OCI_MANIFEST,
        digest: sig.digest,
        size: sig.bytes.length,
        artifactType: 'application/sig',
        annotations: { k: 'v' },
      },
    ]);
    // A tag-only client writes the index back with If-Match on what it read (here with an annotation of
    // its own); a stale ETag is refused.
    const updated = { ...index, annotations: { 'org.example.writer': 'old-client' } };
    const stale = await pushManifest(reg.url, 'synth', tag, updated, OCI_INDEX, {
      'If-Match': `"${sha256('nope')}"`,
    });
    assert.equal(stale.response.status, 412);
    const ok = await pushManifest(reg.url, 'synth', tag, updated, OCI_INDEX, {
      'If-Match': res.headers.get('etag')!,
    });
    assert.equal(ok.response.status, 201, await ok.response.text());
    assert.deepEqual((await referrers(reg.url, 'synth', img.digest)).digests, [sig.digest]);
    const written = await fetch(`${reg.url}/v2/synth/manifests/${tag}`);
    assert.equal(written.headers.get('docker-content-digest'), ok.digest, 'the pushed index, byte-exact');
    // Such tags are tags, never read as digests: an image without referrers is not served under its tag.
    const plain = await pushImage(reg.url, 'synth', 'plain');
    assert.equal(
      (await fetch(`${reg.url}/v2/synth/manifests/${plain.digest.replace(':', '-')}`)).status,
      404,
    );
  });

  test('an unpushed fallback tag resolves to a digest that can be fetched, while its referrers stand', async () => {
    const img = await pushImage(reg.url, 'synthdigest', 'v1');
    await pushBlob(reg.url, 'synthdigest', '{}');
    const tag = img.digest.replace(':', '-');
    const subject = { digest: img.digest, size: img.bytes.length };
    await pushArtifact(reg.url, 'synthdigest', subject, 'application/sig');
    // As containerd and `regctl` do: HEAD the tag, then GET what it resolved to.
    const resolved = await fetch(`${reg.url}/v2/synthdigest/manifests/${tag}`, { method: 'HEAD' });
    const digest = resolved.headers.get('docker-content-digest')!;
    const byDigest = await fetch(`${reg.url}/v2/synthdigest/manifests/${digest}`);
    assert.equal(byDigest.status, 200);
    assert.equal(byDigest.headers.get('content-type'), OCI_INDEX);
    const bytes = Buffer.from(await byDigest.arrayBuffer());
    assert.equal(sha256(bytes), digest);
    assert.ok(
      bytes.equals(
        Buffer.from(await (await fetch(`${reg.url}/v2/synthdigest/manifests/${tag}`)).arrayBuffer()),
      ),
    );
    assert.equal(
      (await fetch(`${reg.url}/v2/synthdigest/manifests/${digest}`, { method: 'HEAD' })).status,
      200,
    );
    // Only in the repository that served it.
    assert.equal((await fetch(`${reg.url}/v2/synth/manifests/${digest}`)).status, 404);
    // Another referrer changes the index: the old digest is gone, the new one answers.
    await pushArtifact(reg.url, 'synthdigest', subject, 'application/sbom');
    assert.equal((await fetch(`${reg.url}/v2/synthdigest/manifests/${digest}`)).status, 404);
    const next = (await fetch(`${reg.url}/v2/synthdigest/manifests/${tag}`, { method: 'HEAD' })).headers.get(
      'docker-content-digest',
    )!;
    assert.notEqual(next, digest);
    assert.equal((await fetch(`${reg.url}/v2/synthdigest/manifests/${next}`)).status, 200);
  });

  test('a pushed fallback tag is served byte-exact while it lists exactly the referrers, else as an index of them', async () => {
    const img = await pushImage(reg.url, 'split', 'v1');
    await pushBlob(reg.url, 'split', '{}');
    const tag = img.digest.replace(':', '-');
    const subject = { digest: img.digest, size: img.bytes.length };
    const tagUrl = `${reg.url}/v2/split/manifests/${tag}`;
    const entry = (m: { digest: string; bytes: Buffer }, artifactType: string) => ({
      mediaType: OCI_MANIFEST,
      digest: m.digest,
      size: m.bytes.length,
      artifactType,
    });
    const read = async () => {
      const res = await fetch(tagUrl);
      assert.equal(res.status, 200, tag);
      assert.equal(res.headers.get('content-type'), OCI_INDEX);
      const bytes = Buffer.from(await res.arrayBuffer());
      assert.equal(res.headers.get('docker-content-digest'), sha256(bytes));
      assert.equal(res.headers.get('etag'), `"${sha256(bytes)}"`);
      const head = await fetch(tagUrl, { method: 'HEAD' });
      assert.equal(head.headers.get('docker-content-digest'), sha256(bytes), 'HEAD agrees with GET');
      const index = JSON.parse(bytes.toString()) as {
        schemaVersion: number;
        mediaType: string;
        manifests: { digest: string }[];
        annotations?: Record<string, string>;
      };
      return { bytes, digest: sha256(bytes), index, digests: index.manifests.map((m) => m.digest).sort() };
    };

    // A tag-mode client (tether attach --referrers-mode tag) attaches a signature and writes the tag.
    const sig = await pushArtifact(reg.url, 'split', subject, 'application/sig');
    const pushed = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [entry(sig, 'application/sig')],
      annotations: { 'org.example.writer': 'tag-client' },
    };
    const first = await pushManifest(reg.url, 'split', tag, pushed, OCI_INDEX, {
      'If-Match': `"${(await read()).digest}"`,
    });
    assert.equal(first.response.status, 201);
    assert.ok((await read()).bytes.equals(first.bytes), 'lists exactly the referrers: byte-exact');

    // An API client attaches an SBOM: tag readers see it too, in an index that keeps the pushed
    // index's own fields, and whose digest answers by digest as well.
    const sbom = await pushArtifact(reg.url, 'split', subject, 'application/sbom');
    const merged = await read();
    assert.notEqual(merged.digest, first.digest);
    assert.deepEqual(merged.digests, [sig.digest, sbom.digest].sort());
    assert.equal(merged.index.schemaVersion, 2);
    assert.equal(merged.index.mediaType, OCI_INDEX);
    assert.deepEqual(merged.index.annotations, { 'org.example.writer': 'tag-client' });
    const byDigest = await fetch(`${reg.url}/v2/split/manifests/${merged.digest}`);
    assert.equal(byDigest.status, 200);
    assert.ok(Buffer.from(await byDigest.arrayBuffer()).equals(merged.bytes));
    assert.equal(
      (await fetch(`${reg.url}/v2/split/manifests/${merged.digest}`, { method: 'HEAD' })).status,
      200,
    );
    // The API is unchanged by any of this.
    assert.deepEqual((await referrers(reg.url, 'split', img.digest)).digests, merged.digests);

    // The tag client's read-modify-write: If-Match on what it read works; on the pushed index's digest,
    // which is no longer what the tag shows, it is refused (412), as any stale ETag.
    const third = await pushArtifact(reg.url, 'split', subject, 'application/third');
    const now = await read();
    const rewritten = {
      ...pushed,
      manifests: [entry(sig, 'application/sig'), entry(sbom, 'application/sbom'), entry(third, 'x/y')],
    };
    const stale = await pushManifest(reg.url, 'split', tag, rewritten, OCI_INDEX, {
      'If-Match': `"${first.digest}"`,
    });
    assert.equal(stale.response.status, 412);
    const staleBuilt = await pushManifest(reg.url, 'split', tag, rewritten, OCI_INDEX, {
      'If-Match': `"${merged.digest}"`,
    });
    assert.equal(staleBuilt.response.status, 412, 'an index built before the third referrer is stale');
    const ok = await pushManifest(reg.url, 'split', tag, rewritten, OCI_INDEX, {
      'If-Match': `"${now.digest}"`,
    });
    assert.equal(ok.response.status, 201, await ok.response.text());
    assert.ok((await read()).bytes.equals(ok.bytes), 'lists exactly the referrers again: byte-exact');
    assert.equal(
      (await fetch(`${reg.url}/v2/split/manifests/${now.digest}`)).status,
      404,
      'a built index is gone once the tag shows something else',
    );

    // A referrer deleted since no longer shows under the tag.
    assert.equal(
      (await fetch(`${reg.url}/v2/split/manifests/${sig.digest}`, { method: 'DELETE' })).status,
      202,
    );
    const afterDelete = await read();
    assert.deepEqual(afterDelete.digests, [sbom.digest, third.digest].sort());
    assert.deepEqual(afterDelete.index.annotations, { 'org.example.writer': 'tag-client' });

    // Entries that are no referrers of the subject never show, and make the pushed index a built one.
    const stray = await pushArtifact(reg.url, 'split', undefined, 'application/stray');
    const withStray = {
      ...pushed,
      manifests: [entry(sbom, 'application/sbom'), entry(third, 'x/y'), entry(stray, 'application/stray')],
    };
    const strayPut = await pushManifest(reg.url, 'split', tag, withStray, OCI_INDEX, {
      'If-Match': `"${afterDelete.digest}"`,
    });
    assert.equal(strayPut.response.status, 201);
    const noStray = await read();
    assert.notEqual(noStray.digest, strayPut.digest);
    assert.deepEqual(noStray.digests, [sbom.digest, third.digest].sort());

    // DELETE of the tag judges If-Match the same way.
    const del = (etag: string) =>
      fetch(tagUrl, { method: 'DELETE', headers: { 'If-Match': `"${etag}"` } }).then((r) => r.status);
    assert.equal(await del(strayPut.digest), 412);
    assert.equal(await del(noStray.digest), 202);
    assert.deepEqual((await read()).digests, [sbom.digest, third.digest].sort(), 'the API view again');
  });

  test('a pushed fallback tag whose referrers are all gone answers an empty index, not 404', async () => {
    const img = await pushImage(reg.url, 'emptied', 'v1');
    await pushBlob(reg.url, 'emptied', '{}');
    const tag = img.digest.replace(':', '-');
    const sig = await pushArtifact(
      reg.url,
      'emptied',
      { digest: img.digest, size: img.bytes.length },
      'application/sig',
    );
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: sig.digest, size: sig.bytes.length }],
    };
    assert.equal((await pushManifest(reg.url, 'emptied', tag, index, OCI_INDEX)).response.status, 201);
    await fetch(`${reg.url}/v2/emptied/manifests/${sig.digest}`, { method: 'DELETE' });
    const res = await fetch(`${reg.url}/v2/emptied/manifests/${tag}`);
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(bytes.toString(), `{"schemaVersion":2,"mediaType":"${OCI_INDEX}","manifests":[]}`);
    // A writer that starts again from it is admitted.
    const put = await pushManifest(reg.url, 'emptied', tag, bytes.toString(), OCI_INDEX, {
      'If-Match': res.headers.get('etag')!,
    });
    assert.equal(put.response.status, 201);
  });

  test('sha512: a pushed fallback tag shows the referrers of the subject it names 64 hex of', async () => {
    await pushBlob(reg.url, 'split512', '{}');
    const image = JSON.stringify({ ...artifact(undefined, 'application/vnd.example.image'), n: 5120 });
    const digest = sha512(image);
    assert.equal((await pushManifest(reg.url, 'split512', digest, image)).response.status, 201);
    const tag = `sha512-${digest.slice('sha512:'.length, 'sha512:'.length + 64)}`;
    const good = await pushArtifact(reg.url, 'split512', { digest, size: image.length }, 'application/good');
    const stray = await pushArtifact(reg.url, 'split512', undefined, 'application/stray');
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: stray.digest, size: stray.bytes.length }],
    };
    assert.equal((await pushManifest(reg.url, 'split512', tag, index, OCI_INDEX)).response.status, 201);
    const served = (await (await fetch(`${reg.url}/v2/split512/manifests/${tag}`)).json()) as {
      manifests: { digest: string }[];
    };
    assert.deepEqual(
      served.manifests.map((m) => m.digest),
      [good.digest],
    );
  });

  test('mergeFallbackTags off: a pushed fallback tag is served as pushed, whatever it lists', async () => {
    const off = await startRegistry({ settings: { 'referrers.mergeFallbackTags': false } });
    try {
      const img = await pushImage(off.url, 'r', 'v1');
      await pushBlob(off.url, 'r', '{}');
      const tag = img.digest.replace(':', '-');
      const subject = { digest: img.digest, size: img.bytes.length };
      const sig = await pushArtifact(off.url, 'r', subject, 'application/sig');
      const index = {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI_MANIFEST, digest: sig.digest, size: sig.bytes.length }],
      };
      const pushed = await pushManifest(off.url, 'r', tag, index, OCI_INDEX);
      await pushArtifact(off.url, 'r', subject, 'application/sbom');
      const res = await fetch(`${off.url}/v2/r/manifests/${tag}`);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(pushed.bytes));
      assert.equal((await referrers(off.url, 'r', img.digest)).digests.length, 2);
    } finally {
      await off.close();
    }
  });

  test('merging and synthesis can be turned off', async () => {
    const off = await startRegistry({
      settings: { 'referrers.mergeFallbackTags': false, 'referrers.serveFallbackTags': false },
    });
    try {
      const img = await pushImage(off.url, 'r', 'v1');
      await pushBlob(off.url, 'r', '{}');
      const tag = img.digest.replace(':', '-');
      await pushArtifact(off.url, 'r', { digest: img.digest, size: img.bytes.length }, 'application/sig');
      assert.equal((await fetch(`${off.url}/v2/r/manifests/${tag}`)).status, 404);
      const old = await pushArtifact(off.url, 'r', undefined, 'application/old');
      const index = {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI_MANIFEST, digest: old.digest, size: old.bytes.length }],
      };
      await pushManifest(off.url, 'r', tag, index, OCI_INDEX);
      assert.equal((await referrers(off.url, 'r', img.digest)).digests.length, 1);
    } finally {
      await off.close();
    }
  });
});

describe('a built fallback index lists every referrer, or none', () => {
  let reg: RunningRegistry;
  before(async () => {
    // Durability is not under test here; without flushes the 10 001 pushes take a few seconds.
    reg = await startRegistry({
      settings: { 'storage.sqliteSynchronous': 'NORMAL', 'storage.fsync': false },
    });
  });
  after(() => reg.close());

  test('more referrers than one store batch and than the old 10 000 cut: the tag lists them all', async () => {
    const img = await pushImage(reg.url, 'many', 'v1');
    await pushBlob(reg.url, 'many', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const pushed: string[] = [];
    for (let batch = 0; batch < 41; batch++) {
      const count = batch < 40 ? 250 : 1;
      const done = await Promise.all(
        Array.from({ length: count }, (_, i) =>
          pushArtifact(reg.url, 'many', subject, 'application/x', { i: `${batch}-${i}` }),
        ),
      );
      pushed.push(...done.map((p) => p.digest));
    }
    assert.equal(pushed.length, 10_001);
    const res = await fetch(`${reg.url}/v2/many/manifests/${img.digest.replace(':', '-')}`);
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    const index = JSON.parse(bytes.toString()) as { manifests: { digest: string }[] };
    assert.deepEqual(
      index.manifests.map((m) => m.digest),
      pushed.sort(),
      'every referrer once, in digest order',
    );
    assert.equal((await fetch(`${reg.url}/v2/many/manifests/${sha256(bytes)}`)).status, 200);
  });

  test('referrers beyond the manifest size limit: 409 with an OCI error, never a partial index', async () => {
    const img = await pushImage(reg.url, 'huge', 'v1');
    await pushBlob(reg.url, 'huge', '{}');
    const subject = { digest: img.digest, size: img.bytes.length };
    const big = 'x'.repeat(900 * 1024);
    const pushed: { digest: string; bytes: Buffer }[] = [];
    for (let i = 0; i < 5; i++)
      pushed.push(await pushArtifact(reg.url, 'huge', subject, 'application/x', { big, i: String(i) }));
    const tag = img.digest.replace(':', '-');
    const tagUrl = `${reg.url}/v2/huge/manifests/${tag}`;
    const tooLarge = async () => {
      const res = await fetch(tagUrl);
      assert.equal(res.status, 409);
      assert.equal(res.headers.get('content-type'), 'application/json');
      const error = ((await res.json()) as { errors: { code: string; message: string; detail: unknown }[] })
        .errors[0]!;
      assert.equal(error.code, 'UNSUPPORTED');
      assert.match(error.message, /do not fit in one fallback index/);
      assert.match(error.message, new RegExp(`/v2/huge/referrers/${img.digest}`));
      assert.deepEqual(error.detail, { subject: img.digest, limit: 4 * 1024 * 1024 });
      assert.equal((await fetch(tagUrl, { method: 'HEAD' })).status, 409);
    };
    await tooLarge();
    // The API still pages through all of them.
    assert.equal((await allPages(reg.url, 'huge', img.digest, '')).length, 5);
    // A pushed index that lists exactly them needs no building: served as pushed.
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: pushed.map((p) => ({ mediaType: OCI_MANIFEST, digest: p.digest, size: p.bytes.length })),
    };
    const put = await pushManifest(reg.url, 'huge', tag, index, OCI_INDEX);
    assert.equal(put.response.status, 201);
    const served = await fetch(tagUrl);
    assert.equal(served.status, 200);
    assert.ok(Buffer.from(await served.arrayBuffer()).equals(put.bytes));
    // One more referrer, and the tag would have to be built again: 409 again.
    await pushArtifact(reg.url, 'huge', subject, 'application/x', { big, i: '5' });
    await tooLarge();
  });
});

describe('referrer policies', () => {
  test('subjectPolicy require refuses a missing subject with MANIFEST_BLOB_UNKNOWN, only where configured', async () => {
    const reg = await startRegistry({
      settings: { 'referrers.policies': [{ repositories: 'strict/**', subjectPolicy: 'require' }] },
    });
    try {
      const missing = { digest: sha256('never pushed'), size: 12 };
      await pushBlob(reg.url, 'strict/repo', '{}');
      const body = artifact(missing, 'application/sig');
      const res = await pushManifest(reg.url, 'strict/repo', sha256(JSON.stringify(body)), body);
      assert.equal(res.response.status, 400);
      const error = (
        (await res.response.json()) as {
          errors: { code: string; message: string; detail: { digest: string } }[];
        }
      ).errors[0]!;
      assert.equal(error.code, 'MANIFEST_BLOB_UNKNOWN');
      assert.equal(error.detail.digest, missing.digest);
      // A missing subject is an unknown reference too: it wins over a wrong layer size.
      const wrongSize = { ...body, layers: [{ ...EMPTY, size: 3 }] };
      const both = await pushManifest(reg.url, 'strict/repo', 'both', wrongSize);
      assert.equal(both.response.status, 400);
      assert.deepEqual(
        ((await both.response.json()) as { errors: { code: string; detail: unknown }[] }).errors,
        [{ code: 'MANIFEST_BLOB_UNKNOWN', message: error.message, detail: { digest: missing.digest } }],
      );
      const img = await pushImage(reg.url, 'strict/repo', 'v1');
      await pushArtifact(
        reg.url,
        'strict/repo',
        { digest: img.digest, size: img.bytes.length },
        'application/sig',
      );
      // The policy asks for the subject to exist, nothing more: its declared size is not checked.
      await pushArtifact(
        reg.url,
        'strict/repo',
        { digest: img.digest, size: img.bytes.length + 1 },
        'application/sig+size',
      );
      await pushBlob(reg.url, 'lenient', '{}');
      await pushArtifact(reg.url, 'lenient', missing, 'application/sig');
    } finally {
      await reg.close();
    }
  });

  test('cascade deletes the referrer tree (chains and diamonds) and the fallback tag; keep leaves it', async () => {
    const reg = await startRegistry({
      settings: {
        'referrers.onSubjectDelete': 'cascade',
        'referrers.policies': [{ repositories: 'keep*', onSubjectDelete: 'keep' }],
      },
    });
    try {
      for (const repo of ['cascade', 'keeper']) {
        const img = await pushImage(reg.url, repo, 'v1');
        await pushBlob(reg.url, repo, '{}');
        const sig = await pushArtifact(
          reg.url,
          repo,
          { digest: img.digest, size: img.bytes.length },
          'application/sig',
          undefined,
          'sig',
        );
        const sigOfSig = await pushArtifact(
          reg.url,
          repo,
          { digest: sig.digest, size: sig.bytes.length },
          'application/countersig',
        );
        const deeper = await pushArtifact(
          reg.url,
          repo,
          { digest: sigOfSig.digest, size: sigOfSig.bytes.length },
          'application/x',
        );
        const tag = img.digest.replace(':', '-');
        const fallback = {
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [{ mediaType: OCI_MANIFEST, digest: sig.digest, size: sig.bytes.length }],
        };
        await pushManifest(reg.url, repo, tag, fallback, OCI_INDEX);
        assert.equal(
          (await fetch(`${reg.url}/v2/${repo}/manifests/${img.digest}`, { method: 'DELETE' })).status,
          202,
        );
        const expectGone = repo === 'cascade';
        for (const d of [sig.digest, sigOfSig.digest, deeper.digest]) {
          assert.equal(
            (await fetch(`${reg.url}/v2/${repo}/manifests/${d}`)).status,
            expectGone ? 404 : 200,
            `${repo} ${d}`,
          );
        }
        assert.equal((await fetch(`${reg.url}/v2/${repo}/manifests/sig`)).status, expectGone ? 404 : 200);
        assert.equal((await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`)).status, expectGone ? 404 : 200);
      }
    } finally {
      await reg.close();
    }
  });
});

describe('race-free tag writers', () => {
  test('If-Match / If-None-Match on PUT and DELETE by tag', async () => {
    const reg = await startRegistry();
    try {
      const a = await pushImage(reg.url, 'cas', 'latest');
      const b = await pushImage(reg.url, 'cas', 'other');
      const get = await fetch(`${reg.url}/v2/cas/manifests/latest`);
      assert.equal(get.headers.get('etag'), `"${a.digest}"`);
      const head = await fetch(`${reg.url}/v2/cas/manifests/${a.digest}`, { method: 'HEAD' });
      assert.equal(head.headers.get('etag'), `"${a.digest}"`);
      assert.equal(
        (
          await pushManifest(reg.url, 'cas', 'latest', b.bytes.toString(), undefined, {
            'If-None-Match': '*',
          })
        ).response.status,
        412,
      );
      assert.equal(
        (
          await pushManifest(reg.url, 'cas', 'latest', b.bytes.toString(), undefined, {
            'If-Match': `"${b.digest}"`,
          })
        ).response.status,
        412,
      );
      assert.equal(
        (
          await pushManifest(reg.url, 'cas', 'fresh', b.bytes.toString(), undefined, {
            'If-Match': `"${a.digest}"`,
          })
        ).response.status,
        412,
      );
      assert.equal(
        (await fetch(`${reg.url}/v2/cas/manifests/latest`)).headers.get('docker-content-digest'),
        a.digest,
      );
      assert.equal(
        (
          await pushManifest(reg.url, 'cas', 'latest', b.bytes.toString(), undefined, {
            'If-Match': `"${a.digest}"`,
          })
        ).response.status,
        201,
      );
      assert.equal(
        (await pushManifest(reg.url, 'cas', 'new', b.bytes.toString(), undefined, { 'If-None-Match': '*' }))
          .response.status,
        201,
      );
      assert.equal(
        (
          await fetch(`${reg.url}/v2/cas/manifests/latest`, {
            method: 'DELETE',
            headers: { 'If-Match': `"${a.digest}"` },
          })
        ).status,
        412,
      );
      assert.equal(
        (
          await fetch(`${reg.url}/v2/cas/manifests/latest`, {
            method: 'DELETE',
            headers: { 'If-Match': `"${b.digest}"` },
          })
        ).status,
        202,
      );
      assert.equal((await fetch(`${reg.url}/v2/cas/manifests/latest`)).status, 404);
    } finally {
      await reg.close();
    }
  });

  test('If-Match: * admits any existing tag and no missing one (RFC 9110 §13.1.1)', async () => {
    const reg = await startRegistry();
    try {
      const a = await pushImage(reg.url, 'star', 'v1');
      const b = await pushImage(reg.url, 'star', 'other');
      const put = async (tag: string) =>
        (await pushManifest(reg.url, 'star', tag, b.bytes.toString(), undefined, { 'If-Match': '*' }))
          .response.status;
      const del = async (tag: string) =>
        (
          await fetch(`${reg.url}/v2/star/manifests/${tag}`, {
            method: 'DELETE',
            headers: { 'If-Match': '*' },
          })
        ).status;
      assert.equal(await put('missing'), 412);
      assert.equal((await fetch(`${reg.url}/v2/star/manifests/missing`)).status, 404);
      assert.equal(await put('v1'), 201, 'update only if it exists');
      assert.equal(
        (await fetch(`${reg.url}/v2/star/manifests/v1`)).headers.get('docker-content-digest'),
        b.digest,
      );
      assert.equal(await del('v1'), 202);
      assert.equal((await fetch(`${reg.url}/v2/star/manifests/v1`)).status, 404);
      assert.equal(await del('v1'), 404);
      assert.equal(await del(a.digest), 202, 'by digest, * admits an existing manifest');
    } finally {
      await reg.close();
    }
  });
});
