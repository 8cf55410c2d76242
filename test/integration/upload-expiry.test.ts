import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
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

/** A request whose body the test writes bit by bit; resolves with the answer's status. */
function slowRequest(url: string, method: string, length: number) {
  const req = http.request(url, {
    method,
    headers: { 'Content-Length': length, 'Content-Type': 'application/octet-stream' },
  });
  const status = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
  });
  return { req, status };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the sweep never removes a session or a staged file a request is streaming into', async (t) => {
  const { dir, cleanup } = await tempDataDir();
  const reg = await startRegistry({ storage: { data: dir }, settings: { 'uploads.ttlSeconds': 60 } });
  t.after(async () => {
    await reg.close();
    await cleanup();
  });
  const MiB = 1024 * 1024;
  // Sweeps as if 61 s had passed: past the TTL for a session row last committed when it started, and
  // for a staged file last written a moment ago.
  const sweepLater = () => reg.registry.uploads.sweep(Date.now() + 61_000);

  // A whole blob pushed in one POST: its staged file has no session row.
  const whole = randomBytes(3 * MiB);
  const digest = `sha256:${createHash('sha256').update(whole).digest('hex')}`;
  const post = slowRequest(`${reg.url}/v2/expiry/busy/blobs/uploads/?digest=${digest}`, 'POST', whole.length);
  post.req.write(whole.subarray(0, 2 * MiB));
  await pause(300);
  const removed = await sweepLater();
  post.req.end(whole.subarray(2 * MiB));
  assert.equal(await post.status, 201);
  assert.equal(removed, 0, 'the staged file of the POST is left alone');
  const got = await fetch(`${reg.url}/v2/expiry/busy/blobs/${digest}`);
  assert.ok(Buffer.from(await got.arrayBuffer()).equals(whole));

  // A chunked session with a PATCH in flight when the sweep lists it.
  const started = await fetch(`${reg.url}/v2/expiry/busy/blobs/uploads/`, { method: 'POST' });
  const location = started.headers.get('location')!;
  const chunk = randomBytes(3 * MiB);
  const patch = slowRequest(`${reg.url}${location}`, 'PATCH', chunk.length);
  patch.req.write(chunk.subarray(0, 2 * MiB));
  await pause(300);
  const sweeping = sweepLater();
  await pause(100);
  patch.req.end(chunk.subarray(2 * MiB));
  assert.equal(await patch.status, 202);
  assert.equal(await sweeping, 0, 'the session is left alone');
  const status = await fetch(`${reg.url}${location}`);
  assert.equal(status.status, 204, 'the acknowledged session is still there');
  assert.equal(status.headers.get('range'), `0-${chunk.length - 1}`);
  assert.ok(existsSync(join(dir, 'uploads', location.split('/').at(-1)!)));

  // Once it is idle past the TTL, it goes.
  assert.equal(await sweepLater(), 1);
  assert.equal((await fetch(`${reg.url}${location}`)).status, 404);
});

test('open upload sessions are capped: beyond uploads.maxSessions a POST is 429 until one finishes', async (t) => {
  const reg = await startRegistry({ settings: { 'uploads.maxSessions': 3 } });
  t.after(() => reg.close());
  const post = () => fetch(`${reg.url}/v2/capped/blobs/uploads/`, { method: 'POST' });
  const open: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await post();
    assert.equal(res.status, 202);
    open.push(res.headers.get('location')!);
  }
  const refused = await post();
  assert.equal(refused.status, 429);
  assert.equal(refused.headers.get('retry-after'), '60');
  const body = (await refused.json()) as { errors: { code: string; message: string }[] };
  assert.equal(body.errors[0]!.code, 'TOOMANYREQUESTS');
  assert.match(body.errors[0]!.message, /3 upload sessions are open \(uploads\.maxSessions\)/);
  // A cancelled session makes room again.
  const cancel = await fetch(new URL(open[0]!, reg.url), { method: 'DELETE' });
  assert.equal(cancel.status, 204);
  assert.equal((await post()).status, 202);
});
