import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pushBlob, pushImage, sha256 } from '../helpers/oci.ts';
import { readSyncTrace, straceSkip, straceSyncArgs, syncsAfterMark } from '../helpers/strace.ts';
import { spawnTether, tempDataDir } from '../helpers/tether-process.ts';

/**
 * The server under strace: which syncs complete between one HTTP response and the next shows what each
 * acknowledgement waited for (the requests run one at a time). crash-safety.test.ts covers kill -9; this
 * covers what only a power loss would reveal.
 */
test('each acknowledgement waits for the syncs that make it survive a power loss', {
  skip: straceSkip,
}, async (t) => {
  const { dir, cleanup } = await tempDataDir();
  t.after(cleanup);
  const data = join(dir, 'data');
  const log = join(dir, 'trace.txt');
  const server = await spawnTether(data, [], {}, { wrapper: ['strace', ...straceSyncArgs(log)] });
  const base = server.url;

  // 1: start a session (202), 2: a chunk (202), 3: finish it (201), 4: a whole blob in one POST (201).
  const start = await fetch(`${base}/v2/durable/blobs/uploads/`, { method: 'POST' });
  assert.equal(start.status, 202);
  const location = new URL(start.headers.get('location')!, base);
  const uploadId = location.pathname.split('/').at(-1)!;
  const chunk = Buffer.alloc(1000, 1);
  const patched = await fetch(location, {
    method: 'PATCH',
    body: chunk,
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': '0-999' },
  });
  assert.equal(patched.status, 202);
  const finishAt = new URL(patched.headers.get('location')!, base);
  finishAt.searchParams.set('digest', sha256(chunk));
  assert.equal((await fetch(finishAt, { method: 'PUT' })).status, 201);
  const whole = await pushBlob(base, 'durable', Buffer.alloc(2000, 2));
  // 5, 6: a config and a layer (201, 201), 7: a manifest by tag (201), 8: a tag DELETE (202),
  // 9: the manifest DELETE by digest (202): each is only metadata, acknowledged once the WAL is synced.
  const image = await pushImage(base, 'durable', 'v1');
  assert.equal((await fetch(`${base}/v2/durable/manifests/v1`, { method: 'DELETE' })).status, 202);
  assert.equal(
    (await fetch(`${base}/v2/durable/manifests/${image.digest}`, { method: 'DELETE' })).status,
    202,
  );

  // The traced process is strace; the server is its child (same pid after its re-execution).
  const serverPid = Number(
    readFileSync(`/proc/${server.proc.pid}/task/${server.proc.pid}/children`, 'utf8').trim(),
  );
  process.kill(serverPid, 'SIGTERM');
  await new Promise((resolve) => server.proc.once('exit', resolve));

  const events = await readSyncTrace(log, /"HTTP\/1\.1 (\d{3})/);
  const marks = events.flatMap((e) => ('mark' in e ? [e.mark] : []));
  assert.deepEqual(
    marks.slice(0, 9),
    ['202', '202', '201', '201', '201', '201', '201', '202', '202'],
    JSON.stringify(events),
  );
  const uploads = join(data, 'uploads');
  const wal = join(data, 'meta.db-wal');
  const blobDir = (digest: string) => join(data, 'blobs', 'sha256', digest.slice(7, 9));

  // The chunk: its bytes, its staged file's name and the session's new offset.
  assert.deepEqual(
    syncsAfterMark(events, 0).sort(),
    [`fdatasync ${join(uploads, uploadId)}`, `fdatasync ${wal}`, `fsync ${uploads}`].sort(),
  );
  // Finishing: the published name, then the link; the staged name no longer matters.
  assert.deepEqual(syncsAfterMark(events, 1), [`fsync ${blobDir(sha256(chunk))}`, `fdatasync ${wal}`]);
  // A whole blob: its bytes, its published name, the link; no sync of the staging directory.
  const put = syncsAfterMark(events, 2);
  assert.equal(put.length, 3, put.join('\n'));
  assert.match(put[0]!, new RegExp(`^fdatasync ${uploads}/[0-9a-f-]{36}$`));
  assert.deepEqual(put.slice(1), [`fsync ${blobDir(whole)}`, `fdatasync ${wal}`]);
  // The manifest PUT, the tag DELETE and the manifest DELETE: the commit's WAL frames, and nothing else.
  // (A commit left in the page cache would be answered first, its sync after the mark or never.)
  for (const [n, what] of [
    [5, 'manifest PUT by tag'],
    [6, 'tag DELETE'],
    [7, 'manifest DELETE'],
  ] as const) {
    assert.deepEqual(syncsAfterMark(events, n), [`fdatasync ${wal}`], what);
  }
});
