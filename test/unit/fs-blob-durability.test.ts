import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const STORE = new URL('../../src/storage/blob/fs.ts', import.meta.url).href;
const hasStrace = spawnSync('strace', ['-V']).status === 0;
const skip = (process.platform !== 'linux' || !hasStrace) && 'needs strace on Linux';

/** A completed sync (`fsync`/`fdatasync` of `path`) or a line the script printed, in completion order. */
type Event = { sync: string; path: string } | { mark: string };

/**
 * Runs `steps` against an FsBlobStore in a child process under strace. What matters for durability is
 * which syncs completed before an operation resolved, and only the system calls show that. A call that
 * another thread interrupts is printed in two parts (`<unfinished ...>`, then `<... resumed>` by the same
 * thread): it counts where it completed, with the path from its first part.
 */
async function traceSyncs(root: string, steps: string): Promise<Event[]> {
  const script = `
    import { FsBlobStore } from ${JSON.stringify(STORE)};
    const store = await FsBlobStore.open(${JSON.stringify(join(root, 'store'))});
    const mark = (text) => process.stdout.write('MARK ' + text + '\\n');
    const body = (n) => (async function* () { yield Buffer.alloc(n, 7); })();
    ${steps}`;
  const log = join(root, 'trace.txt');
  const run = spawnSync(
    'strace',
    [
      '-f',
      '-y',
      '-qq',
      '-e',
      'trace=fsync,fdatasync,write',
      '-o',
      log,
      process.execPath,
      '--input-type=module',
      '-e',
      script,
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(run.status, 0, run.stderr);
  const started = new Map<string, { sync: string; path: string }>();
  const events: Event[] = [];
  for (const line of (await readFile(log, 'utf8')).split('\n')) {
    const mark = /write\(1<[^>]*>, "MARK (\w+)\\n"/.exec(line);
    if (mark) events.push({ mark: mark[1]! });
    const [, pid, call, path] = /^(\d+) (fsync|fdatasync)\(\d+<([^>]*)>/.exec(line) ?? [];
    if (call && path) {
      if (line.includes('<unfinished ...>')) started.set(`${pid} ${call}`, { sync: call, path });
      else events.push({ sync: call, path });
    }
    const [, rpid, rcall] = /^(\d+) <\.\.\. (fsync|fdatasync) resumed>/.exec(line) ?? [];
    const resumed = started.get(`${rpid} ${rcall}`);
    if (resumed) {
      events.push(resumed);
      started.delete(`${rpid} ${rcall}`);
    }
  }
  return events;
}

/** The paths synced between two marks. */
function syncedBetween(events: Event[], from: string, to: string): string[] {
  const at = (text: string) => events.findIndex((e) => 'mark' in e && e.mark === text);
  assert.ok(at(from) >= 0 && at(to) > at(from), JSON.stringify(events));
  return events.slice(at(from) + 1, at(to)).flatMap((e) => ('path' in e ? [`${e.sync} ${e.path}`] : []));
}

test('an acknowledged chunk is synced with its staged file name; later chunks only sync data', {
  skip,
}, async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'tether-durability-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const id = '0e4f1b8e-2f55-4a43-9c5e-6a0b7d7c2a11';
  const events = await traceSyncs(
    root,
    `await store.createUpload('${id}');
     mark('created');
     await store.appendUpload('${id}', 0, body(1000), () => {});
     mark('first');
     await store.appendUpload('${id}', 1000, body(1000), () => {});
     mark('second');`,
  );
  const uploads = join(root, 'store', 'uploads');
  assert.deepEqual(syncedBetween(events, 'created', 'first').sort(), [
    `fdatasync ${join(uploads, id)}`,
    `fsync ${uploads}`,
  ]);
  assert.deepEqual(syncedBetween(events, 'first', 'second'), [`fdatasync ${join(uploads, id)}`]);
});

test('bytes about to be published sync their data, then the blob directory after the rename', {
  skip,
}, async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'tether-durability-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const id = '3c1d9a20-7b1e-4f0e-8d6a-2b5c4e9f0a77';
  const events = await traceSyncs(
    root,
    `const { createHash } = await import('node:crypto');
     const digest = 'sha256:' + createHash('sha256').update(Buffer.alloc(1000, 7)).digest('hex');
     await store.createUpload('${id}');
     mark('created');
     await store.appendUpload('${id}', 0, body(1000), () => {}, { publishing: true });
     mark('written');
     await store.commitUpload('${id}', digest, 1000);
     mark('published');`,
  );
  const uploads = join(root, 'store', 'uploads');
  assert.deepEqual(syncedBetween(events, 'created', 'written'), [`fdatasync ${join(uploads, id)}`]);
  const published = syncedBetween(events, 'written', 'published');
  assert.equal(published.length, 1, published.join('\n'));
  assert.match(published[0]!, /^fsync .*\/store\/blobs\/sha256\/[0-9a-f]{2}$/);
});
