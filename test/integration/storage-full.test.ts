import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { pino } from 'pino';
import { Registry } from '../../src/registry/registry.ts';
import { listen } from '../../src/server/app.ts';
import { MemoryBlobStore } from '../../src/storage/blob/memory.ts';
import type { UploadHash } from '../../src/storage/blob/types.ts';
import { SqliteMetaStore } from '../../src/storage/meta/sqlite.ts';

/** A blob store whose disk fills up after `room` bytes of upload data. */
class FillingBlobStore extends MemoryBlobStore {
  room: number;
  constructor(room: number) {
    super();
    this.room = room;
  }
  override async appendUpload(
    id: string,
    offset: number,
    source: AsyncIterable<Buffer>,
    hash: UploadHash,
  ): Promise<number> {
    const store = this;
    async function* metered() {
      for await (const chunk of source) {
        store.room -= chunk.length;
        if (store.room < 0) {
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
            code: 'ENOSPC',
            errno: -28,
            syscall: 'write',
          });
        }
        yield chunk;
      }
    }
    return super.appendUpload(id, offset, metered(), hash);
  }
}

test('a full disk mid-upload answers 507 with OCI error JSON, stores nothing, and the registry carries on', async (t) => {
  const blobs = new FillingBlobStore(1024 * 1024);
  const meta = new SqliteMetaStore({ path: ':memory:' });
  const registry = new Registry(blobs, meta, pino({ level: 'silent' }));
  const server = await listen(registry, pino({ level: 'silent' }), { host: '127.0.0.1', port: 0 });
  t.after(() => server.close());
  const base = `http://${server.address}`;

  const big = randomBytes(4 * 1024 * 1024);
  const digest = `sha256:${createHash('sha256').update(big).digest('hex')}`;
  const res = await fetch(`${base}/v2/full/repo/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream' },
    body: big,
  });
  assert.equal(res.status, 507);
  const body = (await res.json()) as { errors: { code: string; message: string }[] };
  assert.equal(body.errors[0]?.code, 'UNKNOWN');
  assert.match(body.errors[0]!.message, /out of storage space/);
  assert.equal((await fetch(`${base}/v2/full/repo/blobs/${digest}`, { method: 'HEAD' })).status, 404);

  // Space is freed: the same push now succeeds, and the server never went down in between.
  blobs.room = Number.POSITIVE_INFINITY;
  const retry = await fetch(`${base}/v2/full/repo/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream' },
    body: big,
  });
  assert.equal(retry.status, 201);
  const pulled = await fetch(`${base}/v2/full/repo/blobs/${digest}`);
  assert.ok(Buffer.from(await pulled.arrayBuffer()).equals(big));
});
