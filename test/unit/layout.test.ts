import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { OciLayout, REF_NAME } from '../../src/client/layout.ts';
import { parseEndpoint } from '../../src/client/reference.ts';
import { LayoutTarget } from '../../src/client/target.ts';

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';

async function put(layout: OciLayout, bytes: Buffer | string): Promise<string> {
  const buffer = Buffer.from(bytes);
  const digest = sha256(buffer);
  await layout.writeBytes(digest, buffer);
  return digest;
}

function manifest(extra: object = {}): string {
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 },
    layers: [],
    ...extra,
  });
}

describe('parseEndpoint', () => {
  test('registry references and both layout spellings', () => {
    assert.deepEqual(parseEndpoint('127.0.0.1:5000/a/b:v1'), {
      kind: 'registry',
      ref: { host: '127.0.0.1:5000', repository: 'a/b', tag: 'v1' },
    });
    assert.deepEqual(parseEndpoint('oci:/tmp/x:v1'), { kind: 'layout', dir: '/tmp/x', tag: 'v1' });
    assert.deepEqual(parseEndpoint('oci:./rel/dir'), { kind: 'layout', dir: './rel/dir' });
    assert.deepEqual(parseEndpoint('ocidir://out:latest'), { kind: 'layout', dir: 'out', tag: 'latest' });
    const digest = sha256('x');
    assert.deepEqual(parseEndpoint(`oci:/a:b/c@${digest}`), { kind: 'layout', dir: '/a:b/c', digest });
    // A tag and a digest together, as in HOST/REPO:TAG@DIGEST (the tag was once read as part of the
    // directory's name: `cp … oci:out:v1@DIGEST` created a directory named "out:v1").
    assert.deepEqual(parseEndpoint(`oci:out:v1@${digest}`), {
      kind: 'layout',
      dir: 'out',
      tag: 'v1',
      digest,
    });
    assert.deepEqual(parseEndpoint(`ocidir:///a:b/out:v1@${digest}`), {
      kind: 'layout',
      dir: '/a:b/out',
      tag: 'v1',
      digest,
    });
    // A colon inside a directory name, before the last slash, is not a tag.
    assert.deepEqual(parseEndpoint('oci:/weird:name/dir'), { kind: 'layout', dir: '/weird:name/dir' });
    assert.throws(() => parseEndpoint('oci:'), /names no layout directory/);
    assert.throws(() => parseEndpoint('oci:/x:bad tag'), /not a valid tag/);
  });
});

