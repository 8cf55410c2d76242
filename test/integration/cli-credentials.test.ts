/**
 * Where client commands get credentials (notes/audit-cli.md, gap G4 and nit N2): `-u` with
 * `--password-stdin` or `-p` for one command, instead of config.json (`cp`: per side, as oras cp); a
 * credential helper that cannot be run fails the command, naming it, while one that holds nothing for
 * the host falls through. The real `tether` program against real registries on port 0, with its own
 * DOCKER_CONFIG.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { editHtpasswd, hashPassword } from '../../src/auth/htpasswd.ts';
import { bufferSource } from '../../src/client/blob-source.ts';
import { RegistryClient } from '../../src/client/client.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { type CliRun as Run, runCli } from '../helpers/cli.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const PASSWORD = 'credentials-secret';
/** carol's, on the token registry only. */
const CAROL_PASSWORD = 'carol-secret';

let dir: string;
let cleanup: () => Promise<void>;
let bin: string;
/** alice (PASSWORD) may push anywhere on both; carol (CAROL_PASSWORD) exists on the token registry only. */
let basic: RunningRegistry;
let token: RunningRegistry;
/** No credentials in it: what a command uses comes from its flags. */
let empty: { DOCKER_CONFIG: string };

function tether(args: string[], env: NodeJS.ProcessEnv = {}, input = ''): Promise<Run> {
  return runCli(args, { cwd: dir, env: { HOME: dir, PATH: `${bin}:${process.env.PATH}`, ...env }, input });
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
  await editHtpasswd(join(dir, 'htpasswd-token'), async (users) => {
    users.set('alice', hash);
    users.set('carol', await hashPassword(CAROL_PASSWORD, 4));
  });
  basic = await startRegistry({
    storage: { data: join(dir, 'basic') },
    settings: {
      'auth.mode': 'basic',
      'auth.htpasswd': join(dir, 'htpasswd'),
      'auth.access': [{ repositories: '**', users: ['alice'], actions: ['pull', 'push'] }],
    },
  });
  token = await startRegistry({
    storage: { data: join(dir, 'token') },
    settings: {
      'auth.mode': 'token',
      'auth.htpasswd': join(dir, 'htpasswd-token'),
      'auth.access': [{ repositories: '**', users: ['alice', 'carol'], actions: ['pull', 'push'] }],
    },
  });
  empty = await dockerConfig('no-credentials', {});
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
  await token.close();
  await cleanup();
});

