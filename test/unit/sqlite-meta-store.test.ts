import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, test } from 'node:test';
import { digestOf } from '../../src/oci/digest.ts';
import { sqliteMigrations } from '../../src/storage/meta/migrations/sqlite.ts';
import { SqliteMetaStore } from '../../src/storage/meta/sqlite.ts';

const sha256 = (text: string) => digestOf('sha256', Buffer.from(text));

/** How many of this process's file descriptors are open on `path`. */
async function openDescriptors(path: string): Promise<number> {
  let count = 0;
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(join('/proc/self/fd', fd)).catch(() => '');
    if (target === path) count++;
  }
  return count;
}

function manifest(repo: string, i: number, config: { digest: string; size: number }) {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, config, i }));
  return {
    repo,
    digest: digestOf('sha256', bytes),
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: bytes.length,
    bytes,
    blobs: [config],
    children: [],
  };
}

describe('SqliteMetaStore on a file', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tether-sqlite-'));
  after(() => rm(root, { recursive: true, force: true }));

  test('concurrent writes all resolve, and every acknowledged one is there after a reopen', async () => {
    const path = join(root, 'concurrent', 'meta.db');
    const store = new SqliteMetaStore({ path });
    const config = { digest: sha256('config'), size: 6 };
    await store.linkBlob('app', config.digest, config.size);
    // Many commits in flight at once share WAL flushes; each must still resolve with its own result.
    const pushed = Array.from({ length: 64 }, (_, i) => manifest('app', i, config));
    const results = await Promise.all(pushed.map((m, i) => store.putManifest(m, [`v${i}`])));
    assert.ok(results.every((r) => r.status === 'ok'));
    const blobs = Array.from({ length: 64 }, (_, i) => sha256(`layer ${i}`));
    await Promise.all(blobs.map((d, i) => store.linkBlob(`repo-${i % 4}`, d, i)));
    assert.equal(await store.deleteTag('app', 'v0'), 'deleted');
    await store.close();

    const reopened = new SqliteMetaStore({ path });
    try {
      const tags = await reopened.listTags('app', { limit: 100 });
      assert.equal(tags.length, 63);
      assert.ok(!tags.includes('v0'));
      for (const m of pushed) assert.ok(await reopened.getManifest('app', m.digest));
      for (const [i, d] of blobs.entries()) assert.equal(await reopened.blobSize(`repo-${i % 4}`, d), i);
    } finally {
      await reopened.close();
    }
  });

  test('with synchronous FULL the store flushes the WAL itself; with NORMAL it does not', async () => {
    for (const [synchronous, own] of [
      ['FULL', 1],
      ['NORMAL', 0],
    ] as const) {
      const path = join(root, synchronous, 'meta.db');
      const store = new SqliteMetaStore({ path, synchronous });
      try {
        await store.linkBlob('app', sha256(synchronous), 1);
        // SQLite holds one descriptor on the WAL; the group commit holds a second one to fdatasync it.
        assert.equal(await openDescriptors(`${path}-wal`), 1 + own, synchronous);
      } finally {
        await store.close();
      }
      assert.equal(await openDescriptors(`${path}-wal`), 0, 'close releases the WAL');
    }
  });

  test('a new database opened while another connection holds it waits for the lock instead of failing', async () => {
    const path = join(root, 'busy', 'meta.db');
    await mkdir(dirname(path), { recursive: true });
    // Another process (a second server starting at the same moment) holds the new file until this one
    // has it open too (seen in /proc; it then tries the lock), 200 ms more, and prints when it let go.
    // The open must start before that moment and end after it, however slow this machine is.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const { DatabaseSync } = require('node:sqlite');
         const { readdirSync, readlinkSync } = require('node:fs');
         const path = ${JSON.stringify(path)};
         const db = new DatabaseSync(path);
         db.exec('BEGIN EXCLUSIVE');
         console.log('locked');
         const fds = '/proc/' + process.ppid + '/fd/';
         const opened = () => readdirSync(fds).some((fd) => { try { return readlinkSync(fds + fd) === path; } catch { return false; } });
         const release = () => { const at = Date.now(); db.close(); console.log('released ' + at); };
         const giveUp = setTimeout(() => { clearInterval(poll); release(); }, 5000);
         const poll = setInterval(() => {
           if (!opened()) return;
           clearInterval(poll);
           clearTimeout(giveUp);
           setTimeout(release, 200);
         }, 10);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let said = '';
    holder.stdout!.setEncoding('utf8');
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    await new Promise<void>((resolve) => {
      holder.stdout!.on('data', (d: string) => {
        said += d;
        if (said.includes('locked')) resolve();
      });
    });
    const started = Date.now();
    const store = new SqliteMetaStore({ path });
    const opened = Date.now();
    try {
      await store.linkBlob('app', sha256('waited'), 1);
      await exited;
      const released = Number(/released (\d+)/.exec(said)?.[1]);
      assert.ok(
        started <= released && released <= opened,
        `it waited for the other connection: open ${started}-${opened}, released at ${released}`,
      );
    } finally {
      await store.close();
      await exited;
    }
  });

  test('a damaged database file is refused with its path in the message', async () => {
    const path = join(root, 'damaged', 'meta.db');
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, Buffer.alloc(8192, 'not a database '));
    assert.throws(
      () => new SqliteMetaStore({ path }),
      (err: Error) => err.message === `cannot open the metadata database ${path}: file is not a database`,
    );
  });

  test('a failed write transaction rolls back and is not acknowledged', async () => {
    const store = new SqliteMetaStore({ path: join(root, 'rollback', 'meta.db') });
    try {
      await assert.rejects(store.completeUpload('no-such-upload', sha256('x'), 1), /vanished/);
      assert.equal(await store.findBlob(sha256('x')), undefined);
    } finally {
      await store.close();
    }
  });
});

describe('SqliteMetaStore migrations', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tether-sqlite-migrate-'));
  after(() => rm(root, { recursive: true, force: true }));

  test('schema 3 empties fallback_entries and the per-tag version tokens of a schema 2 store, and keeps the table', async () => {
    const path = join(root, 'meta.db');
    const v2 = new DatabaseSync(path);
    v2.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER)');
    for (const [i, sql] of sqliteMigrations.slice(0, 2).entries()) {
      v2.exec(sql);
      v2.prepare('INSERT INTO schema_migrations VALUES (?, ?)').run(i + 1, 0);
    }
    const subject = sha256('subject');
    const tag = subject.replace(':', '-');
    v2.prepare('INSERT INTO fallback_entries VALUES (?, ?, ?)').run('app', tag, sha256('listed'));
    v2.prepare('INSERT INTO referrer_versions VALUES (?, ?, ?)').run('app', tag, 'tag-token');
    v2.prepare('INSERT INTO referrer_versions VALUES (?, ?, ?)').run('app', subject, 'subject-token');
    v2.close();

    const store = new SqliteMetaStore({ path });
    try {
      assert.equal(await store.referrersVersion('app', [subject, tag]), `${subject}=subject-token`);
    } finally {
      await store.close();
    }
    const db = new DatabaseSync(path);
    try {
      assert.deepEqual({ ...db.prepare('SELECT count(*) AS n FROM fallback_entries').get() }, { n: 0 });
      // Every later migration ran too.
      assert.deepEqual(
        { ...db.prepare('SELECT max(version) AS v FROM schema_migrations').get() },
        { v: sqliteMigrations.length },
      );
    } finally {
      db.close();
    }
  });
});