describe('OciLayout', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tether-layout-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('create writes oci-layout and an empty index; open refuses a directory that is not a layout', async () => {
    await assert.rejects(OciLayout.open(join(dir, 'l')), /not an OCI image layout/);
    await OciLayout.open(join(dir, 'l'), { create: true });
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'l', 'oci-layout'), 'utf8')), {
      imageLayoutVersion: '1.0.0',
    });
    const index = JSON.parse(await readFile(join(dir, 'l', 'index.json'), 'utf8'));
    assert.deepEqual(index.manifests, []);
    await writeFile(join(dir, 'l', 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
    await assert.rejects(OciLayout.open(join(dir, 'l')), /supported imageLayoutVersion/);
  });

  test('blobs are verified on the way in and out; digests cannot name paths outside blobs/', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const digest = await put(layout, 'hello');
    assert.equal((await layout.readBlob(digest)).toString(), 'hello');
    await assert.rejects(layout.writeBytes(sha256('other'), Buffer.from('wrong')), /hashes to/);
    assert.equal(await layout.hasBlob(sha256('other')), false, 'a bad write leaves nothing');
    await writeFile(layout.blobPath(digest), 'HELLO');
    await assert.rejects(layout.readBlob(digest), /hashes to/);
    assert.throws(() => layout.blobPath('sha256:../../etc/passwd'), /not a valid digest/);
  });

  test('pourBlob lends a blob from reused buffers, verified; a missing one is named as missing', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    // Three reads of 1 MiB and a short one: the buffers take turns, and what arrives is the blob.
    const blob = Buffer.alloc(3 * 1024 * 1024 + 5);
    for (let i = 0; i < blob.length; i += 4096) blob[i] = (i / 4096) & 0xff;
    const digest = await put(layout, blob);
    const received: Buffer[] = [];
    await layout.pourBlob(digest, blob.length, { write: (chunk) => void received.push(Buffer.from(chunk)) });
    assert.ok(Buffer.concat(received).equals(blob));
    assert.equal(received.length, 4);
    const target = new LayoutTarget(layout);
    const viaTarget: Buffer[] = [];
    await target.readBlob(
      { digest, size: blob.length },
      { write: (c) => void viaTarget.push(Buffer.from(c)) },
    );
    assert.ok(Buffer.concat(viaTarget).equals(blob));

    await assert.rejects(layout.pourBlob(digest, blob.length + 1, { write() {} }), /descriptor says/);
    await assert.rejects(layout.pourBlob(sha256('absent'), 6, { write() {} }), /is not in the layout/);
    const bad = Buffer.from(blob);
    bad[bad.length - 1] = 1;
    await writeFile(layout.blobPath(digest), bad);
    await assert.rejects(layout.pourBlob(digest, blob.length, { write() {} }), /hashes to/);
  });

  test('a blob the layout has is not written again: its source is never read, and the copy says it existed', async () => {
    const target = await LayoutTarget.open(dir, { create: true });
    const bytes = Buffer.from('stored once');
    const descriptor = { mediaType: 'application/octet-stream', digest: sha256(bytes), size: bytes.length };
    let opened = 0;
    const source = {
      digest: descriptor.digest,
      size: descriptor.size,
      open: async () => {
        opened++;
        return Readable.from([bytes]);
      },
    };
    assert.equal(await target.pushBlob(descriptor, source), 'transferred');
    assert.equal(await target.pushBlob(descriptor, source), 'exists');
    assert.equal(opened, 1);
    assert.equal(await target.layout.writeBytes(descriptor.digest, bytes), false);
    assert.deepEqual(await readFile(target.layout.blobPath(descriptor.digest)), bytes);
  });

  test('tags move between entries; untagged listing is replaced by the tagged one; regctl-style full names resolve', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const a = await put(layout, manifest({ annotations: { n: 'a' } }));
    const b = await put(layout, manifest({ annotations: { n: 'b' } }));
    await layout.addToIndex({ mediaType: MANIFEST, digest: a, size: 1 });
    await layout.addToIndex({ mediaType: MANIFEST, digest: a, size: 1 }, 'v1');
    let { manifests } = await layout.readIndex();
    assert.deepEqual(
      manifests.map((m) => [m.digest, m.annotations?.[REF_NAME]]),
      [[a, 'v1']],
    );
    await layout.addToIndex({ mediaType: MANIFEST, digest: b, size: 1 }, 'v1');
    ({ manifests } = await layout.readIndex());
    // The manifest that lost the tag stays listed, untagged, as oras keeps it (audit nit N10).
    assert.deepEqual(
      manifests.map((m) => [m.digest, m.annotations?.[REF_NAME]]),
      [
        [a, undefined],
        [b, 'v1'],
      ],
    );
    assert.equal((await layout.resolve('v1')).digest, b);
    assert.equal((await layout.resolve(a)).digest, a);
    // Tagging it again replaces its untagged listing; moving a tag off a manifest listed under another
    // tag leaves no untagged duplicate.
    await layout.addToIndex({ mediaType: MANIFEST, digest: a, size: 1 }, 'v2');
    await layout.addToIndex({ mediaType: MANIFEST, digest: a, size: 1 }, 'v1');
    ({ manifests } = await layout.readIndex());
    assert.deepEqual(
      manifests.map((m) => [m.digest, m.annotations?.[REF_NAME]]),
      [
        [b, undefined],
        [a, 'v2'],
        [a, 'v1'],
      ],
    );
    await layout.addToIndex({ mediaType: MANIFEST, digest: b, size: 1 }, 'v1');
    ({ manifests } = await layout.readIndex());
    assert.deepEqual(
      manifests.map((m) => [m.digest, m.annotations?.[REF_NAME]]),
      [
        [a, 'v2'],
        [b, 'v1'],
      ],
    );
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
    index.manifests.push({
      mediaType: MANIFEST,
      digest: a,
      size: 1,
      annotations: { [REF_NAME]: 'example.com/app:old' },
    });
    await writeFile(join(dir, 'index.json'), JSON.stringify(index));
    assert.equal((await layout.resolve('old')).digest, a);
    await assert.rejects(layout.resolve('missing'), /tag missing is not in the layout/);
  });

  test('referrers are found oras-style (listed with a subject) and regctl-style (fallback tag), once each', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const subjectBytes = manifest();
    const subject = await put(layout, subjectBytes);
    const subjectDescriptor = { mediaType: MANIFEST, digest: subject, size: Buffer.byteLength(subjectBytes) };
    const sigBytes = manifest({
      artifactType: 'application/x.sig',
      subject: subjectDescriptor,
      annotations: { k: 'v' },
    });
    const sig = await put(layout, sigBytes);
    const sbomBytes = manifest({ artifactType: 'application/spdx+json', subject: subjectDescriptor });
    const sbom = await put(layout, sbomBytes);
    const unrelated = await put(layout, manifest({ artifactType: 'application/x.other' }));
    await layout.addToIndex(subjectDescriptor, 'v1');
    await layout.addToIndex({ mediaType: MANIFEST, digest: sig, size: Buffer.byteLength(sigBytes) });
    await layout.addToIndex({ mediaType: MANIFEST, digest: unrelated, size: 10 });
    await layout.addFallbackEntry(subject, {
      mediaType: MANIFEST,
      digest: sbom,
      size: Buffer.byteLength(sbomBytes),
      artifactType: 'application/spdx+json',
    });
    // And the oras-listed one again through the tag: still once.
    await layout.addFallbackEntry(subject, {
      mediaType: MANIFEST,
      digest: sig,
      size: Buffer.byteLength(sigBytes),
      artifactType: 'application/x.sig',
    });
    const found = await layout.referrers(subject);
    assert.deepEqual(found.map((d) => d.digest).sort(), [sbom, sig].sort());
    assert.equal(found.find((d) => d.digest === sig)?.artifactType, 'application/x.sig');
    assert.deepEqual(
      (await layout.referrers(subject, 'application/spdx+json')).map((d) => d.digest),
      [sbom],
    );
    // Each entry replaced the fallback-tag index; the superseded one is not kept listed.
    const indexes = (await layout.readIndex()).manifests.filter((m) => m.mediaType === INDEX);
    assert.deepEqual(
      indexes.map((m) => m.annotations?.[REF_NAME]),
      [`sha256-${subject.slice(7)}`],
    );
  });
});

