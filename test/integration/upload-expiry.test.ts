import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startRegistry } from '../../src/server/start.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

test('abandoned uploads expire: sessions and staged bytes are removed; active ones stay', async (t) => {
  const { dir, cleanup } = await tempDataDir();
  const reg = await startRegistry({ storage: { data: dir }, settings: { 'uploads.ttlSeconds': 60 } });
  t.after(async () => {
    await reg.close();
    await cleanup();
  });
  const start = async () => {
    const res = await fetch(`${reg.url}/v2/expiry/blobs/uploads/`, { method: 'POST' });
    const location = res.headers.get('location')!;
    await fetch(`${reg.url}${location}`, { method: 'PATCH', body: 'some bytes' });
    return { location, id: location.split('/').at(-1)! };
  };
  const old = await start();
  // A staged file nobody owns (left by a crash between file and row), old enough to collect.
  const orphan = join(dir, 'uploads', '11111111-2222-3333-4444-555555555555');
  await writeFile(orphan, 'orphan');
  // Sweep as if 61 seconds had passed: past the 60 s TTL.
  const removed = await reg.registry.uploads.sweep(Date.now() + 61_000);
  assert.ok(removed >= 2, `removed ${removed}`);
  assert.equal((await fetch(`${reg.url}${old.location}`)).status, 404);
  assert.equal(existsSync(join(dir, 'uploads', old.id)), false);
  assert.equal(existsSync(orphan), false);
  // Within the TTL nothing is touched.
  const third = await start();
  assert.equal(await reg.registry.uploads.sweep(Date.now()), 0);
  assert.equal((await fetch(`${reg.url}${third.location}`)).status, 204);
});
