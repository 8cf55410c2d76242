import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { digestOf } from '../../src/oci/digest.ts';
import { FsBlobStore } from '../../src/storage/blob/fs.ts';
import { MemoryBlobStore } from '../../src/storage/blob/memory.ts';

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

const hex = (bytes: Buffer) => digestOf('sha256', bytes).slice('sha256:'.length);

for (const fsync of [true, false]) {
  describe(`FsBlobStore uploads (fsync ${fsync ? 'on' : 'off'})`, async () => {
    const root = await mkdtemp(join(tmpdir(), 'tether-fs-blob-'));
    const store = await FsBlobStore.open(root, { fsync });
    after(async () => {
      await store.close();
      await rm(root, { recursive: true, force: true });
    });
    const staged = async (id: string, length: number) =>
      (await readFile(join(root, 'uploads', id))).subarray(0, length);
    const fresh = (id: string) => store.uploadHash(id, 'sha256', 0);

    test('appends at the acknowledged offset, dropping bytes past it, and publishes by digest', async () => {
      const id = randomUUID();
      await store.createUpload(id);
      const first = randomBytes(3 * 1024 * 1024 + 5);
      const firstHash = await fresh(id);
      assert.equal(await store.appendUpload(id, 0, chunked(first), firstHash), first.length);
      // Each append that completes leaves the digest so far (kept by the session's row), without consuming it.
      assert.equal(firstHash.digestSoFar, hex(first));
      assert.equal(await firstHash.digest(), hex(first));
      // A retried chunk starts again at an earlier acknowledged offset: what followed it is dropped. The
      // hash that goes on from there is seeded from the staged bytes (as after a restart).
      const retry = randomBytes(1000);
      const resumed = await store.uploadHash(id, 'sha256', 1_000_000);
      assert.equal(await store.appendUpload(id, 1_000_000, chunked(retry), resumed), retry.length);
      const expected = Buffer.concat([first.subarray(0, 1_000_000), retry]);
      assert.ok((await staged(id, expected.length)).equals(expected));
      assert.equal(await resumed.digest(), hex(expected));

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
          const hash = await fresh(id);
          assert.equal(await store.appendUpload(id, 0, chunked(bytes), hash), bytes.length);
          assert.equal(await hash.digest(), hex(bytes), `digest of upload ${id}`);
        }),
      );
      for (const { id, bytes } of uploads) {
        assert.ok((await staged(id, bytes.length)).equals(bytes), `upload ${id}`);
        await store.deleteUpload(id);
      }
    });

    test('large appends from unaligned offsets, more at once than direct-write staging, store exact bytes', async () => {
      // Past the upload's first 2 MiB a durable append writes its page-aligned middle with O_DIRECT from
      // staging memory, and its unaligned head and tail through the page cache; at most 16 appends write
      // directly at once, so twenty uploads at once leave some in the page cache. Each upload is two
      // appends, the second from an odd offset past 2 MiB (direct from its start).
      const uploads = Array.from({ length: 20 }, (_, i) => ({
        id: randomUUID(),
        first: randomBytes(2 * 1024 * 1024 + 4096 * i + 777),
        second: randomBytes(3 * 1024 * 1024 + 13 * i + 1),
      }));
      await Promise.all(
        uploads.map(async ({ id, first, second }) => {
          await store.createUpload(id);
          const hash = await fresh(id);
          assert.equal(
            await store.appendUpload(id, 0, chunked(first, [65536, 70001, 300_000]), hash),
            first.length,
          );
          assert.equal(await store.appendUpload(id, first.length, chunked(second), hash), second.length);
          assert.equal(await hash.digest(), hex(Buffer.concat([first, second])), `digest of upload ${id}`);
        }),
      );
      for (const { id, first, second } of uploads) {
        const whole = Buffer.concat([first, second]);
        const bytes = await readFile(join(root, 'uploads', id));
        assert.equal(bytes.length, whole.length, `length of upload ${id}`);
        assert.ok(bytes.equals(whole), `upload ${id}`);
        await store.deleteUpload(id);
      }
    });

    test('a body that fails midway rejects, and the next append at the old offset starts clean', async () => {
      const id = randomUUID();
      await store.createUpload(id);
      const good = randomBytes(2 * 1024 * 1024);
      const hash = await fresh(id);
      await store.appendUpload(id, 0, chunked(good), hash);
      hash.dispose();
      async function* failing(): AsyncIterable<Buffer> {
        yield randomBytes(1_500_000);
        throw new Error('client went away');
      }
      const spoilt = await store.uploadHash(id, 'sha256', good.length);
      await assert.rejects(store.appendUpload(id, good.length, failing(), spoilt), /client went away/);
      spoilt.dispose();
      const tail = randomBytes(10);
      const resumed = await store.uploadHash(id, 'sha256', good.length);
      await store.appendUpload(id, good.length, chunked(tail), resumed);
      const expected = Buffer.concat([good, tail]);
      assert.ok((await staged(id, expected.length)).equals(expected));
      assert.equal(await resumed.digest(), hex(expected));
      await store.deleteUpload(id);
    });

    test('a storage error on the worker thread reaches the caller with its errno code', async () => {
      const id = randomUUID();
      await store.createUpload(id);
      await unlink(join(root, 'uploads', id));
      const hash = await fresh(id);
      await assert.rejects(store.appendUpload(id, 0, chunked(randomBytes(3_000_000)), hash), {
        code: 'ENOENT',
      });
      hash.dispose();
      // The worker carries on serving other uploads.
      const other = randomUUID();
      await store.createUpload(other);
      const bytes = randomBytes(100_000);
      const otherHash = await fresh(other);
      assert.equal(await store.appendUpload(other, 0, chunked(bytes), otherHash), bytes.length);
      assert.equal(await otherHash.digest(), hex(bytes));
      await store.deleteUpload(other);
    });

    test('an append that publishes finishes its hash: the digest comes with it', async () => {
      const id = randomUUID();
      await store.createUpload(id);
      const first = randomBytes(700_000);
      const hash = await fresh(id);
      await store.appendUpload(id, 0, chunked(first), hash);
      const last = randomBytes(1_300_000);
      await store.appendUpload(id, first.length, chunked(last), hash, { publishing: true });
      const whole = Buffer.concat([first, last]);
      assert.equal(await hash.digest(), hex(whole));
      hash.dispose();
      await store.commitUpload(id, digestOf('sha256', whole), whole.length);
      assert.equal(await store.stat(digestOf('sha256', whole)), whole.length);
    });

    test('a lost staged file is restored from the start of the blob its bytes were published in, atomically', async () => {
      const id = randomUUID();
      await store.createUpload(id);
      const whole = randomBytes(3 * 1024 * 1024 + 11);
      const hash = await fresh(id);
      await store.appendUpload(id, 0, chunked(whole), hash, { publishing: true });
      const digest = `sha256:${await hash.digest()}`;
      await store.commitUpload(id, digest, whole.length);
      assert.equal(await store.uploadSize(id), undefined, 'published: the staged file is gone');
      await store.restoreUpload(id, digest, 2_000_003);
      assert.equal(await store.uploadSize(id), 2_000_003);
      assert.ok((await staged(id, 2_000_003)).equals(whole.subarray(0, 2_000_003)));
      // More than the blob holds: refused, and nothing is left in uploads/ but what was there.
      const before = (await readdir(join(root, 'uploads'))).sort();
      await assert.rejects(store.restoreUpload(randomUUID(), digest, whole.length + 1), /shorter/);
      assert.deepEqual((await readdir(join(root, 'uploads'))).sort(), before);
      await store.deleteUpload(id);
    });

    test('a resumed hash longer than the staged bytes is refused', async () => {
      const id = randomUUID();
      await store.createUpload(id);
      const hash = await fresh(id);
      await store.appendUpload(id, 0, chunked(randomBytes(1000)), hash);
      hash.dispose();
      await assert.rejects(store.uploadHash(id, 'sha256', 5000), /shorter than its acknowledged 5000 bytes/);
      await store.deleteUpload(id);
    });

    test('publishing into a blob directory removed from outside creates it again', async () => {
      const publish = async (bytes: Buffer) => {
        const id = randomUUID();
        await store.createUpload(id);
        const hash = await fresh(id);
        await store.appendUpload(id, 0, chunked(bytes), hash, { publishing: true });
        const digest = `sha256:${await hash.digest()}`;
        await store.commitUpload(id, digest, bytes.length);
        return digest;
      };
      const first = await publish(randomBytes(100));
      const prefix = first.slice('sha256:'.length, 'sha256:'.length + 2);
      // A second blob for the same directory: the store has seen that directory already.
      let second: Buffer;
      do second = randomBytes(100);
      while (hex(second).slice(0, 2) !== prefix);
      await rm(join(root, 'blobs', 'sha256', prefix), { recursive: true });
      const digest = await publish(second);
      assert.equal(await store.stat(digest), 100);
      assert.equal(await store.stat(first), undefined);
      // Publishing bytes that exist already keeps the blob and drops the staged copy.
      assert.equal(await publish(second), digest);
      assert.equal(await store.stat(digest), 100);
    });

    test('an upload hash of another store is refused before anything is written', async () => {
      const id = randomUUID();
      await store.createUpload(id);
      const hash = await new MemoryBlobStore().uploadHash(id, 'sha256', 0);
      await assert.rejects(store.appendUpload(id, 0, chunked(randomBytes(10)), hash), /another store/);
      await store.deleteUpload(id);
    });
  });
}

