/**
 * `--ca-file` and `--insecure` (notes/audit-cli.md, gap G1): the real `tether` program against TLS
 * registries whose self-signed certificates Node does not trust. The registries are named
 * `registry.test:PORT` (resolved to 127.0.0.1 by test/helpers/resolve-test-names.ts), so that they are
 * reached as a remote registry is, over HTTPS from the first request; the client asks loopback
 * addresses in plain HTTP first (the last describe). A 3 MiB file takes the blob download reader (its own
 * sockets), small blobs and manifests the kept-alive connections, and the token registry's realm is
 * HTTPS on the same certificate.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { editHtpasswd, hashPassword } from '../../src/auth/htpasswd.ts';
import { Authenticator } from '../../src/client/auth.ts';
import { RegistryHttp } from '../../src/client/registry-http.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { selfSignedCert } from '../helpers/certs.ts';
import { type CliRun as Run, runCli } from '../helpers/cli.ts';
import { NO_PROXY_SETTINGS } from '../helpers/forward-proxy.ts';
import { sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const RESOLVE = new URL('../helpers/resolve-test-names.ts', import.meta.url).pathname;
const PASSWORD = 'tls-secret';

let dir: string;
let cleanup: () => Promise<void>;
/** Plain TLS, and TLS with token auth (alice may push), each with a certificate of its own. */
let open: RunningRegistry;
let token: RunningRegistry;
let openCa: string;
let tokenCa: string;
let big: Buffer;
let small: Buffer;

function tether(args: string[], input = ''): Promise<Run> {
  return runCli(args, {
    cwd: dir,
    env: { ...NO_PROXY_SETTINGS, HOME: dir, DOCKER_CONFIG: join(dir, 'docker'), NODE_EXTRA_CA_CERTS: '' },
    input,
    nodeArgs: ['--import', RESOLVE],
  });
}

const named = (registry: RunningRegistry) =>
  `registry.test:${registry.host.slice(registry.host.lastIndexOf(':') + 1)}`;

function assertOneLineFailure(r: Run, exitCode: number, message: RegExp): void {
  assert.equal(r.code, exitCode, r.stderr);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /^tether: /);
  assert.match(r.stderr, message);
}

/** Pushes big.bin and small.bin to `ref` and pulls them back into a fresh directory, byte for byte. */
async function pushAndPull(ref: string, flags: string[], input = ''): Promise<Run[]> {
  const push = await tether(['push', ref, 'big.bin', 'small.bin', '--artifact-type', 't/x', ...flags], input);
  assert.equal(push.code, 0, push.stderr);
  const out = join(dir, `pulled-${randomBytes(4).toString('hex')}`);
  const pull = await tether(['pull', ref, '-o', out, ...flags], input);
  assert.equal(pull.code, 0, pull.stderr);
  assert.ok((await readFile(join(out, 'big.bin'))).equals(big), 'big.bin, through the download reader');
  assert.ok((await readFile(join(out, 'small.bin'))).equals(small));
  return [push, pull];
}

before(async () => {
  ({ dir, cleanup } = await tempDataDir());
  await mkdir(join(dir, 'docker'));
  openCa = join(dir, 'open.pem');
  tokenCa = join(dir, 'token.pem');
  selfSignedCert({ cert: openCa, key: join(dir, 'open.key') }, 'registry.test', 'DNS:registry.test');
  selfSignedCert({ cert: tokenCa, key: join(dir, 'token.key') }, 'registry.test', 'DNS:registry.test');
  const hash = await hashPassword(PASSWORD, 4);
  await editHtpasswd(join(dir, 'htpasswd'), (users) => {
    users.set('alice', hash);
  });
  open = await startRegistry({
    storage: { data: join(dir, 'open') },
    settings: { 'tls.cert': openCa, 'tls.key': join(dir, 'open.key') },
  });
  token = await startRegistry({
    storage: { data: join(dir, 'token') },
    settings: {
      'tls.cert': tokenCa,
      'tls.key': join(dir, 'token.key'),
      'auth.mode': 'token',
      'auth.htpasswd': join(dir, 'htpasswd'),
      'auth.access': [{ repositories: '**', users: ['alice'], actions: ['pull', 'push'] }],
    },
  });
  big = randomBytes(3 * 1024 * 1024 + 5);
  small = randomBytes(2000);
  await writeFile(join(dir, 'big.bin'), big);
  await writeFile(join(dir, 'small.bin'), small);
  // Credentials for the token registry, as `tether login` stores them.
  const auth = Buffer.from(`alice:${PASSWORD}`).toString('base64');
  await writeFile(
    join(dir, 'docker', 'config.json'),
    JSON.stringify({ auths: { [named(token)]: { auth } } }),
  );
});

