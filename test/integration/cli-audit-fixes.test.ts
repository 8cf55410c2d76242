/**
 * The client CLI's answers to the audit in notes/audit-cli.md (findings 3, 5, 6, 7, 8, 9, 11; nits N5,
 * N9): the real `tether` program against real registries on port 0, with its own HOME and DOCKER_CONFIG.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { editHtpasswd, hashPassword } from '../../src/auth/htpasswd.ts';
import { bufferSource } from '../../src/client/blob-source.ts';
import { RegistryClient } from '../../src/client/client.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { CLI, certGenerateArgs, type CliRun as Run, runCli } from '../helpers/cli.ts';
import { tempDataDir } from '../helpers/tether-process.ts';
import { strictTrustPolicy } from '../helpers/trust-policy.ts';

const PASSWORD = 'audit-secret';

let home: string;
let removeHome: () => Promise<void>;
let reg: RunningRegistry;
const client = new RegistryClient();

function tether(
  args: string[],
  options: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Run> {
  return runCli(args, {
    cwd: options.cwd ?? home,
    env: { HOME: home, DOCKER_CONFIG: join(home, '.docker'), ...options.env },
    ...(options.input !== undefined ? { input: options.input } : {}),
  });
}

/** A failure the user can act on: exit 1 and one `tether: …` line, no stack trace. */
function assertOneLineFailure(r: Run, message: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^tether: /);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, message);
}

async function pushFiles(repoTag: string, text: string): Promise<string> {
  const [repository, tag] = repoTag.split(':') as [string, string];
  const ref = { host: reg.host, repository };
  const files = [{ mediaType: 'text/plain', title: 'a.txt', bytes: Buffer.from(text) }];
  return (await client.pushArtifact(ref, { artifactType: 'application/vnd.test', files, tag })).digest;
}

async function authRegistry(mode: 'basic' | 'token', dir: string): Promise<RunningRegistry> {
  const hash = await hashPassword(PASSWORD, 4);
  await editHtpasswd(join(dir, 'htpasswd'), (users) => {
    users.set('alice', hash);
  });
  return startRegistry({
    settings: {
      'auth.mode': mode,
      'auth.htpasswd': join(dir, 'htpasswd'),
      'auth.access': [{ repositories: '**', users: ['alice'], actions: ['pull', 'push'] }],
    },
  });
}

before(async () => {
  ({ dir: home, cleanup: removeHome } = await tempDataDir());
  await mkdir(join(home, '.docker'));
  reg = await startRegistry();
});

after(async () => {
  await reg.close();
  await removeHome();
});

describe('-h/--help prints the usage, exits 0 and does nothing else (finding 3)', () => {
  test('manifest delete REF -h deletes nothing', async () => {
    const digest = await pushFiles('helpdel:v1', 'keep me');
    const r = await tether(['manifest', 'delete', `${reg.host}/helpdel:v1`, '-h']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^usage: tether manifest /);
    assert.match(r.stdout, /--plain-http/, 'the help shows the common flags');
    assert.equal((await client.resolve({ host: reg.host, repository: 'helpdel', tag: 'v1' })).digest, digest);
  });

  test('cp SRC DST --help copies nothing; pull REF --help writes nothing; pull --help alone exits 0', async () => {
    await pushFiles('helpcp:v1', 'do not copy');
    const cp = await tether(['cp', `${reg.host}/helpcp:v1`, `${reg.host}/helpcp-dst:v1`, '--help']);
    assert.equal(cp.code, 0, cp.stderr);
    assert.match(cp.stdout, /^usage: tether cp /);
    await assert.rejects(
      client.resolve({ host: reg.host, repository: 'helpcp-dst', tag: 'v1' }),
      /not found/,
    );

    const out = join(home, 'pull-help');
    await mkdir(out);
    const pull = await tether(['pull', `${reg.host}/helpcp:v1`, '--help'], { cwd: out });
    assert.equal(pull.code, 0, pull.stderr);
    assert.deepEqual(await readdir(out), []);
    const bare = await tether(['pull', '--help']);
    assert.equal(bare.code, 0, bare.stderr);
    assert.match(bare.stdout, /^usage: tether pull REF/);
  });

  test('every command takes -h', async () => {
    for (const command of [
      ['resolve'],
      ['manifest'],
      ['blob'],
      ['repo'],
      ['tag'],
      ['push'],
      ['attach'],
      ['discover'],
      ['sign'],
      ['verify'],
      ['cert'],
      ['login'],
      ['logout'],
      ['user'],
    ]) {
      const r = await tether([...command, '-h']);
      assert.equal(r.code, 0, `${command[0]}: ${r.stderr}`);
      assert.match(r.stdout, /usage/i, command[0]);
      assert.equal(r.stderr, '', command[0]);
    }
  });
});

