import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { collect, pourReadable, sinkReadable } from '../../src/client/body-sink.ts';
import { FileSink, fileReader, hashFile, pourToFile } from '../../src/client/file-streams.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const MiB = 1024 * 1024;

describe('client file streams', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
  });
  after(() => cleanup());

  test('hashFile gives the digest and size of empty, buffer-sized and ragged files', async () => {
    // Sizes around the 1 MiB read: none, one byte, exactly one and two buffers, and a short last read.
    for (const size of [0, 1, MiB, 2 * MiB, 2 * MiB + 5, 3 * MiB - 1]) {
      const bytes = randomBytes(size);
      const path = join(dir, `hash-${size}`);
      await writeFile(path, bytes);
      const expected = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      assert.deepEqual(await hashFile(path), { digest: expected, size }, `size ${size}`);
    }
  });

  test('hashFile rejects a missing file', async () => {
    await assert.rejects(hashFile(join(dir, 'missing')), { code: 'ENOENT' });
  });

  test('a stream poured into a file keeps every byte of many small chunks in order; wx refuses an existing file', async () => {
    const chunks = Array.from({ length: 300 }, (_, i) => randomBytes(1000 + i * 97));
    const path = join(dir, 'written');
    await pourToFile(path, (sink) => pourReadable(Readable.from(chunks), sink), { flags: 'wx', sync: true });
    assert.ok((await readFile(path)).equals(Buffer.concat(chunks)));
    await assert.rejects(
      pourToFile(path, (sink) => pourReadable(Readable.from([Buffer.from('x')]), sink), { flags: 'wx' }),
      { code: 'EEXIST' },
    );
    const read: Buffer[] = [];
    for await (const chunk of fileReader(path)) read.push(chunk as Buffer);
    assert.ok(Buffer.concat(read).equals(Buffer.concat(chunks)));
  });

  test('a sink that fails ends the stream it is poured from', async () => {
    const source = new Readable({ read() {} });
    source.push(Buffer.from('one'));
    await assert.rejects(
      pourReadable(source, {
        write() {
          throw new Error('disk full');
        },
      }),
      /disk full/,
    );
    assert.ok(source.destroyed);
  });

  test('a FileSink keeps every byte of chunks that straddle its batches, across slow and fast writes', async () => {
    // Chunks of 1 MiB + odd sizes so every batch boundary falls inside a chunk; some lent chunks are
    // overwritten by their source right after each write settles, as a download's read buffer is.
    const chunks = Array.from({ length: 14 }, (_, i) => randomBytes(MiB + i * 4099));
    const path = join(dir, 'sink');
    const sink = await FileSink.open(path, 'wx');
    const lent = Buffer.alloc(2 * MiB);
    for (const chunk of chunks) {
      chunk.copy(lent);
      const view = lent.subarray(0, chunk.length);
      const wait = sink.write(view);
      if (wait) await wait;
      lent.fill(0);
    }
    await sink.close();
    assert.ok((await readFile(path)).equals(Buffer.concat(chunks)));
    await assert.rejects(FileSink.open(path, 'wx'), { code: 'EEXIST' });
  });

  test("pourToFile leaves a failed pour's partial file to its caller and closes it", async () => {
    const path = join(dir, 'poured');
    await assert.rejects(
      pourToFile(path, async (sink) => {
        await sink.write(randomBytes(5 * MiB));
        throw new Error('source broke');
      }),
      /source broke/,
    );
    assert.equal((await readFile(path)).length, 4 * MiB, 'the whole batch written before the failure');
    await pourToFile(path, async (sink) => {
      await sink.write(Buffer.from('replaced'));
    });
    assert.equal(await readFile(path, 'utf8'), 'replaced');
  });

  test('collect keeps lent chunks whose memory the source reuses, and stops past its limit', async () => {
    // The source lends one buffer, refilled before each write, as a download does.
    const lending = async (sink: { write(chunk: Uint8Array): void | Promise<void> }) => {
      const buffer = Buffer.alloc(4);
      for (const fill of [1, 2, 3]) {
        buffer.fill(fill);
        await sink.write(buffer);
      }
    };
    const tooLarge = () => new Error('too large');
    assert.deepEqual([...(await collect(lending, 12, tooLarge))], [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
    await assert.rejects(collect(lending, 11, tooLarge), /too large/);
    assert.equal((await collect(async () => {}, 0, tooLarge)).length, 0);
  });

  test('sinkReadable copies what it is lent, pauses its source, and ends or fails with it', async () => {
    const lent = Buffer.alloc(1000);
    let waits = 0;
    const stream = sinkReadable(async (sink) => {
      for (let i = 0; i < 100; i++) {
        lent.fill(i);
        const wait = sink.write(lent);
        if (wait) {
          waits++;
          await wait;
        }
      }
    });
    const got: Buffer[] = [];
    for await (const chunk of stream) got.push(chunk as Buffer);
    // A byte stream may join chunks; what matters is every lent chunk, copied before its reuse.
    const expected = Buffer.concat(Array.from({ length: 100 }, (_, i) => Buffer.alloc(1000, i)));
    assert.ok(Buffer.concat(got).equals(expected));
    assert.ok(waits > 0, 'the stream asked its source to wait');
    const failing = sinkReadable(async () => {
      throw new Error('download failed');
    });
    await assert.rejects(async () => {
      for await (const _ of failing);
    }, /download failed/);
  });
});
