/**
 * Where client commands get credentials (notes/audit-cli.md, nit N2): a credential helper that cannot
 * be run fails the command, naming it, while one that holds nothing for the host falls through. The
 * real `tether` program against real registries on port 0, with its own DOCKER_CONFIG.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { editHtpasswd, hashPassword } from '../../src/auth/htpasswd.ts';
import { bufferSource, RegistryClient } from '../../src/client/client.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const PASSWORD = 'credentials-secret';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let dir: string;
let cleanup: () => Promise<void>;
let bin: string;
let basic: RunningRegistry;

function tether(args: string[], env: NodeJS.ProcessEnv = {}, input = ''): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: dir,
      env: { ...process.env, HOME: dir, PATH: `${bin}:${process.env.PATH}`, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.stdin.end(input);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Exit 1 and one `tether: …` line, no stack trace. */
function assertOneLineFailure(r: Run, message: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /^tether: /);
  assert.match(r.stderr, message);
}

/** A DOCKER_CONFIG directory holding `config`. */
async function dockerConfig(name: string, config: object): Promise<{ DOCKER_CONFIG: string }> {
  await mkdir(join(dir, name), { recursive: true });
  await writeFile(join(dir, name, 'config.json'), JSON.stringify(config));
  return { DOCKER_CONFIG: join(dir, name) };
}

/** A `docker-credential-<name>` program on the tests' PATH that runs `script` (sh). */
async function credentialHelper(name: string, script: string): Promise<void> {
  const path = join(bin, `docker-credential-${name}`);
  await writeFile(path, `#!/bin/sh\n${script}\n`);
  await chmod(path, 0o755);
}

before(async () => {
  ({ dir, cleanup } = await tempDataDir());
  bin = join(dir, 'bin');
  await mkdir(bin);
  const hash = await hashPassword(PASSWORD, 4);
  await editHtpasswd(join(dir, 'htpasswd'), (users) => {
    users.set('alice', hash);
  });
  basic = await startRegistry({
    storage: { data: join(dir, 'basic') },
    settings: {
      'auth.mode': 'basic',
      'auth.htpasswd': join(dir, 'htpasswd'),
      'auth.access': [{ repositories: '**', users: ['alice'], actions: ['pull', 'push'] }],
    },
  });
  const alice = new RegistryClient({ credentials: async () => ({ username: 'alice', password: PASSWORD }) });
  const ref = { host: basic.host, repository: 'team/app' };
  await alice.pushArtifact(ref, {
    artifactType: 'application/vnd.test',
    files: [{ mediaType: 'text/plain', title: 'a.txt', bytes: Buffer.from('a') }],
    tag: 'v1',
  });
  await alice.uploadBlob(ref, bufferSource(Buffer.from('warm-up')));
});

after(async () => {
  await basic.close();
  await cleanup();
});

describe('credential helpers (N2)', () => {
  test('a helper that is not on PATH fails the command, naming it and where it is named', async () => {
    const env = await dockerConfig('missing', { credsStore: 'tether-test-missing' });
    assertOneLineFailure(
      await tether(['resolve', `${basic.host}/team/app:v1`], env),
      /credential helper docker-credential-tether-test-missing \(credsStore in .*config\.json\) cannot be run: executable file not found in \$PATH/,
    );
    // logout too: it cannot know whether the helper holds a secret.
    assertOneLineFailure(await tether(['logout', basic.host], env), /docker-credential-tether-test-missing/);
  });

  test('a helper that fails unexpectedly fails the command with its words', async () => {
    await credentialHelper('tether-test-locked', 'echo "the keychain is locked" >&2; exit 1');
    const env = await dockerConfig('locked', { credHelpers: { [basic.host]: 'tether-test-locked' } });
    assertOneLineFailure(
      await tether(['resolve', `${basic.host}/team/app:v1`], env),
      new RegExp(
        `credential helper docker-credential-tether-test-locked get \\(credHelpers\\["${basic.host}"\\] in .*\\) failed: the keychain is locked`,
      ),
    );
  });

  test('"credentials not found" falls through to auths, then to no credentials', async () => {
    await credentialHelper(
      'tether-test-empty',
      'read host; echo "credentials not found in native keychain"; exit 1',
    );
    const auth = Buffer.from(`alice:${PASSWORD}`).toString('base64');
    const withAuths = await dockerConfig('empty-auths', {
      credsStore: 'tether-test-empty',
      auths: { [basic.host]: { auth } },
    });
    const found = await tether(['resolve', `${basic.host}/team/app:v1`], withAuths);
    assert.equal(found.code, 0, found.stderr);
    assert.match(found.stdout, /^sha256:/);
    const bare = await dockerConfig('empty', { credsStore: 'tether-test-empty' });
    assertOneLineFailure(
      await tether(['resolve', `${basic.host}/team/app:v1`], bare),
      /authentication required; run `tether login/,
    );
  });
});
