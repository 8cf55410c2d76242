import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { constants, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { skipTest } from '../helpers/skip.ts';
import { readSyncTrace, straceSkip, straceSyncArgs, syncsAfterMark } from '../helpers/strace.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const STORE = new URL('../../src/storage/blob/fs.ts', import.meta.url).href;

/**
 * Runs `steps` against an FsBlobStore (`store`, under `root/store`) in a child process under strace,
 * with `straceArgs` added; `mark(name)` writes a mark, `body(n)` is a body of n bytes. Returns the
 * child's standard output and the path of the trace (straceSyncArgs).
 */
function runStoreUnderStrace(root: string, steps: string, straceArgs: string[] = []) {
  const script = `
    import { FsBlobStore } from ${JSON.stringify(STORE)};
    const store = await FsBlobStore.open(${JSON.stringify(join(root, 'store'))});
    const mark = (text) => process.stdout.write('MARK ' + text + '\\n');
    const body = (n) => (async function* () { yield Buffer.alloc(n, 7); })();
    ${steps}`;
  const log = join(root, 'trace.txt');
  const run = spawnSync(
    'strace',
    [...straceSyncArgs(log), ...straceArgs, process.execPath, '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(run.status, 0, run.stderr);
  return { stdout: run.stdout, log };
}

/**
 * Runs `steps` as runStoreUnderStrace does; `mark(name)` separates the steps. Returns, for each pair of
 * consecutive marks, the syncs that completed between them.
 */
async function syncsBetweenMarks(root: string, steps: string): Promise<string[][]> {
  const { log } = runStoreUnderStrace(root, steps);
  const events = await readSyncTrace(log, /"MARK (\w+)/);
  const marks = events.filter((e) => 'mark' in e).length;
  return Array.from({ length: marks - 1 }, (_, n) => syncsAfterMark(events, n));
}

test('an acknowledged chunk is synced with its staged file name; later chunks only sync data', {
  skip: straceSkip,
}, async (t) => {
  const { dir: root, cleanup } = await tempDataDir();
  t.after(cleanup);
  const id = '0e4f1b8e-2f55-4a43-9c5e-6a0b7d7c2a11';
  const [first, second] = await syncsBetweenMarks(
    root,
    `await store.createUpload('${id}');
     mark('created');
     await store.appendUpload('${id}', 0, body(1000), await store.uploadHash('${id}', 'sha256', 0));
     mark('first');
     await store.appendUpload('${id}', 1000, body(1000), await store.uploadHash('${id}', 'sha256', 1000));
     mark('second');`,
  );
  const uploads = join(root, 'store', 'uploads');
  assert.deepEqual(first?.sort(), [`fdatasync ${join(uploads, id)}`, `fsync ${uploads}`]);
  assert.deepEqual(second, [`fdatasync ${join(uploads, id)}`]);
});

test('bytes about to be published sync their data, then the blob directory after the rename', {
  skip: straceSkip,
}, async (t) => {
  const { dir: root, cleanup } = await tempDataDir();
  t.after(cleanup);
  const id = '3c1d9a20-7b1e-4f0e-8d6a-2b5c4e9f0a77';
  const [written, published] = await syncsBetweenMarks(
    root,
    `const { createHash } = await import('node:crypto');
     const digest = 'sha256:' + createHash('sha256').update(Buffer.alloc(1000, 7)).digest('hex');
     await store.createUpload('${id}');
     mark('created');
     await store.appendUpload('${id}', 0, body(1000), await store.uploadHash('${id}', 'sha256', 0), { publishing: true });
     mark('written');
     await store.commitUpload('${id}', digest, 1000);
     mark('published');`,
  );
  assert.deepEqual(written, [`fdatasync ${join(root, 'store', 'uploads', id)}`]);
  assert.equal(published?.length, 1, published?.join('\n'));
  assert.match(published[0]!, /^fsync .*\/store\/blobs\/sha256\/[0-9a-f]{2}$/);
});

test('a large append starts write-back while its body still streams in', { skip: straceSkip }, async (t) => {
  const { dir: root, cleanup } = await tempDataDir();
  t.after(cleanup);
  const id = '7a2e5c10-9d3b-4e8f-a1c6-5f0b2d4e8c93';
  // 12 MiB in 1 MiB pieces; the mark is written when the loop asks for the ninth, with 8 MiB received.
  // The body pauses there for 300 ms first: the write-back started at 2, 4 and 6 MiB runs on the thread
  // pool, and on a loaded machine (the suite runs in parallel) it did not always complete before the
  // next 2 MiB arrived. A store that started no write-back completes none in the pause either.
  const [streaming, ending] = await syncsBetweenMarks(
    root,
    `const pieces = async function* () {
       for (let i = 0; i < 12; i++) {
         if (i === 8) {
           await new Promise((resolve) => setTimeout(resolve, 300));
           mark('streaming');
         }
         yield Buffer.alloc(1 << 20, i);
       }
     };
     await store.createUpload('${id}');
     mark('created');
     await store.appendUpload('${id}', 0, pieces(), await store.uploadHash('${id}', 'sha256', 0));
     mark('acknowledged');`,
  );
  const staged = `fdatasync ${join(root, 'store', 'uploads', id)}`;
  // Write-back of the first megabytes completed before the rest of the body arrived...
  assert.ok((streaming ?? []).filter((s) => s === staged).length >= 1, JSON.stringify(streaming));
  // ...and the acknowledgement still waited for a sync of everything (plus the staged name's directory).
  assert.ok(ending?.includes(staged), JSON.stringify(ending));
});

/**
 * A fresh data directory, removed after the test, on a file system that takes O_DIRECT; undefined (and
 * the test skipped, or failed under TETHER_TEST_STRICT=1) where it does not (tmpfs before Linux 6.6).
 */
async function directIODir(t: TestContext): Promise<string | undefined> {
  const { dir, cleanup } = await tempDataDir();
  t.after(cleanup);
  const probe = join(dir, 'direct-probe');
  try {
    await (await open(probe, constants.O_CREAT | constants.O_WRONLY | constants.O_DIRECT)).close();
    await unlink(probe);
    return dir;
  } catch {
    skipTest(t, `the file system of ${dir} refuses O_DIRECT (set TMPDIR to one that takes it)`);
    return undefined;
  }
}

test('past its first 2 MiB a durable append writes with O_DIRECT as its body streams in; the acknowledgement still waits for a datasync', {
  skip: straceSkip,
}, async (t) => {
  const root = await directIODir(t);
  if (root === undefined) return;
  const id = '5b8d3f72-1c4a-4e96-b0d7-9a2e6c1f4b58';
  // 14 MiB + 100 bytes; the mark is written when the loop asks for the eleventh MiB, with 10 MiB
  // received: past the first 2 MiB (page cache) and the few MiB the worker may still hold, some must
  // have reached the device. The last piece is not a page multiple, so the tail needs the page cache.
  const small = id.replace(/.$/, '9');
  const [streaming, ending, , smallAppend] = await syncsBetweenMarks(
    root,
    `const pieces = async function* () {
       for (let i = 0; i < 14; i++) {
         if (i === 10) mark('streaming');
         yield Buffer.alloc((1 << 20) + (i === 13 ? 100 : 0), i);
       }
     };
     await store.createUpload('${id}');
     mark('created');
     await store.appendUpload('${id}', 0, pieces(), await store.uploadHash('${id}', 'sha256', 0));
     mark('acknowledged');
     await store.createUpload('${small}');
     mark('small');
     await store.appendUpload('${small}', 0, body(1 << 20), await store.uploadHash('${small}', 'sha256', 0));
     mark('done');`,
  );
  const staged = join(root, 'store', 'uploads', id);
  assert.ok((streaming ?? []).includes(`O_DIRECT write ${staged}`), JSON.stringify(streaming));
  // The last partial page goes through the page cache; the datasync covers it, the file's size and the
  // device's cache, which holds the direct writes until then.
  assert.ok(ending?.includes(`fdatasync ${staged}`), JSON.stringify(ending));
  // An append of 1 MiB stays in the page cache: no direct write, its bytes made durable by a datasync.
  const smallStaged = join(root, 'store', 'uploads', small);
  assert.ok(smallAppend?.includes(`fdatasync ${smallStaged}`), JSON.stringify(smallAppend));
  assert.ok(!smallAppend?.some((s) => s.startsWith('O_DIRECT')), JSON.stringify(smallAppend));
});

test("a later append past the upload's first 2 MiB (a chunked PATCH) writes with O_DIRECT from its start; one under 1 MiB stays in the page cache", {
  skip: straceSkip,
}, async (t) => {
  const root = await directIODir(t);
  if (root === undefined) return;
  const id = '2d7f4c91-8e3b-4a65-9f10-c6b8e2a4d735';
  // Each body is one piece, so each append is one batch: the first (2 MiB from 0) never reaches the
  // threshold; the second starts at it, unaligned at its end; the third is too short to stage a half.
  const [second, third] = await syncsBetweenMarks(
    root,
    `await store.createUpload('${id}');
     await store.appendUpload('${id}', 0, body(2 << 20), await store.uploadHash('${id}', 'sha256', 0));
     mark('first');
     await store.appendUpload('${id}', 2 << 20, body((2 << 20) + 100), await store.uploadHash('${id}', 'sha256', 2 << 20));
     mark('second');
     await store.appendUpload('${id}', (4 << 20) + 100, body(512 << 10), await store.uploadHash('${id}', 'sha256', (4 << 20) + 100));
     mark('third');`,
  );
  const staged = join(root, 'store', 'uploads', id);
  assert.ok(second?.includes(`O_DIRECT write ${staged}`), JSON.stringify(second));
  assert.ok(second?.includes(`fdatasync ${staged}`), JSON.stringify(second));
  assert.deepEqual(third, [`fdatasync ${staged}`]);
});

test('direct writes still in flight when later batches arrive leave the staged file exact', {
  skip: straceSkip,
}, async (t) => {
  const root = await directIODir(t);
  if (root === undefined) return;
  // strace holds every pwrite64 (the direct writes; the page cache side uses pwritev) for 20 ms before
  // the kernel reads its memory, so the body arrives far faster than the device "writes": a staging
  // half refilled before its own write ran would put later bytes where earlier ones belong. The odd
  // first piece shifts every direct write off the batch boundaries.
  const id = '9c3e7a15-6b2d-4f08-a1e4-3d5f8b0c7e26';
  const steps = `
    const { createHash, randomBytes } = await import('node:crypto');
    const { readFile } = await import('node:fs/promises');
    const bytes = randomBytes((12 << 20) + 4321);
    const pieces = async function* () {
      yield bytes.subarray(0, 777);
      for (let at = 777; at < bytes.length; at += 1 << 20) yield bytes.subarray(at, at + (1 << 20));
    };
    await store.createUpload('${id}');
    const hash = await store.uploadHash('${id}', 'sha256', 0);
    const written = await store.appendUpload('${id}', 0, pieces(), hash);
    const staged = await readFile(${JSON.stringify(join(root, 'store', 'uploads', id))});
    const same = written === bytes.length && staged.equals(bytes);
    const digest = (await hash.digest()) === createHash('sha256').update(bytes).digest('hex');
    await store.close();
    process.stdout.write(JSON.stringify({ same, digest }));`;
  const { stdout, log } = runStoreUnderStrace(root, steps, ['-e', 'inject=pwrite64:delay_enter=20000']);
  assert.deepEqual(JSON.parse(stdout), { same: true, digest: true });
  const directWrites = (await readSyncTrace(log, /^$/)).filter(
    (e) => 'sync' in e && e.sync === 'O_DIRECT write',
  );
  assert.ok(directWrites.length >= 5, `${directWrites.length} direct writes`);
});