describe('a digest where the command cannot honour it (finding 5)', () => {
  test('push HOST/REPO@DIGEST is refused before anything is pushed; latest stays', async () => {
    const kept = await pushFiles('pd:latest', 'the latest');
    await writeFile(join(home, 'a.txt'), 'new content');
    const r = await tether([
      'push',
      `${reg.host}/pd@sha256:${'1'.repeat(64)}`,
      'a.txt',
      '--artifact-type',
      'application/vnd.test',
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /push takes a tag, not a digest/);
    assert.equal((await client.resolve({ host: reg.host, repository: 'pd', tag: 'latest' })).digest, kept);
  });

  test("cp SRC DST@DIGEST: refused unless DIGEST is the source's, then copied under it", async () => {
    const digest = await pushFiles('cpd:v1', 'copy by digest');
    const wrong = await tether([
      'cp',
      '-q',
      `${reg.host}/cpd:v1`,
      `${reg.host}/cpd-dst@sha256:${'1'.repeat(64)}`,
    ]);
    assertOneLineFailure(wrong, /has another digest/);
    await assert.rejects(client.resolve({ host: reg.host, repository: 'cpd-dst', digest }), /not found/);

    const right = await tether(['cp', '-q', `${reg.host}/cpd:v1`, `${reg.host}/cpd-dst@${digest}`]);
    assert.equal(right.code, 0, right.stderr);
    assert.equal(right.stdout.trim(), digest);
    assert.equal((await client.resolve({ host: reg.host, repository: 'cpd-dst', digest })).digest, digest);
    assert.deepEqual(await client.listTags({ host: reg.host, repository: 'cpd-dst' }), []);
  });
});

describe('failures print one line, not a stack trace (findings 6, 7)', () => {
  let tokenReg: RunningRegistry;
  let basicReg: RunningRegistry;
  let dir: string;
  let cleanup: () => Promise<void>;
  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    tokenReg = await authRegistry('token', dir);
    basicReg = await authRegistry('basic', dir);
  });
  after(async () => {
    await tokenReg.close();
    await basicReg.close();
    await cleanup();
  });
  const dockerConfig = async (name: string, config: string) => {
    await mkdir(join(dir, name), { recursive: true });
    await writeFile(join(dir, name, 'config.json'), config);
    return { DOCKER_CONFIG: join(dir, name) };
  };

  test('stale credentials for a token registry, and a config.json that is not JSON', async () => {
    const stale = Buffer.from('alice:not-the-password').toString('base64');
    const env = await dockerConfig('stale', JSON.stringify({ auths: { [tokenReg.host]: { auth: stale } } }));
    assertOneLineFailure(
      await tether(['resolve', `${tokenReg.host}/team/app:v1`], { env }),
      /refused the credentials.*tether login/,
    );
    const broken = await dockerConfig('broken', '{bad');
    assertOneLineFailure(
      await tether(['resolve', `${tokenReg.host}/team/app:v1`], { env: broken }),
      /cannot read .*config\.json/,
    );
    // The parser quotes the text it choked on, newline included (notes/audit-docs.md finding 9).
    const prose = await dockerConfig('prose', 'not json\n');
    assertOneLineFailure(
      await tether(['logout', tokenReg.host], { env: prose }),
      /cannot read .*config\.json/,
    );
  });

  test('login: wrong password, unreachable registry, missing credential helper all exit 1', async () => {
    const env = await dockerConfig('login', '{}');
    for (const r of [basicReg, tokenReg]) {
      const wrong = await tether(['login', r.host, '-u', 'alice', '--password-stdin'], {
        env,
        input: 'wrong\n',
      });
      assertOneLineFailure(wrong, /invalid username or password/);
    }
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as net.AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const unreachable = await tether(['login', `127.0.0.1:${port}`, '-u', 'alice', '--password-stdin'], {
      env,
      input: `${PASSWORD}\n`,
    });
    assertOneLineFailure(unreachable, /cannot reach the registry: .*ECONNREFUSED/);

    const helper = await dockerConfig('helper', JSON.stringify({ credsStore: 'tether-audit-missing' }));
    const stored = await tether(['login', basicReg.host, '-u', 'alice', '--password-stdin'], {
      env: helper,
      input: `${PASSWORD}\n`,
    });
    assertOneLineFailure(
      stored,
      /credentials were not stored: credential helper docker-credential-tether-audit-missing .*executable file not found/,
    );
  });

  test('manifest put of a file that is not JSON', async () => {
    await writeFile(join(home, 'bad.json'), 'not json\nat all');
    assertOneLineFailure(
      await tether(['manifest', 'put', `${reg.host}/files:bad`, 'bad.json']),
      /bad\.json is not a JSON manifest/,
    );
  });
});

