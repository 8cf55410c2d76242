import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { editHtpasswd, hashPassword } from '../../src/auth/htpasswd.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { pushImage } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';
import { strictTrustPolicy } from '../helpers/trust-policy.ts';

/**
 * Real clients log in to Tether in token mode (the Docker token protocol against the built-in token
 * endpoint) and push and pull: oras, regctl, crane, skopeo and notation. Each gets its own HOME and
 * credential files, so nothing leaks between them or into the machine's configuration.
 */
const BIN = new URL('../../.tools/bin/', import.meta.url).pathname;
const PASSWORD = 'interop-secret';

interface Run {
  stdout: string;
  stderr: string;
}

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  input?: string,
  cwd?: string,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { env, timeout: 120_000, maxBuffer: 16 << 20, ...(cwd ? { cwd } : {}) },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}\n${stdout}`));
        else resolve({ stdout, stderr });
      },
    );
    child.stdin?.end(input ?? '');
  });
}

describe('real clients log in with a token and push/pull', () => {
  let reg: RunningRegistry;
  let dir: string;
  let cleanup: () => Promise<void>;
  let imageDigest: string;
  let envFor: (client: string) => Promise<NodeJS.ProcessEnv>;

  before(async () => {
    for (const tool of ['oras', 'regctl', 'crane', 'notation']) {
      await readFile(join(BIN, tool)).catch(() => {
        throw new Error(
          `${tool} is not installed in .tools/bin: run scripts/ensure-tools.sh oras regctl crane notation`,
        );
      });
    }
    ({ dir, cleanup } = await tempDataDir());
    const hash = await hashPassword(PASSWORD, 4);
    await editHtpasswd(join(dir, 'htpasswd'), (users) => {
      users.set('alice', hash);
      users.set('admin', hash);
    });
    reg = await startRegistry({
      storage: { data: dir },
      settings: {
        'auth.mode': 'token',
        'auth.admins': ['admin'],
        'auth.access': [{ repositories: 'team/**', users: ['alice'], actions: ['pull', 'push'] }],
      },
    });
    // Seed an image through the token protocol, as the admin.
    const tokenRes = await fetch(`${reg.url}/auth/token?service=tether&scope=repository:team/app:pull,push`, {
      headers: { Authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}` },
    });
    const token = ((await tokenRes.json()) as { token: string }).token;
    const originalFetch = globalThis.fetch;
    globalThis.fetch = (input, init = {}) =>
      originalFetch(input, {
        ...init,
        headers: { ...(init.headers as Record<string, string>), Authorization: `Bearer ${token}` },
      });
    try {
      imageDigest = (await pushImage(reg.url, 'team/app', 'base')).digest;
    } finally {
      globalThis.fetch = originalFetch;
    }
    envFor = async (client: string) => {
      const home = join(dir, 'clients', client);
      await mkdir(join(home, 'docker'), { recursive: true });
      return {
        PATH: `${BIN}:${process.env.PATH}`,
        HOME: home,
        DOCKER_CONFIG: join(home, 'docker'),
        REGISTRY_AUTH_FILE: join(home, 'auth.json'),
        NOTATION_CONFIG: join(home, 'notation'),
        XDG_CONFIG_HOME: join(home, '.config'),
      };
    };
  });
  after(async () => {
    await reg?.close();
    await cleanup?.();
  });

  test('anonymous access is refused with a token challenge', async () => {
    const res = await fetch(`${reg.url}/v2/team/app/manifests/base`);
    assert.equal(res.status, 401);
    assert.match(
      res.headers.get('www-authenticate')!,
      /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/auth\/token",service="tether"/,
    );
  });

  test('oras: login, push an artifact, pull it back', async () => {
    const env = await envFor('oras');
    await run('oras', ['login', '--plain-http', '-u', 'alice', '--password-stdin', reg.host], env, PASSWORD);
    const work = join(dir, 'clients', 'oras');
    await writeFile(join(work, 'hello.txt'), 'hello from oras\n');
    const artifact = ['--artifact-type', 'application/vnd.example.hello'];
    await run(
      'oras',
      ['push', '--plain-http', `${reg.host}/team/app:oras`, 'hello.txt:text/plain', ...artifact],
      env,
      '',
      work,
    );
    await run('oras', ['pull', '--plain-http', '-o', 'out', `${reg.host}/team/app:oras`], env, '', work);
    assert.equal(await readFile(join(work, 'out', 'hello.txt'), 'utf8'), 'hello from oras\n');
    // Without the login the same pull is refused.
    await assert.rejects(
      run(
        'oras',
        ['manifest', 'fetch', '--plain-http', `${reg.host}/team/app:oras`],
        await envFor('oras-anonymous'),
      ),
      // oras reached the registry and was refused, not some other failure (a flag, a typo, a crash).
      /\nError response from registry: unauthorized: /,
    );
  });

  test('regctl: login, put an artifact, get it back', async () => {
    const env = await envFor('regctl');
    await run('regctl', ['registry', 'set', reg.host, '--tls', 'disabled'], env);
    await run('regctl', ['registry', 'login', reg.host, '-u', 'alice', '--pass-stdin'], env, PASSWORD);
    await run(
      'regctl',
      ['artifact', 'put', '--artifact-type', 'application/vnd.example.regctl', `${reg.host}/team/app:regctl`],
      env,
      'data from regctl',
    );
    const got = await run('regctl', ['artifact', 'get', `${reg.host}/team/app:regctl`], env);
    assert.equal(got.stdout, 'data from regctl');
  });

  test('crane: login, copy an image (pull and push), read its digest', async () => {
    const env = await envFor('crane');
    await run('crane', ['auth', 'login', reg.host, '-u', 'alice', '--password-stdin'], env, PASSWORD);
    await run(
      'crane',
      ['--insecure', 'copy', `${reg.host}/team/app:base`, `${reg.host}/team/app:crane`],
      env,
    );
    const digest = await run('crane', ['--insecure', 'digest', `${reg.host}/team/app:crane`], env);
    assert.equal(digest.stdout.trim(), imageDigest);
  });

  test('skopeo: login, copy an image, inspect it', async () => {
    const env = await envFor('skopeo');
    await run(
      'skopeo',
      ['login', '--tls-verify=false', '-u', 'alice', '--password-stdin', reg.host],
      env,
      PASSWORD,
    );
    const policy = join(dir, 'clients', 'skopeo', 'policy.json');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    await run(
      'skopeo',
      [
        'copy',
        '--policy',
        policy,
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        `docker://${reg.host}/team/app:base`,
        `docker://${reg.host}/team/app:skopeo`,
      ],
      env,
    );
    const raw = await run(
      'skopeo',
      ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/team/app:skopeo`],
      env,
    );
    const fetched = await fetch(`${reg.url}/v2/team/app/manifests/base`, {
      headers: {
        Authorization: `Bearer ${((await (await fetch(`${reg.url}/auth/token?service=tether&scope=repository:team/app:pull`, { headers: { Authorization: `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}` } })).json()) as { token: string }).token}`,
      },
    });
    assert.equal(raw.stdout, await fetched.text());
  });

  test('notation: sign with token credentials (push), list and verify the signature (pull)', async () => {
    // notation refuses to store a password without a credential helper; its documented alternative is
    // credentials in the environment, used in the token protocol just like a stored login.
    const env: NodeJS.ProcessEnv = {
      ...(await envFor('notation')),
      NOTATION_USERNAME: 'alice',
      NOTATION_PASSWORD: PASSWORD,
    };
    await run('notation', ['cert', 'generate-test', '--default', 'interop.example'], env);
    const ref = `${reg.host}/team/app@${imageDigest}`;
    await run('notation', ['sign', '--insecure-registry', ref], env);
    const listed = await run('notation', ['list', '--insecure-registry', ref], env);
    assert.match(listed.stdout, /application\/vnd\.cncf\.notary\.signature/);
    const config = env.NOTATION_CONFIG!;
    const policy = strictTrustPolicy({
      name: 'interop',
      registryScopes: ['*'],
      trustStores: ['ca:interop.example'],
      trustedIdentities: ['*'],
    });
    await writeFile(join(config, 'trustpolicy.json'), policy);
    await run('notation', ['verify', '--insecure-registry', ref], env);
  });
});
