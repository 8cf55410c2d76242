import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startRegistry } from '../../src/server/start.ts';
import { sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

/**
 * A blob file damaged behind Tether's back (short after a power loss with storage.fsync false, or with
 * altered bytes) is repaired by pushing the blob again, and never mounted while it is short.
 */
test('pushing a blob again replaces a damaged file with the verified bytes; a short file is not mounted', async (t) => {
  const { dir, cleanup } = await tempDataDir();
  const reg = await startRegistry({ storage: { data: dir } });
  t.after(async () => {
    await reg.close();
    await cleanup();
  });
  const blob = randomBytes(3 * 1024 * 1024);
  const digest = sha256(blob);
  const file = join(dir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
  const push = (repo: string, how: 'whole' | 'chunked') =>
    how === 'whole'
      ? fetch(`${reg.url}/v2/${repo}/blobs/uploads/?digest=${digest}`, { method: 'POST', body: blob })
      : (async () => {
          const start = await fetch(`${reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
          const location = start.headers.get('location')!;
          await fetch(`${reg.url}${location}`, { method: 'PATCH', body: blob });
          return fetch(`${reg.url}${location}?digest=${digest}`, { method: 'PUT' });
        })();
  const pull = async (repo: string) => {
    const res = await fetch(`${reg.url}/v2/${repo}/blobs/${digest}`);
    return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
  };
  assert.equal((await push('repair/a', 'whole')).status, 201);

  // Short: pulls fail (the size check), a mount elsewhere falls back to an upload session, and pushing
  // the bytes again, in either form, repairs the file.
  for (const how of ['whole', 'chunked'] as const) {
    await truncate(file, 100);
    assert.equal((await pull('repair/a')).status, 500);
    const mount = await fetch(`${reg.url}/v2/repair/b/blobs/uploads/?mount=${digest}&from=repair/a`, {
      method: 'POST',
    });
    assert.equal(mount.status, 202, `${how}: a short blob is not mounted`);
    assert.equal((await push('repair/a', how)).status, 201);
    const repaired = await pull('repair/a');
    assert.equal(repaired.status, 200, how);
    assert.ok(repaired.bytes.equals(blob), `${how}: the verified bytes are served again`);
  }

  // Altered bytes of the right size: served as they are (reads are not verified), and replaced by the
  // next push of the blob, into any repository.
  const handle = await open(file, 'r+');
  await handle.write(Buffer.from([blob[1000]! ^ 0xff]), 0, 1, 1000);
  await handle.close();
  assert.notEqual(sha256((await pull('repair/a')).bytes), digest, 'a flipped byte is served undetected');
  assert.equal((await push('repair/c', 'whole')).status, 201);
  assert.ok((await pull('repair/a')).bytes.equals(blob));
  assert.ok((await pull('repair/c')).bytes.equals(blob));
});