describe('arguments: extras are refused, tag takes several (finding 8, nit N9)', () => {
  test('resolve a b, cp a b c, pull a b, discover a b exit 2 and do nothing', async () => {
    await pushFiles('extra:v1', 'extra');
    const src = `${reg.host}/extra:v1`;
    for (const args of [
      ['resolve', src, `${reg.host}/extra:nope`],
      ['cp', '-q', src, `${reg.host}/extra2:v1`, `${reg.host}/extra3:v1`],
      ['pull', src, 'more'],
      ['discover', src, 'more'],
      ['manifest', 'get', src, 'more'],
    ]) {
      const r = await tether(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^tether: unexpected argument "/);
      assert.match(r.stderr, /\nusage: tether /);
    }
    await assert.rejects(client.resolve({ host: reg.host, repository: 'extra2', tag: 'v1' }), /not found/);
    await assert.rejects(client.resolve({ host: reg.host, repository: 'extra3', tag: 'v1' }), /not found/);
  });

  test('tag REF t1 t2 t3 sets all three; a bad tag among them sets none', async () => {
    const digest = await pushFiles('tags:v1', 'tags');
    const bad = await tether(['tag', `${reg.host}/tags:v1`, 'ok', 'bad tag!']);
    assert.equal(bad.code, 2, bad.stderr);
    const r = await tether(['tag', `${reg.host}/tags:v1`, 't1', 't2', 't3']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await client.listTags({ host: reg.host, repository: 'tags' }), ['t1', 't2', 't3', 'v1']);
    for (const tag of ['t1', 't2', 't3'])
      assert.equal((await client.resolve({ host: reg.host, repository: 'tags', tag })).digest, digest);
  });

  test('--platform bogus, --depth abc, --chunk-size 0 and logout without a host are usage errors', async () => {
    await writeFile(join(home, 'a.txt'), 'x');
    for (const args of [
      ['cp', '--platform', 'bogus', `${reg.host}/tags:v1`, `${reg.host}/plat:v1`],
      ['discover', `${reg.host}/tags:v1`, '--depth', 'abc'],
      ['push', `${reg.host}/chunk:v1`, 'a.txt', '--artifact-type', 'a/b', '--chunk-size', '0'],
      ['logout'],
    ]) {
      const r = await tether(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^tether: /);
    }
    await assert.rejects(client.resolve({ host: reg.host, repository: 'chunk', tag: 'v1' }), /not found/);
  });
});

test("discover --verify --format json carries each signature's verification (finding 9)", async () => {
  await pushFiles('signed:v1', 'signed');
  const certs = join(home, 'certs');
  const store = join(home, 'truststore');
  const generated = await tether(certGenerateArgs(certs, 'audit', { store }));
  assert.equal(generated.code, 0, generated.stderr);
  const ref = `${reg.host}/signed:v1`;
  const signed = await tether([
    'sign',
    '-q',
    ref,
    '--key',
    join(certs, 'leaf.key'),
    '--cert',
    join(certs, 'chain.pem'),
  ]);
  assert.equal(signed.code, 0, signed.stderr);
  const policy = join(home, 'trustpolicy.json');
  await writeFile(
    policy,
    strictTrustPolicy({
      name: 'audit',
      registryScopes: ['*'],
      trustStores: ['ca:audit'],
      trustedIdentities: ['*'],
    }),
  );
  const r = await tether([
    'discover',
    ref,
    '--verify',
    '--trust-policy',
    policy,
    '--trust-store',
    store,
    '--format',
    'json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const [signature] = JSON.parse(r.stdout).referrers;
  assert.equal(signature.digest, signed.stdout.trim());
  assert.match(signature.verification, /^verified \(policy "audit", signer .*\)$/);
});

test('repo ls HOST/NAMESPACE lists only that namespace, named relative to it (finding 11)', async () => {
  for (const repository of ['ns/r1', 'ns/deep/r2', 'ns-x/a', 'nsz', 'aa'])
    await client.uploadBlob({ host: reg.host, repository }, bufferSource(Buffer.from('repo')));
  const r = await tether(['repo', 'ls', `${reg.host}/ns`]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), ['deep/r2', 'r1']);
  const all = await tether(['repo', 'ls', reg.host, '--format', 'json']);
  assert.ok(JSON.parse(all.stdout).includes('ns-x/a'));
});

test('blob get into a reader that stops early ends quietly with 141, as oras and crane do (nit N5)', async () => {
  const bytes = Buffer.alloc(4 * 1024 * 1024, 7);
  const ref = { host: reg.host, repository: 'pipe' };
  await client.uploadBlob(ref, bufferSource(bytes));
  const digest = bufferSource(bytes).digest;
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [CLI, 'blob', 'get', `${reg.host}/pipe@${digest}`], {
      env: { ...process.env, HOME: home, DOCKER_CONFIG: join(home, '.docker') },
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    // `| head -c 10`: read once, then close the pipe.
    child.stdout.once('data', () => child.stdout.destroy());
    child.on('close', (code) => resolve({ code, stderr }));
  });
  assert.equal(r.stderr, '');
  assert.equal(r.code, 141);
});
