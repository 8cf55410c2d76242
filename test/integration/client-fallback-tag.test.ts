import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/client/client.ts';
import { parseImageReference } from '../../src/client/reference.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { cliOutput, runCliAt } from '../helpers/cli.ts';
import { discoveredDigests } from '../helpers/interop.ts';
import { pushBlob, pushImage, pushManifest, sha256 } from '../helpers/oci.ts';
import { startProxy } from '../helpers/proxy.ts';

/**
 * The client's side of the referrers fallback tag (audit-ref findings 2, 3, 6 and 7), against a real
 * Tether. `tagOnly` serves pushed fallback tags as they are and synthesizes none, so a client in tag
 * mode sees exactly what clients wrote there, as on a registry without the referrers API.
 */
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const EMPTY = { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 };
const anonymous = { credentials: async () => undefined };

/** Pushes an artifact of `artifactType` by digest (and under `tag`), referring to `subject` when given. */
async function pushArtifact(
  base: string,
  repo: string,
  artifactType: string,
  subject?: { digest: string; size: number },
  tag?: string,
) {
  await pushBlob(base, repo, '{}');
  const body = {
    schemaVersion: 2,
    mediaType: MANIFEST,
    artifactType,
    config: EMPTY,
    layers: [EMPTY],
    ...(subject ? { subject: { mediaType: MANIFEST, ...subject } } : {}),
  };
  const digest = sha256(JSON.stringify(body));
  for (const reference of [digest, ...(tag ? [tag] : [])]) {
    const pushed = await pushManifest(base, repo, reference, body);
    assert.equal(pushed.response.status, 201, await pushed.response.clone().text());
  }
  return { digest, size: Buffer.byteLength(JSON.stringify(body)), artifactType };
}

/** A pattern matching `text` as it is. */
const literally = (text: string) => new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

/** The digest a tag names now (HEAD), or undefined when it names nothing. */
async function tagged(base: string, repo: string, tag: string): Promise<string | undefined> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { Accept: `${MANIFEST}, ${INDEX}` },
  });
  return res.status === 200 ? (res.headers.get('docker-content-digest') ?? undefined) : undefined;
}