after(async () => {
  await open?.close();
  await token?.close();
  await cleanup?.();
});

describe('TLS flags (G1)', () => {
  test('without flags an untrusted certificate fails with one line that names --ca-file', async () => {
    for (const args of [
      ['resolve', `${named(open)}/app:v1`],
      ['push', `${named(open)}/app:v1`, 'small.bin', '--artifact-type', 't/x'],
    ])
      assertOneLineFailure(
        await tether(args),
        1,
        /the registry's TLS certificate is not trusted .*--ca-file/,
      );
  });

  test('--ca-file: push and pull, kept-alive connections and the download reader', async () => {
    await pushAndPull(`${named(open)}/app:v1`, ['--ca-file', openCa]);
    const digest = sha256(big);
    const blob = join(dir, 'blob.out');
    const get = await tether([
      'blob',
      'get',
      `${named(open)}/app@${digest}`,
      '-o',
      blob,
      '--ca-file',
      openCa,
    ]);
    assert.equal(get.code, 0, get.stderr);
    assert.ok((await readFile(blob)).equals(big));
    // Another registry's CA does not vouch for this one.
    assertOneLineFailure(
      await tether(['resolve', `${named(open)}/app:v1`, '--ca-file', tokenCa]),
      1,
      /not trusted/,
    );
  });

  test('--ca-file reaches the token service (HTTPS realm on the registry)', async () => {
    await pushAndPull(`${named(token)}/team/app:v1`, ['--ca-file', tokenCa]);
  });

  test('--insecure works without a CA and warns once, on stderr', async () => {
    const [push, pull] = await pushAndPull(`${named(token)}/team/insecure:v1`, ['--insecure', '-q']);
    for (const run of [push!, pull!]) {
      const warnings = run.stderr.split('\n').filter((line) => line.includes('warning'));
      assert.deepEqual(warnings, [
        'tether: warning: --insecure: TLS certificates are not verified; anyone on the network path can pose as the registry',
      ]);
    }
    assert.match(push!.stdout, /^sha256:[0-9a-f]{64}\n$/, 'stdout carries only the result');
  });

  test('cp: --from-ca-file and --to-ca-file, one CA for each registry', async () => {
    const src = `${named(open)}/app:v1`;
    const dst = `${named(token)}/team/copied:v1`;
    const cp = await tether(['cp', '-q', src, dst, '--from-ca-file', openCa, '--to-ca-file', tokenCa]);
    assert.equal(cp.code, 0, cp.stderr);
    const swapped = await tether(['cp', '-q', src, dst, '--from-ca-file', tokenCa, '--to-ca-file', openCa]);
    assertOneLineFailure(swapped, 1, /not trusted/);
    // --insecure is for both sides; --to-insecure for the destination only.
    const both = await tether(['cp', '-q', src, `${named(token)}/team/copied:v2`, '--insecure']);
    assert.equal(both.code, 0, both.stderr);
    const sided = await tether(['cp', '-q', src, dst, '--from-ca-file', openCa, '--to-insecure']);
    assert.equal(sided.code, 0, sided.stderr);
    assert.match(sided.stderr, /^tether: warning: --to-insecure: /);
    const sourceChecked = await tether(['cp', '-q', src, dst, '--to-insecure']);
    assert.equal(sourceChecked.code, 1);
    assert.match(sourceChecked.stderr, /^tether: warning: --to-insecure: .*\ntether: .*not trusted.*\n$/);
  });

  test('login takes the flags too', async () => {
    const login = await tether(
      ['login', named(token), '-u', 'alice', '--password-stdin', '--ca-file', tokenCa],
      `${PASSWORD}\n`,
    );
    assert.equal(login.code, 0, login.stderr);
  });

  test('a CA file that is missing or holds no certificate is a usage error (exit 2)', async () => {
    assertOneLineFailure(
      await tether(['resolve', `${named(open)}/app:v1`, '--ca-file', join(dir, 'nope.pem')]),
      2,
      /^tether: --ca-file .*nope\.pem: ENOENT/,
    );
    await writeFile(join(dir, 'junk.pem'), 'not a certificate\n');
    assertOneLineFailure(
      await tether(['resolve', `${named(open)}/app:v1`, '--ca-file', 'junk.pem']),
      2,
      /^tether: --ca-file junk\.pem: no PEM certificate/,
    );
    const broken = `-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`;
    await writeFile(join(dir, 'broken.pem'), broken);
    assertOneLineFailure(
      await tether(['cp', `${named(open)}/app:v1`, `${named(token)}/x:v1`, '--to-ca-file', 'broken.pem']),
      2,
      /^tether: --to-ca-file broken\.pem: certificate 1 does not parse/,
    );
    // A flag for a side that has no registry, or for one side of a copy within one registry.
    assertOneLineFailure(
      await tether(['cp', `${named(open)}/app:v1`, 'oci:layout:v1', '--to-insecure']),
      2,
      /--to-insecure: the destination is an OCI layout/,
    );
    assertOneLineFailure(
      await tether(['cp', `${named(open)}/app:v1`, `${named(open)}/app:v2`, '--from-ca-file', openCa]),
      2,
      /--from-ca-file: the source and destination are one registry/,
    );
  });
});

