import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { digestOf } from '../../src/oci/digest.ts';
import { FsBlobStore } from '../../src/storage/blob/fs.ts';

const ignore = () => {};

/** Yields `bytes` in irregular chunks, giving other uploads a turn between them. */
async function* chunked(bytes: Buffer, sizes = [1, 4096, 65536, 70001, 300_000, 13]): AsyncIterable<Buffer> {
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length] ?? 1;
    yield bytes.subarray(at, at + size);
    at += size;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

for (const fsync of [true, false]) {
  describe(`FsBlobStore uploads (fsync ${fsync ? 'on' : 'off'})`, async () => {
    const root = await mkdtemp(join(tmpdir(), 'tether-fs-blob-'));
    after(() => rm(root, { recursive: true, force: true }));
    const store = await FsBlobStore.open(root, { fsync });

    test('appends at the acknowledged offset, dropping bytes past it, and publishes by digest', async () => {
      const id = randomUUID();
      await store.createUpload(id);
      const first = randomBytes(3 * 1024 * 1024 + 5);
      assert.equal(await store.appendUpload(id, 0, chunked(first), ignore), first.length);
      // A retried chunk starts again at an earlier acknowledged offset: what followed it is dropped.
      const retry = randomBytes(1000);
      assert.equal(await store.appendUpload(id, 1_000_000, chunked(retry), ignore), retry.length);
      const expected = Buffer.concat([first.subarray(0, 1_000_000), retry]);
      assert.ok((await readAll(await store.readUpload(id, expected.length))).equals(expected));

      const digest = digestOf('sha256', expected);
      await store.commitUpload(id, digest, expected.length);
      assert.equal(await store.stat(digest), expected.length);
      const reader = await store.read(digest, { start: 10, end: 19 });
      assert.equal(reader.length, 10);
      await reader.close();
    });

    test('many uploads at once (write batches shrink and grow as they start and end) store exact bytes', async () => {
      const uploads = Array.from({ length: 12 }, (_, i) => ({
        id: randomUUID(),
        bytes: randomBytes(256 * 1024 * (i + 1) + i),
      }));
      await Promise.all(
        uploads.map(async ({ id, bytes }, i) => {
          await store.createUpload(id);
          // Staggered starts, so the number of uploads in progress changes while each one streams.
          await new Promise((resolve) => setTimeout(resolve, i * 3));
          assert.equal(await store.appendUpload(id, 0, chunked(bytes), ignore), bytes.length);
        }),
      );
      for (const { id, bytes } of uploads) {
        assert.ok((await readAll(await store.readUpload(id, bytes.length))).equals(bytes), `upload ${id}`);
        await store.deleteUpload(id);
      }
    });

    test('a body that fails midway rejects, and the next append at the old offset starts clean', async () => {
      const id = randomUUID();
      await store.createUpload(id);
      const good = randomBytes(2 * 1024 * 1024);
      await store.appendUpload(id, 0, chunked(good), ignore);
      async function* failing(): AsyncIterable<Buffer> {
        yield randomBytes(1_500_000);
        throw new Error('client went away');
      }
      await assert.rejects(store.appendUpload(id, good.length, failing(), ignore), /client went away/);
      const tail = randomBytes(10);
      await store.appendUpload(id, good.length, chunked(tail), ignore);
      const expected = Buffer.concat([good, tail]);
      assert.ok((await readAll(await store.readUpload(id, expected.length))).equals(expected));
      await store.deleteUpload(id);
    });
  });
}