describe('credentials on the command line (G4)', () => {
  const app = () => `${basic.host}/team/app:v1`;

  test('-u with --password-stdin, or -p (which warns once), for a registry config.json knows nothing of', async () => {
    assertOneLineFailure(await tether(['resolve', app()], empty), /authentication required/);
    const stdin = await tether(['resolve', app(), '-u', 'alice', '--password-stdin'], empty, `${PASSWORD}\n`);
    assert.equal(stdin.code, 0, stdin.stderr);
    assert.match(stdin.stdout, /^sha256:[0-9a-f]{64}\n$/);
    assert.equal(stdin.stderr, '');
    const flag = await tether(['resolve', app(), '--username', 'alice', '-p', PASSWORD], empty);
    assert.equal(flag.code, 0, flag.stderr);
    assert.equal(flag.stdout, stdin.stdout);
    assert.equal(
      flag.stderr,
      "tether: warning: -p: a password on the command line shows in the process list and the shell's history; use --password-stdin\n",
    );
  });

  test('they replace config.json for the registry: stale credentials and a broken helper are not read', async () => {
    const stale = Buffer.from('alice:stale').toString('base64');
    for (const config of [
      { auths: { [basic.host]: { auth: stale } } },
      { credsStore: 'tether-test-not-there' },
    ]) {
      const env = await dockerConfig(`replaced-${Object.keys(config)[0]}`, config);
      assertOneLineFailure(
        await tether(['resolve', app()], env),
        /refused the credentials|docker-credential/,
      );
      const r = await tether(['resolve', app(), '-u', 'alice', '--password-stdin'], env, PASSWORD);
      assert.equal(r.code, 0, r.stderr);
    }
  });

  test('a wrong password is refused in one line, by Basic and by token registries', async () => {
    assertOneLineFailure(
      await tether(['resolve', app(), '-u', 'alice', '--password-stdin'], empty, 'wrong\n'),
      /the registry refused the credentials.*check -u/,
    );
    assertOneLineFailure(
      await tether(
        ['resolve', `${token.host}/team/app:v1`, '-u', 'alice', '--password-stdin'],
        empty,
        'wrong\n',
      ),
      /the registry refused the credentials.*check -u/,
    );
  });

  test('a password or token without -u is an identity token, as with oras', async () => {
    const basicAuth = Buffer.from(`carol:${CAROL_PASSWORD}`).toString('base64');
    const grant = await fetch(`${token.url}/auth/token?service=tether&offline_token=true`, {
      headers: { Authorization: `Basic ${basicAuth}` },
    });
    const { refresh_token: identityToken } = (await grant.json()) as { refresh_token: string };
    await writeFile(join(dir, 'id.txt'), 'pushed with an identity token');
    const push = await tether(
      ['push', `${token.host}/team/id:v1`, 'id.txt', '--artifact-type', 't/x', '--password-stdin'],
      empty,
      identityToken,
    );
    assert.equal(push.code, 0, push.stderr);
  });

  test('usage errors, before anything is sent (exit 2)', async () => {
    for (const [args, input, message] of [
      [['-u', 'alice'], '', /-u alice needs a password: -p or --password-stdin/],
      [
        ['-u', 'alice', '-p', 'x', '--password-stdin'],
        PASSWORD,
        /-p and --password-stdin exclude each other/,
      ],
      [['-u', 'alice', '--password-stdin'], '', /--password-stdin: standard input has no password/],
      [['-u', '', '-p', 'x'], '', /-u takes a user name/],
    ] as const) {
      const r = await tether(['resolve', app(), ...args], empty, input);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    }
  });

  test('cp: -u for both registries, --from-*/--to-* for one; --password-stdin for the user without one', async () => {
    // alice has the same password on both registries.
    const both = await tether(
      ['cp', '-q', app(), `${token.host}/copies/both:v1`, '-u', 'alice', '--password-stdin'],
      empty,
      PASSWORD,
    );
    assert.equal(both.code, 0, both.stderr);
    // alice's from the source, carol's to the destination: neither registry sees the other's password.
    const sided = await tether(
      [
        'cp',
        '-q',
        app(),
        `${token.host}/copies/sided:v1`,
        ...['--from-username', 'alice', '--from-password', PASSWORD],
        ...['--to-username', 'carol', '--password-stdin'],
      ],
      empty,
      CAROL_PASSWORD,
    );
    assert.equal(sided.code, 0, sided.stderr);
    assert.match(sided.stderr, /^tether: warning: --from-password: /);
    // -u for both, --to-* replacing it for the destination.
    const replaced = await tether(
      [
        'cp',
        '-q',
        app(),
        `${token.host}/copies/replaced:v1`,
        ...['-u', 'alice', '--password-stdin', '--to-username', 'carol', '--to-password', CAROL_PASSWORD],
      ],
      empty,
      PASSWORD,
    );
    assert.equal(replaced.code, 0, replaced.stderr);
    // carol is no user of the source registry.
    const wrongSide = await tether(
      ['cp', '-q', app(), `${token.host}/copies/wrong:v1`, '--from-username', 'carol', '--password-stdin'],
      empty,
      CAROL_PASSWORD,
    );
    assert.equal(wrongSide.code, 1, wrongSide.stderr);
    assert.match(
      wrongSide.stderr,
      new RegExp(`${basic.host}/team/app:v1: the registry refused the credentials`),
    );
  });

  test('cp: side flags that would do nothing, and two users waiting for stdin, are usage errors', async () => {
    for (const [args, message] of [
      [
        [app(), 'oci:layout:v1', '--to-username', 'x', '--to-password', 'y'],
        /--to-username: the destination is an OCI layout/,
      ],
      [
        [app(), `${basic.host}/team/other:v1`, '--from-username', 'alice', '--from-password', 'y'],
        /the source and destination are one registry/,
      ],
      [
        [app(), `${token.host}/x:v1`, '-u', 'a', '--to-username', 'b', '--password-stdin'],
        /--password-stdin gives one password, and -u and --to-username each need one/,
      ],
    ] as const) {
      const r = await tether(['cp', '-q', ...args], empty, 'secret');
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    }
  });

  test('login reads -p and --password-stdin the same way (and warns about -p)', async () => {
    const env = await dockerConfig('login', {});
    const r = await tether(['login', basic.host, '-u', 'alice', '-p', PASSWORD], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^tether: warning: -p: .*\nLogin Succeeded/);
    const none = await tether(['login', basic.host, '-u', 'alice'], env);
    assert.equal(none.code, 2, none.stderr);
  });
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
