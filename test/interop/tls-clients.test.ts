import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { selfSignedCert } from '../helpers/certs.ts';
import { CLI } from '../helpers/cli.ts';
import { runTether, runTool, runToolStatus, startDistribution2 } from '../helpers/interop.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

/**
 * Real clients against Tether over TLS, where Node's HTTP/2 server answers (HTTP/1.1 by ALPN for
 * clients that do not offer h2): a code path of its own, in which a request body has no Content-Length
 * when the client streams it. Each client writes a multi-MB image and reads it back by digest. The
 * certificate is trusted the way Go programs take extra roots on Linux: SSL_CERT_FILE.
 */
describe('oras, crane, regctl and skopeo over TLS', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let secure: RunningRegistry;
  let plain: RunningRegistry;
  let env: NodeJS.ProcessEnv;
  let layer: string;
  let sourceDigest: string;

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    selfSignedCert({ cert, key }, 'tls-clients', 'IP:127.0.0.1');
    secure = await startRegistry({
      storage: { data: join(dir, 'secure') },
      settings: { 'tls.cert': cert, 'tls.key': key },
    });
    plain = await startRegistry({ storage: { data: join(dir, 'plain') } });
    env = { SSL_CERT_FILE: cert, HOME: dir, DOCKER_CONFIG: join(dir, 'docker') };
    await mkdir(join(dir, 'files'));
    await writeFile(join(dir, 'files', 'payload'), randomBytes(3 * 1024 * 1024));
    layer = join(dir, 'layer.tar.gz');
    execFileSync('tar', ['czf', layer, '-C', join(dir, 'files'), 'payload']);
    // The source image, on a plain-HTTP registry the copies read from.
    await runTool('crane', ['append', '--insecure', '-f', layer, '-t', `${plain.host}/src/app:v1`], env);
    sourceDigest = (await runTool('crane', ['digest', '--insecure', `${plain.host}/src/app:v1`], env)).trim();
  });
  after(async () => {
    await secure?.close();
    await plain?.close();
    await cleanup?.();
  });

  const digestOver = async (ref: string) =>
    (await runTool('crane', ['digest', `${secure.host}/${ref}`], env)).trim();

  test('crane: streamed uploads (PATCH without a length), copied and appended', async () => {
    await runTool(
      'crane',
      ['copy', '--insecure', `${plain.host}/src/app:v1`, `${secure.host}/tls/crane:v1`],
      env,
    );
    assert.equal(await digestOver('tls/crane:v1'), sourceDigest);
    await runTool('crane', ['append', '-f', layer, '-t', `${secure.host}/tls/append:v1`], env);
    assert.equal(await digestOver('tls/append:v1'), sourceDigest);
  });

  test('oras: push and pull a file', async () => {
    const out = join(dir, 'oras-out');
    await runTool('oras', ['push', `${secure.host}/tls/oras:v1`, 'payload'], env, join(dir, 'files'));
    await runTool('oras', ['pull', `${secure.host}/tls/oras:v1`, '-o', out], env);
    assert.ok((await readFile(join(out, 'payload'))).equals(await readFile(join(dir, 'files', 'payload'))));
  });

  test('regctl and skopeo: copies from a plain registry', async () => {
    await runTool('regctl', ['registry', 'set', plain.host, '--tls', 'disabled'], env);
    await runTool(
      'regctl',
      ['image', 'copy', `${plain.host}/src/app:v1`, `${secure.host}/tls/regctl:v1`],
      env,
    );
    assert.equal(await digestOver('tls/regctl:v1'), sourceDigest);
    await runTool(
      'skopeo',
      [
        'copy',
        '--src-tls-verify=false',
        `docker://${plain.host}/src/app:v1`,
        `docker://${secure.host}/tls/skopeo:v1`,
      ],
      env,
    );
    // skopeo may rewrite the manifest (it keeps Docker's media types): check it by what it carries.
    const raw = await runTool('skopeo', ['inspect', '--raw', `docker://${secure.host}/tls/skopeo:v1`], env);
    const source = await runTool('crane', ['manifest', '--insecure', `${plain.host}/src/app:v1`], env);
    const layers = (m: string) =>
      (JSON.parse(m) as { layers: { digest: string }[] }).layers.map((l) => l.digest);
    assert.deepEqual(layers(raw), layers(source));
  });
});

/**
 * tether against a Go registry on a loopback address over HTTPS (notes/audit-docs.md finding 10). Go's
 * TLS server answers a plain-HTTP request with `400 Client sent an HTTP request to an HTTPS server`,
 * where Node's hangs up: the client, which asks loopback hosts in plain HTTP first, takes either as the
 * sign to ask over HTTPS.
 */
test('tether and Distribution over TLS on 127.0.0.1: --ca-file works, --plain-http says to leave it out', async () => {
  const { dir, cleanup } = await tempDataDir();
  const cert = join(dir, 'cert.pem');
  selfSignedCert({ cert, key: join(dir, 'key.pem') }, 'distribution', 'IP:127.0.0.1');
  const distribution = await startDistribution2(dir, { cert, key: join(dir, 'key.pem') });
  try {
    const env = { HOME: dir, DOCKER_CONFIG: join(dir, 'docker') };
    await writeFile(join(dir, 'hello.txt'), 'hello over TLS\n');
    const ref = `${distribution.host}/tls/tether:v1`;
    const pushed = await runTether(
      ['push', '-q', ref, 'hello.txt', '--artifact-type', 't/x', '--ca-file', cert],
      env,
      dir,
    );
    const resolved = await runTether(['resolve', ref, '--ca-file', cert], env);
    assert.equal(resolved, pushed);
    const plain = await runToolStatus(process.execPath, [CLI, 'resolve', ref, '--plain-http'], env);
    assert.equal(plain.code, 1, plain.stderr);
    assert.match(
      plain.stderr,
      /answered plain HTTP with a 400, as HTTPS servers do: if it serves HTTPS, leave out --plain-http/,
    );
  } finally {
    distribution.stop();
    await cleanup();
  }
});
