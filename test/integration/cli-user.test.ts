/**
 * `tether user` on a fresh machine: docs/auth.md adds the users first and starts the server after, so the
 * data directory the default htpasswd file lives in does not exist yet (notes/audit-docs.md finding 1).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startRegistry } from '../../src/server/start.ts';
import { CLI, runCli } from '../helpers/cli.ts';
import { readSyncTrace, straceSkip, straceSyncArgs } from '../helpers/strace.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

let home: string;
let removeHome: () => Promise<void>;

before(async () => {
  ({ dir: home, cleanup: removeHome } = await tempDataDir());
});

after(async () => {
  await removeHome();
});

function addUser(name: string, password: string, args: string[] = []) {
  return runCli(['user', 'add', name, '--password-stdin', '--cost', '4', ...args], {
    cwd: home,
    env: { HOME: home, TETHER_CONFIG: '' },
    input: `${password}\n`,
  });
}

test('user add creates the default data directory (./data) before the first tether serve', async () => {
  const added = await addUser('alice', 'alice-pw');
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stderr, /^added alice in data\/htpasswd$/m);
  assert.deepEqual(await readdir(join(home, 'data')), ['htpasswd'], 'the temp file is renamed away');
  assert.equal((await stat(join(home, 'data', 'htpasswd'))).mode & 0o777, 0o600);
});

test('user add --data DIR creates DIR and its parents with the mode tether serve gives them', async () => {
  const data = join(home, 'new', 'deeper', 'data');
  const added = await addUser('bob', 'bob-pw', ['--data', data]);
  assert.equal(added.code, 0, added.stderr);
  // serve makes its data directory with a plain recursive mkdir: whatever the umask leaves.
  const reference = join(home, 'reference');
  await mkdir(reference);
  assert.equal((await stat(data)).mode & 0o777, (await stat(reference)).mode & 0o777);

  // The documented order then works: a server started on that directory knows the user.
  const reg = await startRegistry({
    storage: { data },
    settings: {
      'auth.mode': 'basic',
      'auth.access': [{ repositories: '**', users: ['bob'], actions: ['pull'] }],
    },
  });
  try {
    const res = await fetch(`${reg.url}/v2/`, {
      headers: { Authorization: `Basic ${Buffer.from('bob:bob-pw').toString('base64')}` },
    });
    assert.equal(res.status, 200);
  } finally {
    await reg.close();
  }
});

test('user add syncs the new file before its rename and the directory after it', {
  skip: straceSkip,
}, async () => {
  const data = join(home, 'synced');
  const log = join(home, 'user-add.strace');
  const run = spawnSync(
    'strace',
    [
      ...straceSyncArgs(log),
      process.execPath,
      CLI,
      'user',
      'add',
      'carol',
      '--password-stdin',
      '--cost',
      '4',
      '--data',
      data,
    ],
    {
      cwd: home,
      env: { ...process.env, HOME: home, TETHER_CONFIG: '' },
      input: 'carol-pw\n',
      encoding: 'utf8',
    },
  );
  assert.equal(run.status, 0, run.stderr);
  const syncs = (await readSyncTrace(log, /(?!)/)).flatMap((e) =>
    'path' in e ? [`${e.sync} ${e.path}`] : [],
  );
  const file = syncs.findIndex((s) => /^f(data)?sync .*\/synced\/htpasswd\.\d+\.tmp$/.test(s));
  const directory = syncs.indexOf(`fsync ${data}`);
  assert.ok(file >= 0, `the temp file is synced: ${syncs.join(', ')}`);
  assert.ok(directory > file, `the directory is synced after the file: ${syncs.join(', ')}`);
});