describe('OciLayout tags and deletes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tether-layout-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('tags: each once, in byte order, regctl-style whole names by their tag', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const a = await put(layout, manifest({ annotations: { n: 'a' } }));
    await layout.addToIndex({ mediaType: MANIFEST, digest: a, size: 1 }, 'v2');
    await layout.addToIndex({ mediaType: MANIFEST, digest: a, size: 1 }, 'V1');
    await layout.addToIndex({ mediaType: MANIFEST, digest: a, size: 1 }, 'latest');
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
    index.manifests.push({
      mediaType: MANIFEST,
      digest: a,
      size: 1,
      annotations: { [REF_NAME]: 'h/app:v2' },
    });
    await writeFile(join(dir, 'index.json'), JSON.stringify(index));
    assert.deepEqual(await layout.tags(), ['V1', 'latest', 'v2']);
  });

  test('deleteManifest takes every listing and the fallback entry; its blob goes, referrers and shared blobs stay', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const subjectBytes = manifest();
    const subject = await put(layout, subjectBytes);
    const subjectDescriptor = { mediaType: MANIFEST, digest: subject, size: Buffer.byteLength(subjectBytes) };
    await layout.addToIndex(subjectDescriptor, 'v1');
    await layout.addToIndex(subjectDescriptor, 'v2');
    const sigBytes = manifest({ artifactType: 'application/x.sig', subject: subjectDescriptor });
    const sig = await put(layout, sigBytes);
    const sigDescriptor = { mediaType: MANIFEST, digest: sig, size: Buffer.byteLength(sigBytes) };
    await layout.addToIndex(sigDescriptor);
    await layout.addFallbackEntry(subject, sigDescriptor);
    const config = await put(layout, '{}');

    assert.equal(await layout.deleteManifest(sig), sig);
    assert.equal(await layout.hasBlob(sig), false);
    assert.equal(await layout.hasBlob(config), true, 'blobs another manifest may share stay');
    assert.deepEqual(await layout.referrers(subject), [], 'gone from the listing and the fallback index');
    await assert.rejects(layout.resolve(sig), /not in the layout/);

    const other = await put(
      layout,
      manifest({ artifactType: 'application/x.sig', subject: subjectDescriptor }),
    );
    await layout.addToIndex({ mediaType: MANIFEST, digest: other, size: 1 });
    assert.equal(await layout.deleteManifest('v2'), subject, 'a tag names the manifest; all its tags go');
    assert.deepEqual(await layout.tags(), [`sha256-${subject.slice(7)}`]);
    assert.equal(await layout.hasBlob(subject), false);
    assert.deepEqual(
      (await layout.referrers(subject)).map((d) => d.digest),
      [other],
      'a subject is a weak link: its referrers stay',
    );
    await assert.rejects(layout.deleteManifest('v1'), /tag v1 is not in the layout/);
  });

  test('deleteBlob removes a blob file; a listed manifest must be deleted as one', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const blob = await put(layout, 'bytes');
    const m = await put(layout, manifest());
    await layout.addToIndex({ mediaType: MANIFEST, digest: m, size: 1 }, 'v1');
    await assert.rejects(layout.deleteBlob(m), /is a manifest listed in .*index\.json/);
    await layout.deleteBlob(blob);
    assert.equal(await layout.hasBlob(blob), false);
    await assert.rejects(layout.deleteBlob(blob), /is not in the layout/);
  });
});
