import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { editHtpasswd, hashPassword } from '../../src/auth/htpasswd.ts';
import { Authenticator, mergeScopes, parseChallenge } from '../../src/client/auth.ts';
import { getCredentials } from '../../src/client/docker-config.ts';
import { isLoopbackHost, RegistryHttp } from '../../src/client/registry-http.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const PASSWORD = 'client-secret';

function tether(
  args: string[],
  env: NodeJS.ProcessEnv,
  input = '',
  cwd?: string,
): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...env }, ...(cwd ? { cwd } : {}) },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
      },
    );
    child.stdin?.end(input);
  });
}

async function authRegistry(
  mode: 'basic' | 'token',
  dir: string,
  settings: Record<string, unknown> = {},
): Promise<RunningRegistry> {
  const hash = await hashPassword(PASSWORD, 4);
  await editHtpasswd(join(dir, 'htpasswd'), (users) => {
    users.set('alice', hash);
  });
  return startRegistry({
    storage: { data: join(dir, 'data') },
    settings: {
      'auth.mode': mode,
      'auth.htpasswd': join(dir, 'htpasswd'),
      'auth.access': [{ repositories: 'team/**', users: ['alice'], actions: ['pull', 'push'] }],
      ...(settings as Record<string, string>),
    },
  });
}

describe('challenge parsing and scopes', () => {
  test('parses Bearer and Basic challenges, quoted commas included', () => {
    assert.deepEqual(
      parseChallenge('Bearer realm="https://a/token",service="reg",scope="repository:a:pull,push"'),
      {
        scheme: 'bearer',
        params: { realm: 'https://a/token', service: 'reg', scope: 'repository:a:pull,push' },
      },
    );
    assert.deepEqual(parseChallenge('Basic realm="x", charset="UTF-8"'), {
      scheme: 'basic',
      params: { realm: 'x', charset: 'UTF-8' },
    });
    assert.equal(parseChallenge(undefined), undefined);
    assert.deepEqual(mergeScopes(['repository:a:pull', 'repository:a:push', 'repository:b:pull']), [
      'repository:a:pull,push',
      'repository:b:pull',
    ]);
    assert.ok(
      isLoopbackHost('127.0.0.1:5000') && isLoopbackHost('localhost') && isLoopbackHost('[::1]:5000'),
    );
    // Host names are case-insensitive (nit N1: `LOCALHOST:5000` was sent HTTPS).
    assert.ok(isLoopbackHost('LOCALHOST:5000') && isLoopbackHost('LocalHost'));
    assert.equal(
      new RegistryHttp('LOCALHOST:5000', new Authenticator(async () => undefined)).base,
      'http://LOCALHOST:5000',
    );
    assert.ok(!isLoopbackHost('registry.example.com:5000'));
  });
});

for (const mode of ['basic', 'token'] as const) {
  test(`tether login/logout against ${mode} auth store Docker credentials; wrong passwords fail clearly`, async (t) => {
    const { dir, cleanup } = await tempDataDir();
    const reg = await authRegistry(mode, dir);
    t.after(async () => {
      await reg.close();
      await cleanup();
    });
    const env = { DOCKER_CONFIG: join(dir, 'docker') };
    const bad = await tether(['login', reg.host, '-u', 'alice', '--password-stdin'], env, 'wrong\n');
    assert.notEqual(bad.code, 0);
    assert.match(bad.out, /invalid username or password/);
    const ok = await tether(['login', reg.host, '-u', 'alice', '--password-stdin'], env, `${PASSWORD}\n`);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /Login Succeeded/);
    const config = JSON.parse(await readFile(join(dir, 'docker', 'config.json'), 'utf8'));
    assert.equal(Buffer.from(config.auths[reg.host].auth, 'base64').toString(), `alice:${PASSWORD}`);
    assert.deepEqual(await getCredentials(reg.host, env), { username: 'alice', password: PASSWORD });
    assert.equal((await tether(['logout', reg.host], env)).code, 0);
    assert.equal(await getCredentials(reg.host, env), undefined);
  });
}

test('credential helpers (credsStore) are used to store and read', async (t) => {
  const { dir, cleanup } = await tempDataDir();
  const reg = await authRegistry('token', dir);
  t.after(async () => {
    await reg.close();
    await cleanup();
  });
  const bin = join(dir, 'bin');
  await mkdir(bin);
  const store = join(dir, 'helper-store.json');
  // A minimal docker-credential helper: keeps one secret in a file.
  await writeFile(
    join(bin, 'docker-credential-fake'),
    `#!/bin/sh\ncase "$1" in\n  store) cat > "${store}" ;;\n  get) [ -f "${store}" ] && node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(JSON.stringify({ServerURL:s.ServerURL,Username:s.Username,Secret:s.Secret}))' "${store}" || { echo "credentials not found"; exit 1; } ;;\n  erase) rm -f "${store}" ;;\nesac\n`,
  );
  await chmod(join(bin, 'docker-credential-fake'), 0o755);
  await mkdir(join(dir, 'docker'));
  await writeFile(join(dir, 'docker', 'config.json'), JSON.stringify({ credsStore: 'fake' }));
  const env = { DOCKER_CONFIG: join(dir, 'docker'), PATH: `${bin}:${process.env.PATH}` };
  const ok = await tether(['login', reg.host, '-u', 'alice', '--password-stdin'], env, PASSWORD);
  assert.equal(ok.code, 0, ok.out);
  const config = JSON.parse(await readFile(join(dir, 'docker', 'config.json'), 'utf8'));
  assert.deepEqual(config.auths[reg.host], {}, 'no secret in config.json');
  assert.equal(JSON.parse(await readFile(store, 'utf8')).Secret, PASSWORD);
  const saved = process.env.PATH;
  process.env.PATH = env.PATH;
  try {
    assert.deepEqual(await getCredentials(reg.host, env), { username: 'alice', password: PASSWORD });
  } finally {
    process.env.PATH = saved;
  }
});

