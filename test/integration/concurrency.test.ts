import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { pushImage, sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

describe('concurrent writers on the embedded store', () => {
  let reg: RunningRegistry;
  let cleanup: () => Promise<void>;
  before(async () => {
    const tmp = await tempDataDir();
    cleanup = tmp.cleanup;
    reg = await startRegistry({ storage: { data: tmp.dir } });
  });
  after(async () => {
    await reg.close();
    await cleanup();
  });

  const post = (repo: string, data: Buffer, digest: string) =>
    fetch(`${reg.url}/v2/${repo}/blobs/uploads/?digest=${digest}`, { method: 'POST', body: data });

  test('32 concurrent pushes of the same blob, into one repository and into 32, all succeed intact', async () => {
    const data = randomBytes(512 * 1024);
    const digest = sha256(data);
    const results = await Promise.all([
      ...Array.from({ length: 32 }, () => post('same/one', data, digest)),
      ...Array.from({ length: 32 }, (_, i) => post(`same/many-${i}`, data, digest)),
    ]);
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([201]));
    for (const repo of ['same/one', 'same/many-0', 'same/many-31']) {
      const got = Buffer.from(await (await fetch(`${reg.url}/v2/${repo}/blobs/${digest}`)).arrayBuffer());
      assert.ok(got.equals(data), repo);
    }
  });

  test('32 concurrent pushes of different blobs all read back intact', async () => {
    const blobs = Array.from({ length: 32 }, (_, i) => randomBytes(64 * 1024 + i));
    const results = await Promise.all(blobs.map((b) => post('different', b, sha256(b))));
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([201]));
    for (const b of blobs) {
      const got = Buffer.from(
        await (await fetch(`${reg.url}/v2/different/blobs/${sha256(b)}`)).arrayBuffer(),
      );
      assert.ok(got.equals(b));
    }
  });

  test('16 concurrent chunked uploads, chunks interleaved, each blob intact', async () => {
    const blobs = Array.from({ length: 16 }, () => randomBytes(300 * 1024));
    await Promise.all(
      blobs.map(async (blob) => {
        const start = await fetch(`${reg.url}/v2/chunked/blobs/uploads/`, { method: 'POST' });
        let location = start.headers.get('location')!;
        for (let offset = 0; offset < blob.length; offset += 100 * 1024) {
          const chunk = blob.subarray(offset, offset + 100 * 1024);
          const res = await fetch(`${reg.url}${location}`, {
            method: 'PATCH',
            body: chunk,
            headers: { 'Content-Range': `${offset}-${offset + chunk.length - 1}` },
          });
          assert.equal(res.status, 202);
          location = res.headers.get('location')!;
        }
        const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
        assert.equal((await fetch(`${reg.url}${location}?digest=${digest}`, { method: 'PUT' })).status, 201);
        const got = Buffer.from(await (await fetch(`${reg.url}/v2/chunked/blobs/${digest}`)).arrayBuffer());
        assert.ok(got.equals(blob));
      }),
    );
  });

  test('concurrent pushes to one tag end consistent: tags/list and GET agree on one winner', async () => {
    const images = await Promise.all(
      Array.from({ length: 16 }, (_, i) => pushImage(reg.url, 'race/tag', `candidate-${i}`)),
    );
    const contenders = await Promise.all(
      images.map((img) =>
        fetch(`${reg.url}/v2/race/tag/manifests/latest`, {
          method: 'PUT',
          body: img.bytes,
          headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
        }),
      ),
    );
    assert.deepEqual(new Set(contenders.map((r) => r.status)), new Set([201]));
    const winner = (await fetch(`${reg.url}/v2/race/tag/manifests/latest`)).headers.get(
      'docker-content-digest',
    );
    assert.ok(images.some((img) => img.digest === winner));
    const tags = ((await (await fetch(`${reg.url}/v2/race/tag/tags/list`)).json()) as { tags: string[] })
      .tags;
    assert.equal(tags.filter((t) => t === 'latest').length, 1);
  });
});