test('an upload body of 1-byte chunks is staged, not held as one object per chunk', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tether-fs-blob-'));
  const store = await FsBlobStore.open(root, { fsync: false });
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  try {
    const id = randomUUID();
    await store.createUpload(id);
    const bytes = randomBytes(512 * 1024);
    gc();
    const start = process.memoryUsage().heapUsed;
    let peak = 0;
    async function* oneByteChunks(): AsyncIterable<Buffer> {
      for (let at = 0; at < bytes.length; at++) {
        // Each chunk a Buffer of its own, as Node's parser hands over chunked transfer coding.
        yield Buffer.from(bytes.subarray(at, at + 1));
        if (at % 32768 === 32767) {
          gc();
          peak = Math.max(peak, process.memoryUsage().heapUsed - start);
        }
      }
    }
    const hash = await store.uploadHash(id, 'sha256', 0);
    assert.equal(await store.appendUpload(id, 0, oneByteChunks(), hash), bytes.length);
    assert.equal(await hash.digest(), hex(bytes));
    assert.ok((await readFile(join(root, 'uploads', id))).equals(bytes));
    // Sent one by one, the chunks waiting in a batch held ~150 B of heap each: ~75 MB here.
    assert.ok(peak < 16 * 1024 * 1024, `the heap grew by ${(peak / 1e6).toFixed(1)} MB`);
  } finally {
    await store.close();
    await rm(root, { recursive: true, force: true });
  }
});