test('identity tokens (oras login --identity-token, cloud logins) are used as refresh tokens', async (t) => {
  const { dir, cleanup } = await tempDataDir();
  const reg = await authRegistry('token', dir);
  t.after(async () => {
    await reg.close();
    await cleanup();
  });
  // A refresh token as a token service hands one out for offline use.
  const basic = Buffer.from(`alice:${PASSWORD}`).toString('base64');
  const grant = await fetch(`${reg.url}/auth/token?service=tether&offline_token=true`, {
    headers: { Authorization: `Basic ${basic}` },
  });
  const { refresh_token: identityToken } = (await grant.json()) as { refresh_token: string };
  assert.ok(identityToken);
  await writeFile(join(dir, 'a.txt'), 'identity');
  const docker = join(dir, 'docker');
  await mkdir(docker);
  // Written as oras and Docker write it: no user name, no password.
  await writeFile(
    join(docker, 'config.json'),
    JSON.stringify({ auths: { [reg.host]: { identitytoken: identityToken } } }),
  );
  const env = { DOCKER_CONFIG: docker };
  assert.deepEqual(await getCredentials(reg.host, env), { username: '', password: '', identityToken });
  const pushed = await tether(
    ['push', `${reg.host}/team/id:v1`, 'a.txt', '--artifact-type', 'a/b'],
    env,
    '',
    dir,
  );
  assert.equal(pushed.code, 0, pushed.out);
  const resolved = await tether(['resolve', `${reg.host}/team/id:v1`], env);
  assert.equal(resolved.code, 0, resolved.out);
  // A credential helper gives one under the user name `<token>`.
  const bin = join(dir, 'bin');
  await mkdir(bin);
  await writeFile(
    join(bin, 'docker-credential-idtoken'),
    `#!/bin/sh\n[ "$1" = get ] && echo '{"Username":"<token>","Secret":"${identityToken}"}'\n`,
  );
  await chmod(join(bin, 'docker-credential-idtoken'), 0o755);
  await writeFile(join(docker, 'config.json'), JSON.stringify({ credsStore: 'idtoken' }));
  const helperEnv = { ...env, PATH: `${bin}:${process.env.PATH}` };
  const viaHelper = await tether(['resolve', `${reg.host}/team/id:v1`], helperEnv);
  assert.equal(viaHelper.code, 0, viaHelper.out);
  assert.equal(viaHelper.out.trim(), resolved.out.trim());
  // A wrong token is refused like a wrong password.
  await writeFile(
    join(docker, 'config.json'),
    JSON.stringify({ auths: { [reg.host]: { identitytoken: 'nope' } } }),
  );
  const refused = await tether(['resolve', `${reg.host}/team/id:v1`], env);
  assert.equal(refused.code, 1, refused.out);
});

test('the client upgrades scopes (pull → pull,push) and replaces tokens that expire mid-transfer', async (t) => {
  const { dir, cleanup } = await tempDataDir();
  const reg = await authRegistry('token', dir, { 'auth.token.ttlSeconds': 10 });
  t.after(async () => {
    await reg.close();
    await cleanup();
  });
  // The client's clock, ahead of the real one by `ahead` ms: time passes for the token cache, not the test.
  let ahead = 0;
  const auth = new Authenticator(async () => ({ username: 'alice', password: PASSWORD }), {
    now: () => Date.now() + ahead,
  });
  const http = new RegistryHttp(reg.host, auth);
  const pull = 'repository:team/app:pull';
  const push = 'repository:team/app:pull,push';
  assert.equal((await http.request('GET', '/v2/team/app/tags/list', { scope: pull })).status, 404);
  const start = await http.request('POST', '/v2/team/app/blobs/uploads/', { scope: push });
  assert.equal(start.status, 202);
  assert.deepEqual(auth.tokenRequests, [pull, push], 'one token per scope set, upgraded once');
  const location = start.headers.get('location')!;
  const first = Buffer.alloc(1000, 1);
  const second = Buffer.alloc(1000, 2);
  const patch = await http.request('PATCH', location, {
    scope: push,
    body: first,
    headers: { 'Content-Range': '0-999' },
  });
  assert.equal(patch.status, 202);
  // The 10 s token is refreshed 5 s early: 4.5 s on, the token still serves (a GET of the upload status)...
  ahead = 4500;
  const status = await http.request('GET', patch.headers.get('location')!, { scope: push });
  assert.equal(status.status, 204);
  await status.discard();
  assert.equal(auth.tokenRequests.length, 2, 'not refreshed before its time');
  // ...5.5 s on, the next chunk needs a new one, fetched transparently.
  ahead = 5500;
  const patch2 = await http.request('PATCH', patch.headers.get('location')!, {
    scope: push,
    body: second,
    headers: { 'Content-Range': '1000-1999' },
  });
  assert.equal(patch2.status, 202);
  assert.equal(auth.tokenRequests.length, 3, 'a fresh token was fetched mid-transfer');
  const digest = sha256(Buffer.concat([first, second]));
  const done = await http.request('PUT', `${patch2.headers.get('location')}?digest=${digest}`, {
    scope: push,
  });
  assert.equal(done.status, 201);
  // A scope the policy does not grant is not retried forever: the 401 comes back.
  const denied = await http.request('GET', '/v2/secret/x/tags/list', { scope: 'repository:secret/x:pull' });
  assert.equal(denied.status, 401);
});
