import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { OciLayout, REF_NAME } from '../../src/client/layout.ts';
import { LayoutTarget } from '../../src/client/target.ts';
import type { Descriptor } from '../../src/oci/manifest.ts';

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const EMPTY = { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 };
const PARALLEL = 24;

function manifest(extra: object = {}): Buffer {
  return Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST, config: EMPTY, layers: [], ...extra }),
  );
}

/** The entries of the subject's fallback-tag index, as regctl reads them (not the subject scan). */
async function fallbackEntries(layout: OciLayout, subject: string): Promise<string[]> {
  const tag = `sha256-${subject.slice('sha256:'.length)}`;
  const tagged = (await layout.readIndex()).manifests.filter((d) => d.annotations?.[REF_NAME] === tag);
  assert.equal(tagged.length, 1, 'one index.json entry holds the fallback tag');
  const { json } = await layout.manifest(tagged[0]!.digest);
  assert.equal(json.mediaType, INDEX);
  return (json.manifests as Descriptor[]).map((d) => d.digest).sort();
}

describe('OciLayout under parallel writers', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tether-audit-layout-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('fallback-tag entries added in parallel are all kept', async () => {
    const layout = await OciLayout.open(dir, { create: true });
    const subjectBytes = manifest();
    const subject = sha256(subjectBytes);
    await layout.writeBytes(subject, subjectBytes);
    const entries = Array.from({ length: PARALLEL }, (_, i) => {
      const bytes = manifest({
        artifactType: `application/x.r${i}`,
        subject: { mediaType: MANIFEST, digest: subject, size: subjectBytes.length },
      });
      return {
        mediaType: MANIFEST,
        digest: sha256(bytes),
        size: bytes.length,
        artifactType: `application/x.r${i}`,
      };
    });
    await Promise.all(entries.map((entry) => layout.addFallbackEntry(subject, entry)));
    assert.deepEqual(await fallbackEntries(layout, subject), entries.map((e) => e.digest).sort());
    // Adding one again changes nothing.
    await Promise.all(entries.slice(0, 3).map((entry) => layout.addFallbackEntry(subject, entry)));
    assert.equal((await fallbackEntries(layout, subject)).length, PARALLEL);
  });

  test('referrers pushed in parallel in tag mode, through two targets on one directory, are all listed', async () => {
    // `cp --referrers-to oci:X … oci:X` opens the directory twice: the two must not undo each other.
    const [a, b] = await Promise.all([
      LayoutTarget.open(dir, { create: true, fallbackTag: true }),
      LayoutTarget.open(dir, { create: true, fallbackTag: true }),
    ]);
    const subjectBytes = manifest();
    const subject = sha256(subjectBytes);
    const subjectDescriptor = { mediaType: MANIFEST, digest: subject, size: subjectBytes.length };
    await a.pushManifest({
      descriptor: subjectDescriptor,
      bytes: subjectBytes,
      json: JSON.parse(subjectBytes.toString()),
    });
    const referrers = Array.from({ length: PARALLEL }, (_, i) => {
      const bytes = manifest({ artifactType: `application/x.r${i}`, subject: subjectDescriptor });
      return {
        descriptor: { mediaType: MANIFEST, digest: sha256(bytes), size: bytes.length },
        bytes,
        json: JSON.parse(bytes.toString()) as Record<string, unknown>,
      };
    });
    await Promise.all(referrers.map((r, i) => (i % 2 ? a : b).pushManifest(r)));
    const expected = referrers.map((r) => r.descriptor.digest).sort();
    assert.deepEqual(await fallbackEntries(a.layout, subject), expected);
    const listed = (await a.layout.readIndex()).manifests.map((d) => d.digest);
    for (const digest of [subject, ...expected]) assert.ok(listed.includes(digest), `${digest} is listed`);
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.startsWith('.index.json')),
      [],
      'no temporary index file left',
    );
  });
});