async function fallbackEntries(base: string, repo: string, subject: string): Promise<string[]> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${subject.replace(':', '-')}`, {
    headers: { Accept: INDEX },
  });
  assert.equal(res.status, 200);
  return ((await res.json()) as { manifests: { digest: string }[] }).manifests.map((d) => d.digest).sort();
}

describe('client: fallback tag', () => {
  let reg: RunningRegistry;
  let home: string;
  const tagMode = new RegistryClient({ referrersMode: 'tag', ...anonymous });

  before(async () => {
    reg = await startRegistry({
      settings: { 'referrers.mergeFallbackTags': false, 'referrers.serveFallbackTags': false },
    });
    home = await mkdtemp(join(tmpdir(), 'tether-fallback-tag-'));
    await writeFile(join(home, 'sbom.json'), '{"spdxVersion":"SPDX-2.3"}');
  });
  after(async () => {
    await reg?.close();
    await rm(home, { recursive: true, force: true });
  });

  test('an index without mediaType under the tag is read, and attach keeps its entries (finding 2)', async () => {
    const image = await pushImage(reg.url, 'nomt', 'v1');
    const first = await pushArtifact(reg.url, 'nomt', 'application/vnd.first', {
      digest: image.digest,
      size: image.bytes.length,
    });
    // Another tool's index, without the optional top-level mediaType; the Content-Type says what it is.
    const index = { schemaVersion: 2, manifests: [{ mediaType: MANIFEST, ...first }] };
    const put = await pushManifest(reg.url, 'nomt', image.digest.replace(':', '-'), index, INDEX);
    assert.equal(put.response.status, 201);

    const subject = { ...parseImageReference(`${reg.host}/nomt`), digest: image.digest };
    assert.deepEqual(
      (await tagMode.referrers(subject)).map((d) => d.digest),
      [first.digest],
    );
    const second = await tagMode.attach(subject, 'application/spdx+json', [
      { mediaType: 'application/spdx+json', title: 'sbom.json', bytes: Buffer.from('{}') },
    ]);
    assert.deepEqual(
      await fallbackEntries(reg.url, 'nomt', image.digest),
      [first.digest, second.digest].sort(),
      "the other tool's entry is kept",
    );
  });

  test('attach, cp -r and manifest delete refuse to overwrite a fallback tag that holds an image manifest (finding 7)', async () => {
    const image = await pushImage(reg.url, 'nonidx', 'v1');
    const tag = image.digest.replace(':', '-');
    const subject = { digest: image.digest, size: image.bytes.length };
    // Another tool's artifact, tagged with the subject's fallback-tag name.
    const other = await pushArtifact(reg.url, 'nonidx', 'application/vnd.something.else', undefined, tag);
    const holds = (repo: string) =>
      literally(
        `referrers tag ${reg.host}/${repo}:${tag} holds an image manifest (${MANIFEST}), not an image index; it is left as it is`,
      );

    const attach = await runCliAt(home, [
      'attach',
      '--referrers-mode',
      'tag',
      `${reg.host}/nonidx@${image.digest}`,
      'sbom.json',
      '--artifact-type',
      'application/spdx+json',
    ]);
    assert.equal(attach.code, 1, attach.stderr);
    assert.match(attach.stderr, holds('nonidx'));
    assert.equal(await tagged(reg.url, 'nonidx', tag), other.digest, 'the tag still holds the artifact');

    // A referrer recorded through the API only; deleting it in tag mode would have rewritten the tag.
    const sig = await pushArtifact(reg.url, 'nonidx', 'application/vnd.example.sig', subject);
    const del = await runCliAt(home, [
      'manifest',
      'delete',
      '--referrers-mode',
      'tag',
      `${reg.host}/nonidx@${sig.digest}`,
    ]);
    assert.equal(del.code, 1, del.stderr);
    assert.match(del.stderr, literally(`deleted ${reg.host}/nonidx@${sig.digest}, but `));
    assert.match(del.stderr, holds('nonidx'));
    assert.equal(await tagged(reg.url, 'nonidx', sig.digest), undefined, 'the manifest itself is deleted');
    assert.equal(await tagged(reg.url, 'nonidx', tag), other.digest);

    // cp -r from a repository with a proper fallback index into one whose fallback tag for the image
    // holds another tool's artifact: the copy stops there and tags nothing.
    await tagMode.copy(
      parseImageReference(`${reg.host}/nonidx:v1`),
      parseImageReference(`${reg.host}/src:v1`),
    );
    await tagMode.attach(
      { ...parseImageReference(`${reg.host}/src`), digest: image.digest },
      'application/x.a',
      [{ mediaType: 'text/plain', title: 'a.txt', bytes: Buffer.from('a') }],
    );
    const squatter = await pushArtifact(reg.url, 'dst', 'application/vnd.something.else', undefined, tag);
    const cp = await runCliAt(home, [
      'cp',
      '-r',
      '--referrers-mode',
      'tag',
      `${reg.host}/src:v1`,
      `${reg.host}/dst:v1`,
    ]);
    assert.equal(cp.code, 1, cp.stderr);
    assert.match(cp.stderr, holds('dst'));
    assert.equal(await tagged(reg.url, 'dst', tag), squatter.digest);
    assert.equal(await tagged(reg.url, 'dst', 'v1'), undefined, 'a failed copy sets no tag');
  });

  test('in a layout, attach and manifest delete refuse the same way (finding 7)', async () => {
    const image = await pushImage(reg.url, 'lay', 'v1');
    const tag = image.digest.replace(':', '-');
    const other = await pushArtifact(reg.url, 'lay', 'application/vnd.something.else');
    const layout = join(home, 'layout');
    await cliOutput(home, ['cp', `${reg.host}/lay:v1`, `oci:${layout}:v1`]);
    await cliOutput(home, ['cp', `${reg.host}/lay@${other.digest}`, `oci:${layout}:${tag}`]);
    const holds = literally(`referrers tag ${tag} in ${layout} holds an image manifest`);

    const attach = await runCliAt(home, [
      'attach',
      '--referrers-mode',
      'tag',
      `oci:${layout}:v1`,
      'sbom.json',
      '--artifact-type',
      'application/spdx+json',
    ]);
    assert.equal(attach.code, 1, attach.stderr);
    assert.match(attach.stderr, holds);
    assert.equal((await cliOutput(home, ['resolve', `oci:${layout}:${tag}`])).trim(), other.digest);

    // Listed the oras way, so a delete has to look at the fallback tag too: it refuses before it changes anything.
    const sbom = (
      await cliOutput(home, [
        'attach',
        `oci:${layout}:v1`,
        'sbom.json',
        '--artifact-type',
        'application/spdx+json',
      ])
    ).trim();
    const del = await runCliAt(home, ['manifest', 'delete', `oci:${layout}@${sbom}`]);
    assert.equal(del.code, 1, del.stderr);
    assert.match(del.stderr, literally(`${sbom} was not deleted: `));
    assert.match(del.stderr, holds);
    assert.equal((await cliOutput(home, ['resolve', `oci:${layout}:${tag}`])).trim(), other.digest);
    assert.equal((await cliOutput(home, ['resolve', `oci:${layout}@${sbom}`])).trim(), sbom);
  });

  test('attach writes the fallback index conditionally: If-None-Match for a new tag, If-Match on the ETag it read, and a 412 is re-read and retried without losing the other writer (audit-tests #4)', async () => {
    const image = await pushImage(reg.url, 'ifmatch', 'v1');
    const tag = image.digest.replace(':', '-');
    const tagUrl = `/v2/ifmatch/manifests/${tag}`;
    const subject = { digest: image.digest, size: image.bytes.length };
    // Another tool's referrer, added to the tag by a concurrent writer between our read and our write.
    const theirs = await pushArtifact(reg.url, 'ifmatch', 'application/vnd.theirs', subject);
    let inject = false;
    let injected = 0;
    /** Every request for the fallback tag: method, the condition sent, status and ETag answered. */
    const wire: { method: string; ifMatch?: string; ifNoneMatch?: string; status: number; etag?: string }[] =
      [];
    const proxy = await startProxy(reg.host, {
      async before(req) {
        if (!inject || req.method !== 'PUT' || req.url !== tagUrl) return false;
        inject = false;
        const now = await fetch(`${reg.url}${tagUrl}`, { headers: { Accept: INDEX } });
        assert.equal(now.status, 200);
        const index = (await now.json()) as { manifests: unknown[] };
        index.manifests.push({ mediaType: MANIFEST, ...theirs });
        const put = await pushManifest(reg.url, 'ifmatch', tag, index, INDEX, {
          'If-Match': now.headers.get('etag')!,
        });
        assert.equal(put.response.status, 201, await put.response.clone().text());
        injected++;
        return false;
      },
      after(req, upstream) {
        if (req.url !== tagUrl) return;
        const header = (name: string) => (req.headers[name] as string | undefined) ?? undefined;
        wire.push({
          method: req.method!,
          ...(header('if-match') ? { ifMatch: header('if-match') } : {}),
          ...(header('if-none-match') ? { ifNoneMatch: header('if-none-match') } : {}),
          status: upstream.status,
          ...(upstream.headers.etag ? { etag: upstream.headers.etag } : {}),
        });
      },
    });
    try {
      const at = { ...parseImageReference(`${proxy.host}/ifmatch`), digest: image.digest };
      const file = (name: string) => [{ mediaType: 'text/plain', title: name, bytes: Buffer.from(name) }];
      // No tag yet: created with If-None-Match: *.
      const first = await tagMode.attach(at, 'application/x.first', file('first.txt'));
      const creating = wire.filter((w) => w.method === 'PUT');
      assert.deepEqual(
        creating.map((w) => [w.ifMatch, w.ifNoneMatch, w.status]),
        [[undefined, '*', 201]],
      );
      assert.deepEqual(await fallbackEntries(reg.url, 'ifmatch', image.digest), [first.digest]);

      wire.length = 0;
      inject = true;
      const second = await tagMode.attach(at, 'application/x.second', file('second.txt'));
      assert.equal(injected, 1, 'the concurrent write happened');
      assert.deepEqual(
        await fallbackEntries(reg.url, 'ifmatch', image.digest),
        [first.digest, theirs.digest, second.digest].sort(),
        "no update is lost: ours, the other writer's and the earlier one",
      );
      const puts = wire.flatMap((w, i) => (w.method === 'PUT' ? [i] : []));
      assert.equal(puts.length, 2, JSON.stringify(wire));
      const [stale, retry] = [wire[puts[0]!]!, wire[puts[1]!]!];
      // The first PUT names the ETag of the read just before it, which the other writer has since changed.
      const readBefore = wire[puts[0]! - 1]!;
      assert.equal(readBefore.method, 'GET');
      assert.equal(readBefore.status, 200);
      assert.ok(readBefore.etag, 'the registry sends an ETag');
      assert.equal(stale.ifMatch, readBefore.etag, 'the PUT is conditional on what was read');
      assert.equal(stale.status, 412, 'the stale write is refused');
      // Exactly one re-read, then the retry on the new ETag.
      assert.deepEqual(
        wire.slice(puts[0]! + 1, puts[1]!).map((w) => [w.method, w.status]),
        [['GET', 200]],
      );
      const reread = wire[puts[0]! + 1]!;
      assert.notEqual(reread.etag, readBefore.etag);
      assert.equal(retry.ifMatch, reread.etag);
      assert.equal(retry.status, 201);
      assert.deepEqual(
        wire.slice(puts[1]! + 1).map((w) => w.method),
        wire.slice(puts[1]! + 1).map(() => 'GET'),
        'nothing written after the retry',
      );
    } finally {
      await proxy.close();
    }
  });
});

describe('client: cp -r records referrers the destination already holds (finding 3)', () => {
  let reg: RunningRegistry;
  let withApi: RunningRegistry;
  let home: string;
  const tagMode = new RegistryClient({ referrersMode: 'tag', ...anonymous });
  /** Pushes with the API alone: what an interrupted copy, or a tool that keeps no fallback tag, leaves. */
  const apiMode = new RegistryClient({ referrersMode: 'api', ...anonymous });

  before(async () => {
    reg = await startRegistry({
      settings: { 'referrers.mergeFallbackTags': false, 'referrers.serveFallbackTags': false },
    });
    withApi = await startRegistry();
    home = await mkdtemp(join(tmpdir(), 'tether-cp-existing-'));
  });
  after(async () => {
    await reg?.close();
    await withApi?.close();
    await rm(home, { recursive: true, force: true });
  });

  /** An image with an SBOM and a signature of the SBOM, listed by the API and in fallback tags. */
  async function signedImage(repo: string) {
    const image = (await pushImage(reg.url, repo, 'v1')).digest;
    const at = (digest: string) => ({ ...parseImageReference(`${reg.host}/${repo}`), digest });
    const file = (name: string) => [{ mediaType: 'text/plain', title: name, bytes: Buffer.from(name) }];
    const sbom = (await tagMode.attach(at(image), 'application/spdx+json', file('sbom.json'))).digest;
    const sig = (await tagMode.attach(at(sbom), 'application/vnd.example.sig', file('sig.txt'))).digest;
    return { image, sbom, sig };
  }

  /** Copies the SBOM alone, by digest, without recording it anywhere but the registry's own API. */
  async function interrupted(from: string, to: string, sbom: string) {
    await apiMode.copy(parseImageReference(`${from}@${sbom}`), parseImageReference(`${to}@${sbom}`));
  }

  test('to a registry kept by fallback tags: the SBOM gets its entry; a rerun sends only the tag', async () => {
    const { image, sbom, sig } = await signedImage('cp3');
    await interrupted(`${reg.host}/cp3`, `${reg.host}/cp3-dst`, sbom);
    assert.equal(await tagged(reg.url, 'cp3-dst', image.replace(':', '-')), undefined);

    const args = ['cp', '-r', '--referrers-mode', 'tag', '--format', 'json'];
    const copy = JSON.parse(await cliOutput(home, [...args, `${reg.host}/cp3:v1`, `${reg.host}/cp3-dst:v1`]));
    assert.equal(copy.referrers, 2);
    assert.deepEqual(copy.manifests, { copied: 2, existed: 1 });
    assert.deepEqual(await fallbackEntries(reg.url, 'cp3-dst', image), [sbom]);
    assert.deepEqual(await fallbackEntries(reg.url, 'cp3-dst', sbom), [sig]);
    const tree = await cliOutput(home, [
      'discover',
      '--referrers-mode',
      'tag',
      '--format',
      'json',
      `${reg.host}/cp3-dst:v1`,
    ]);
    assert.deepEqual(discoveredDigests(tree), [sbom, sig].sort());

    // Everything is there and recorded: a rerun reads, and writes nothing but the tag (set last, as always).
    const proxy = await startProxy(reg.host);
    try {
      const again = JSON.parse(
        await cliOutput(home, [...args, `${proxy.host}/cp3:v1`, `${proxy.host}/cp3-dst:v1`]),
      );
      assert.deepEqual(again.manifests, { copied: 0, existed: 3 });
      assert.deepEqual(again.blobs, { transferred: 0, exists: 0, mounted: 0 });
      const writes = proxy.seen
        .filter((r) => r.method !== 'GET' && r.method !== 'HEAD')
        .map((r) => `${r.method} ${r.url}`);
      assert.deepEqual(writes, ['PUT /v2/cp3-dst/manifests/v1']);
    } finally {
      await proxy.close();
    }
  });

  test('to a registry with the referrers API: no fallback tag is read or written, the API is asked at most once', async () => {
    const { image, sbom, sig } = await signedImage('cp3api');
    const proxy = await startProxy(withApi.host);
    try {
      await interrupted(`${reg.host}/cp3api`, `${withApi.host}/dst`, sbom);
      for (const run of ['first', 'rerun']) {
        proxy.resetCounters();
        await cliOutput(home, ['cp', '-r', `${reg.host}/cp3api:v1`, `${proxy.host}/dst:v1`]);
        const urls = proxy.seen.map((r) => `${r.method} ${r.url}`);
        assert.deepEqual(
          urls.filter((u) => u.includes('/manifests/sha256-')),
          [],
          `${run}: no fallback tag`,
        );
        assert.ok(urls.filter((u) => u.includes('/referrers/')).length <= 1, `${run}: ${urls.join('\n')}`);
      }
      const listed = await fetch(`${withApi.url}/v2/dst/referrers/${image}`);
      assert.deepEqual(
        ((await listed.json()) as { manifests: { digest: string }[] }).manifests.map((d) => d.digest),
        [sbom],
      );
      assert.equal(await tagged(withApi.url, 'dst', sig), sig);
    } finally {
      await proxy.close();
    }
  });

  test('to a layout: a stored but unlisted SBOM is listed again, and tag mode adds the fallback tags', async () => {
    const { image, sbom, sig } = await signedImage('cp3lay');
    const src = `${reg.host}/cp3lay:v1`;
    const layout = join(home, 'cp3-layout');
    await cliOutput(home, ['cp', '-r', src, `oci:${layout}:v1`]);
    // The SBOM's blob stays, its index.json entry goes: a copy interrupted between the two.
    const indexPath = join(layout, 'index.json');
    const index = JSON.parse(await readFile(indexPath, 'utf8')) as { manifests: { digest: string }[] };
    index.manifests = index.manifests.filter((d) => d.digest !== sbom);
    await writeFile(indexPath, JSON.stringify(index));
    const discover = ['discover', '--format', 'json', `oci:${layout}:v1`];
    assert.deepEqual(discoveredDigests(await cliOutput(home, discover)), []);

    await cliOutput(home, ['cp', '-r', src, `oci:${layout}:v1`]);
    assert.deepEqual(discoveredDigests(await cliOutput(home, discover)), [sbom, sig].sort());

    // Copied before without fallback tags, now with them: every one is added, nothing else written.
    await cliOutput(home, ['cp', '-r', '--referrers-mode', 'tag', src, `oci:${layout}:v1`]);
    const tags = (await cliOutput(home, ['repo', 'tags', `oci:${layout}`])).trim().split('\n');
    assert.deepEqual(tags.sort(), [image.replace(':', '-'), sbom.replace(':', '-'), 'v1'].sort());
  });
});

describe('client: a root with a sha512 digest is tagged by digest (finding 6)', () => {
  let reg: RunningRegistry;
  let home: string;

  before(async () => {
    reg = await startRegistry();
    home = await mkdtemp(join(tmpdir(), 'tether-sha512-tag-'));
  });
  after(async () => {
    await reg?.close();
    await rm(home, { recursive: true, force: true });
  });

  /** An image stored under its sha512 digest only, with one referrer that names that digest. */
  async function sha512Image(repo: string) {
    const config = '{"architecture":"amd64","os":"linux"}';
    const layer = `layer ${repo}`;
    const body = JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: await pushBlob(reg.url, repo, config),
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: await pushBlob(reg.url, repo, layer),
          size: layer.length,
        },
      ],
    });
    const digest = `sha512:${createHash('sha512').update(body).digest('hex')}`;
    assert.equal((await pushManifest(reg.url, repo, digest, body)).response.status, 201);
    const sbom = await pushArtifact(reg.url, repo, 'application/spdx+json', { digest, size: body.length });
    return { digest, sbom: sbom.digest };
  }

  test('cp -r and tag point the tag at the sha512 digest, so the referrers come with it; a sha256 root is tagged by a plain tag PUT', async () => {
    const { digest, sbom } = await sha512Image('s512');
    await cliOutput(home, ['cp', '-r', `${reg.host}/s512@${digest}`, `${reg.host}/s512copy:v1`]);
    assert.equal(await tagged(reg.url, 's512copy', 'v1'), digest);
    const tree = await cliOutput(home, ['discover', '--format', 'json', `${reg.host}/s512copy:v1`]);
    assert.deepEqual(discoveredDigests(tree), [sbom]);

    await cliOutput(home, ['tag', `${reg.host}/s512copy@${digest}`, 'v2']);
    assert.equal(await tagged(reg.url, 's512copy', 'v2'), digest);

    const proxy = await startProxy(reg.host);
    try {
      const plain = await pushImage(reg.url, 's256', 'v1');
      await cliOutput(home, ['cp', `${proxy.host}/s256:v1`, `${proxy.host}/s256copy:v1`]);
      const puts = proxy.seen.filter((r) => r.method === 'PUT').map((r) => r.url);
      assert.deepEqual(puts, [`/v2/s256copy/manifests/${plain.digest}`, '/v2/s256copy/manifests/v1']);
    } finally {
      await proxy.close();
    }
  });

  test('a registry that ignores ?tag= leaves the tag unset, and the copy says so (the content is there by digest)', async () => {
    const { digest } = await sha512Image('s512ign');
    // Answers as a registry without multi-tag pushes would: stored by digest, no OCI-Tag.
    const proxy = await startProxy(reg.host, {
      before(req) {
        req.url = req.url!.replace(/\?tag=.*$/, '');
        return false;
      },
    });
    try {
      const cp = await runCliAt(home, [
        'cp',
        '-r',
        `${reg.host}/s512ign@${digest}`,
        `${proxy.host}/s512ign-copy:v1`,
      ]);
      assert.equal(cp.code, 1, cp.stderr);
      assert.match(
        cp.stderr,
        literally(
          `tag ${proxy.host}/s512ign-copy:v1 is not set: the registry did not confirm it (no OCI-Tag in its answer to PUT ${proxy.host}/s512ign-copy@${digest}?tag=v1); the manifest is there as ${proxy.host}/s512ign-copy@${digest}`,
        ),
      );
      assert.equal(await tagged(reg.url, 's512ign-copy', digest), digest);
      assert.equal(
        await tagged(reg.url, 's512ign-copy', 'v1'),
        undefined,
        'no tag on a sha256 re-hash either',
      );
    } finally {
      await proxy.close();
    }
  });
});
