import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { readFallbackIndex } from '../../src/client/fallback-index.ts';
import { OciLayout } from '../../src/client/layout.ts';

/**
 * How a referrers fallback tag's content is read (audit-ref findings 2 and 7): an index's `mediaType`
 * is optional, so only a positively different type, a body without `manifests` or non-JSON is "not an
 * index".
 */
const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const entry = { mediaType: MANIFEST, digest: sha256('a'), size: 1, artifactType: 'application/x.a' };
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('readFallbackIndex', () => {
  test('an index without mediaType is an index, by its Content-Type or by its manifests list alone', () => {
    for (const contentType of [INDEX, `${INDEX}; charset=utf-8`, 'application/json', undefined]) {
      const read = readFallbackIndex(json({ schemaVersion: 2, manifests: [entry] }), contentType);
      assert.deepEqual(read, { index: true, manifests: [entry] }, String(contentType));
    }
    assert.deepEqual(readFallbackIndex(json({ schemaVersion: 2, mediaType: INDEX, manifests: [] }), INDEX), {
      index: true,
      manifests: [],
    });
  });

  test('malformed entries are dropped, the rest kept', () => {
    const read = readFallbackIndex(
      json({
        schemaVersion: 2,
        manifests: [entry, { digest: 'nope', size: 1 }, { digest: entry.digest }, null],
      }),
      INDEX,
    );
    assert.deepEqual(read, { index: true, manifests: [entry] });
  });

  test('anything else is not an index, and says what it is', () => {
    const cases: [Buffer, string | undefined, RegExp][] = [
      [json({ schemaVersion: 2, mediaType: MANIFEST, config: {}, layers: [] }), MANIFEST, /image manifest/],
      // The field wins over the header, and a conflicting header wins over a missing field.
      [json({ schemaVersion: 2, mediaType: MANIFEST, manifests: [] }), INDEX, /image manifest/],
      [json({ schemaVersion: 2, manifests: [] }), MANIFEST, /image manifest/],
      [json({ schemaVersion: 2, config: {}, layers: [] }), 'application/json', /without a manifests list/],
      [json({ schemaVersion: 2, mediaType: INDEX, manifests: {} }), INDEX, /without a manifests list/],
      [json([entry]), INDEX, /not a manifest/],
      [Buffer.from('<html>'), INDEX, /not JSON/],
    ];
    for (const [bytes, contentType, holds] of cases) {
      const read = readFallbackIndex(bytes, contentType);
      assert.equal(read.index, false, bytes.toString());
      assert.match((read as { holds: string }).holds, holds);
    }
  });
});

test('a layout finds referrers through a fallback-tag index that has no mediaType (finding 2)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-fallback-index-'));
  try {
    const layout = await OciLayout.open(dir, { create: true });
    const subject = sha256('subject');
    // The referrer is stored but not listed in index.json: only the fallback index names it.
    const referrer = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MANIFEST,
        artifactType: 'application/x.a',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 },
        layers: [],
        subject: { mediaType: MANIFEST, digest: subject, size: 7 },
      }),
    );
    await layout.writeBytes(sha256(referrer), referrer);
    const listed = { mediaType: MANIFEST, digest: sha256(referrer), size: referrer.length };
    const index = json({ schemaVersion: 2, manifests: [listed] });
    await layout.writeBytes(sha256(index), index);
    await layout.addToIndex(
      { mediaType: INDEX, digest: sha256(index), size: index.length },
      subject.replace(':', '-'),
    );
    assert.deepEqual(await layout.referrers(subject), [listed]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
