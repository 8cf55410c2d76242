import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { fileReader, fileWriter, hashFile } from '../../src/client/file-streams.ts';
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

  test('fileWriter keeps every byte of many small chunks in order, and wx refuses an existing file', async () => {
    const chunks = Array.from({ length: 300 }, (_, i) => randomBytes(1000 + i * 97));
    const path = join(dir, 'written');
    await pipeline(Readable.from(chunks), fileWriter(path, 'wx'));
    assert.ok((await readFile(path)).equals(Buffer.concat(chunks)));
    await assert.rejects(pipeline(Readable.from([Buffer.from('x')]), fileWriter(path, 'wx')), {
      code: 'EEXIST',
    });
    const read: Buffer[] = [];
    for await (const chunk of fileReader(path)) read.push(chunk as Buffer);
    assert.ok(Buffer.concat(read).equals(Buffer.concat(chunks)));
  });
});