/**
 * A TLS registry on a loopback address (notes/audit-docs.md finding 10): the client used plain HTTP for
 * every loopback host, so it could not reach one at all ("socket hang up", --ca-file or not). It now
 * asks in plain HTTP first and over HTTPS once the port shows it speaks TLS.
 */
describe('TLS on a loopback address', () => {
  let local: RunningRegistry;
  let localCa: string;
  let port: string;

  before(async () => {
    localCa = join(dir, 'local.pem');
    selfSignedCert({ cert: localCa, key: join(dir, 'local.key') }, 'localhost', 'IP:127.0.0.1,DNS:localhost');
    local = await startRegistry({
      storage: { data: join(dir, 'local') },
      settings: {
        'tls.cert': localCa,
        'tls.key': join(dir, 'local.key'),
        'auth.mode': 'token',
        'auth.htpasswd': join(dir, 'htpasswd'),
        'auth.access': [{ repositories: '**', users: ['alice'], actions: ['pull', 'push'] }],
      },
    });
    port = local.host.slice(local.host.lastIndexOf(':') + 1);
  });
  after(async () => {
    await local?.close();
  });

  test('login to 127.0.0.1 and localhost with --ca-file, then push and pull over HTTPS', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) {
      const login = await tether(
        ['login', host, '-u', 'alice', '--password-stdin', '--ca-file', localCa],
        `${PASSWORD}\n`,
      );
      assert.equal(login.code, 0, login.stderr);
    }
    // The credentials login stored; the big file takes the download reader, the rest kept-alive ones.
    await pushAndPull(`127.0.0.1:${port}/team/app:v1`, ['--ca-file', localCa]);
    await pushAndPull(`localhost:${port}/team/app:v2`, ['--insecure', '-q']);
  });

  test('without a CA the certificate is what fails, with the --ca-file hint; the refused push stores nothing', async () => {
    for (const args of [
      ['resolve', `127.0.0.1:${port}/team/app:v1`],
      ['login', `localhost:${port}`, '-u', 'alice', '--password-stdin'],
      ['push', `127.0.0.1:${port}/team/app:v3`, 'small.bin', '--artifact-type', 't/x'],
    ])
      assertOneLineFailure(
        await tether(args, `${PASSWORD}\n`),
        1,
        /the registry's TLS certificate is not trusted .*--ca-file/,
      );
    const tags = await tether(['repo', 'tags', `127.0.0.1:${port}/team/app`, '--ca-file', localCa]);
    assert.equal(tags.code, 0, tags.stderr);
    assert.deepEqual(tags.stdout.split('\n').filter(Boolean).sort(), ['v1', 'v2']);
  });

  test('--plain-http keeps to plain HTTP and says to leave it out', async () => {
    assertOneLineFailure(
      await tether(['resolve', `127.0.0.1:${port}/team/app:v1`, '--plain-http', '--ca-file', localCa]),
      1,
      new RegExp(
        `^tether: 127\\.0\\.0\\.1:${port} did not answer plain HTTP \\(socket hang up\\): if it serves HTTPS, leave out --plain-http$`,
        'm',
      ),
    );
  });

  test('a plain-HTTP loopback registry is asked in plain HTTP only: no TLS attempt, before or after', async () => {
    const requests: string[] = [];
    let notHttp = 0;
    const server = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      res.end();
    });
    // A TLS ClientHello sent to this port would arrive here, as bytes that are not HTTP.
    server.on('clientError', (_err, socket) => {
      notHttp++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const http = new RegistryHttp(
        `127.0.0.1:${(server.address() as AddressInfo).port}`,
        new Authenticator(async () => undefined),
      );
      for (let i = 0; i < 2; i++) await (await http.request('GET', '/v2/')).discard();
      assert.deepEqual(requests, ['GET /v2/', 'GET /v2/']);
      assert.equal(notHttp, 0);
      assert.match(http.base, /^http:\/\//);
    } finally {
      server.close();
    }
  });
});
