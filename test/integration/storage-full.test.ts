import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { Registry } from '../../src/registry/registry.ts';
import { listen } from '../../src/server/app.ts';
import { MemoryBlobStore } from '../../src/storage/blob/memory.ts';
import type { UploadHash } from '../../src/storage/blob/types.ts';
import { SqliteMetaStore } from '../../src/storage/meta/sqlite.ts';
import { sha256 } from '../helpers/oci.ts';
import { smallDiskSkip, smallDiskWrapper } from '../helpers/small-disk.ts';
import { spawnTether, tempDataDir } from '../helpers/tether-process.ts';

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

/** One request with a Buffer body; its status and body, or -1 when the connection failed. */
function request(
  url: string,
  method: string,
  body: Buffer = Buffer.alloc(0),
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve) => {
    const req = http.request(url, {
      method,
      headers: { 'Content-Length': body.length, 'Content-Type': 'application/octet-stream', ...headers },
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString(), headers: res.headers }),
      );
    });
    req.on('error', () => resolve({ status: -1, text: '', headers: {} }));
    req.end(body);
  });
}

test('on a full disk, failed chunks give their space back and cancelling an upload frees its file', {
  skip: smallDiskSkip,
}, async (t) => {
  const { dir, cleanup } = await tempDataDir();
  t.after(cleanup);
  const MiB = 1024 * 1024;
  const server = await spawnTether(join(dir, 'data'), [], {}, { wrapper: smallDiskWrapper(dir, 32) });
  t.after(() => server.kill9());
  const base = `${server.url}/v2/full/disk`;
  const session = async () => {
    const res = await request(`${base}/blobs/uploads/`, 'POST');
    assert.equal(res.status, 202);
    return `${server.url}${res.headers.location}`;
  };
  const patch = (location: string, bytes: Buffer, start: number) =>
    request(location, 'PATCH', bytes, { 'Content-Range': `${start}-${start + bytes.length - 1}` });
  const pushWhole = (bytes: Buffer) =>
    request(`${base}/blobs/uploads/?digest=${sha256(bytes)}`, 'POST', bytes);
  const stored = randomBytes(MiB);
  assert.equal((await pushWhole(stored)).status, 201);

  // 20 MiB acknowledged; a second 20 MiB chunk runs out of space after about 12.
  const a = await session();
  assert.equal((await patch(a, randomBytes(20 * MiB), 0)).status, 202);
  const b = await session();
  assert.equal((await patch(b, randomBytes(20 * MiB), 0)).status, 507);
  // Its unacknowledged bytes were cut off at once: the space is there for another push.
  const next = randomBytes(6 * MiB);
  assert.equal((await pushWhole(next)).status, 201, 'the failed chunk gave its space back');

  // Fill the disk with acknowledged chunks, down to a page.
  const c = await session();
  let offset = 0;
  for (const size of [4 * MiB, MiB, 256 * 1024, 64 * 1024, 16 * 1024, 4096]) {
    for (;;) {
      const res = await patch(c, randomBytes(size), offset);
      if (res.status !== 202) {
        // The bytes did not fit or, once they did, the offset's commit: 507 either way.
        assert.equal(res.status, 507, res.text);
        break;
      }
      offset += size;
    }
  }
  // Metadata writes fail too now, as a full disk (507), not as an internal error hidden behind the
  // ROLLBACK that SQLite already did.
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [],
  });
  const refused = await request(`${base}/manifests/full`, 'PUT', Buffer.from(manifest), {
    'Content-Type': 'application/vnd.oci.image.index.v1+json',
  });
  assert.equal(refused.status, 507, refused.text);
  assert.match(refused.text, /out of storage space/);

  // Cancelling the 20 MiB session frees its file first, so the row's delete has room and succeeds.
  const cancel = await request(a, 'DELETE');
  assert.equal(cancel.status, 204, cancel.text);
  assert.equal((await request(a, 'GET')).status, 404);
  assert.equal((await pushWhole(randomBytes(6 * MiB))).status, 201, 'the space came back');
  const retried = await request(`${base}/manifests/full`, 'PUT', Buffer.from(manifest), {
    'Content-Type': 'application/vnd.oci.image.index.v1+json',
  });
  assert.equal(retried.status, 201);
  // Nothing acknowledged was lost on the way.
  const status = await request(c, 'GET');
  assert.equal(status.status, 204);
  assert.equal(status.headers.range, `0-${offset - 1}`);
  const pulled = await fetch(`${base}/blobs/${sha256(stored)}`);
  assert.ok(Buffer.from(await pulled.arrayBuffer()).equals(stored));
  assert.doesNotMatch(server.output(), /cannot rollback/);
});

test('starting an upload session leaves nothing behind when its staged file or its row cannot be made', async (t) => {
  const noSpace = () =>
    Object.assign(new Error('ENOSPC: no space left on device, open'), {
      code: 'ENOSPC',
      errno: -28,
      syscall: 'open',
    });
  class FullBlobStore extends MemoryBlobStore {
    full = true;
    override async createUpload(id: string): Promise<void> {
      if (this.full) throw noSpace();
      return super.createUpload(id);
    }
  }
  const blobs = new FullBlobStore();
  const meta = new SqliteMetaStore({ path: ':memory:' });
  const registry = new Registry(blobs, meta, pino({ level: 'silent' }));
  const server = await listen(registry, pino({ level: 'silent' }), { host: '127.0.0.1', port: 0 });
  t.after(() => server.close());
  const base = `http://${server.address}`;
  const sessions = () => meta.listStaleUploads(Number.MAX_SAFE_INTEGER, 10);
  const staged = async () => {
    const ids: string[] = [];
    for await (const { id } of blobs.listUploads()) ids.push(id);
    return ids;
  };

  // No staged file: 507, and no session row waiting for the sweep.
  const refused = await fetch(`${base}/v2/full/start/blobs/uploads/`, { method: 'POST' });
  assert.equal(refused.status, 507);
  assert.deepEqual(await sessions(), []);

  // No row: 507, and the staged file made for it is gone.
  blobs.full = false;
  const createUpload = meta.createUpload;
  meta.createUpload = async () => {
    throw Object.assign(new Error('database or disk is full'), { code: 'ERR_SQLITE_ERROR', errcode: 13 });
  };
  const noRow = await fetch(`${base}/v2/full/start/blobs/uploads/`, { method: 'POST' });
  assert.equal(noRow.status, 507);
  assert.deepEqual(await staged(), []);

  // With room again, a session starts as usual.
  meta.createUpload = createUpload;
  const ok = await fetch(`${base}/v2/full/start/blobs/uploads/`, { method: 'POST' });
  assert.equal(ok.status, 202);
  assert.equal((await sessions()).length, 1);
  assert.equal((await staged()).length, 1);
});
