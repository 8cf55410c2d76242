import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { selfSignedCert } from '../helpers/certs.ts';
import { NO_PROXY_SETTINGS, startForwardProxy } from '../helpers/forward-proxy.ts';
import { sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function tether(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr });
    });
  });
}

/**
 * The CLI through a forward proxy, as behind a corporate one: registries are named `registry.test`,
 * which no resolver knows, so every request that succeeds went through the proxy. A 3 MiB blob also
 * takes the client's own download reader (its sockets are opened without node:http).
 */
describe('client through an HTTP proxy', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let plain: RunningRegistry;
  let secure: RunningRegistry;
  let env: NodeJS.ProcessEnv;
  let layer: Buffer;
  let layerFile: string;
  let proxyTls: { cert: Buffer; key: Buffer };
  let registryCert: string;
  let proxyCert: string;

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    selfSignedCert({ cert, key }, 'registry.test', 'DNS:registry.test');
    const proxyCertFile = join(dir, 'proxy-cert.pem');
    const proxyKeyFile = join(dir, 'proxy-key.pem');
    selfSignedCert({ cert: proxyCertFile, key: proxyKeyFile }, 'proxy', 'IP:127.0.0.1');
    proxyTls = { cert: await readFile(proxyCertFile), key: await readFile(proxyKeyFile) };
    registryCert = cert;
    proxyCert = proxyCertFile;
    const trusted = join(dir, 'trusted.pem');
    await writeFile(trusted, Buffer.concat([await readFile(cert), proxyTls.cert]));
    plain = await startRegistry();
    secure = await startRegistry({ settings: { 'tls.cert': cert, 'tls.key': key } });
    env = {
      ...NO_PROXY_SETTINGS,
      HOME: dir,
      DOCKER_CONFIG: join(dir, 'docker'),
      NODE_EXTRA_CA_CERTS: trusted,
    };
    layer = randomBytes(3 * 1024 * 1024 + 17);
    layerFile = join(dir, 'layer.bin');
    await writeFile(layerFile, layer);
  });
  after(async () => {
    await plain?.close();
    await secure?.close();
    await cleanup?.();
  });

  const portOf = (registry: RunningRegistry) => registry.host.slice(registry.host.lastIndexOf(':') + 1);

  test('plain HTTP goes to the proxy with absolute URLs and the proxy credentials', async () => {
    const proxy = await startForwardProxy({ credentials: { user: 'me', password: 'p@ss' } });
    try {
      const host = `registry.test:${portOf(plain)}`;
      const proxyEnv = { ...env, HTTP_PROXY: `http://me:p%40ss@${proxy.url.slice('http://'.length)}` };
      const put = await tether(['blob', 'put', '--plain-http', `${host}/proxied/plain`, layerFile], proxyEnv);
      assert.equal(put.code, 0, put.err);
      const digest = sha256(layer);
      assert.match(put.out, new RegExp(digest));
      const out = join(dir, 'plain.out');
      const get = await tether(
        ['blob', 'get', '--plain-http', `${host}/proxied/plain@${digest}`, '-o', out],
        proxyEnv,
      );
      assert.equal(get.code, 0, get.err);
      assert.ok((await readFile(out)).equals(layer));
      assert.ok(proxy.seen.length >= 3);
      for (const request of proxy.seen) {
        assert.ok(request.target.startsWith(`http://${host}/v2/`), request.target);
        assert.equal(request.authorization, `Basic ${Buffer.from('me:p@ss').toString('base64')}`);
      }
      assert.ok(proxy.seen.some((r) => r.method === 'GET' && r.target.endsWith(`/blobs/${digest}`)));
    } finally {
      await proxy.close();
    }
  });

  test('HTTPS goes through CONNECT tunnels, lower-case variable names work too', async () => {
    const proxy = await startForwardProxy();
    try {
      const host = `registry.test:${portOf(secure)}`;
      const proxyEnv = { ...env, https_proxy: proxy.url.slice('http://'.length) };
      const put = await tether(['blob', 'put', `${host}/proxied/tls`, layerFile], proxyEnv);
      assert.equal(put.code, 0, put.err);
      const digest = sha256(layer);
      const out = join(dir, 'tls.out');
      const get = await tether(['blob', 'get', `${host}/proxied/tls@${digest}`, '-o', out], proxyEnv);
      assert.equal(get.code, 0, get.err);
      assert.ok((await readFile(out)).equals(layer));
      assert.ok(proxy.seen.length >= 2, 'node:http requests and the download reader each opened a tunnel');
      for (const request of proxy.seen)
        assert.deepEqual(request, { method: 'CONNECT', target: host, authorization: undefined });
    } finally {
      await proxy.close();
    }
  });

  test('an https:// proxy: TLS to the proxy, and inside it TLS to the registry', async () => {
    const proxy = await startForwardProxy({ tls: proxyTls });
    try {
      const host = `registry.test:${portOf(secure)}`;
      const proxyEnv = { ...env, HTTPS_PROXY: proxy.url };
      const put = await tether(['blob', 'put', `${host}/proxied/tls-proxy`, layerFile], proxyEnv);
      assert.equal(put.code, 0, put.err);
      const out = join(dir, 'tls-proxy.out');
      const get = await tether(
        ['blob', 'get', `${host}/proxied/tls-proxy@${sha256(layer)}`, '-o', out],
        proxyEnv,
      );
      assert.equal(get.code, 0, get.err);
      assert.ok((await readFile(out)).equals(layer));
      assert.ok(proxy.seen.length >= 2);
      assert.ok(proxy.seen.every((r) => r.method === 'CONNECT' && r.target === host));
    } finally {
      await proxy.close();
    }
  });

  test('--ca-file and --insecure are for the registry inside the tunnel, not for the proxy', async () => {
    for (const proxyOptions of [{}, { tls: proxyTls }]) {
      const proxy = await startForwardProxy(proxyOptions);
      try {
        const host = `registry.test:${portOf(secure)}`;
        // Node trusts the proxy's certificate, not the registry's.
        const proxyEnv = { ...env, NODE_EXTRA_CA_CERTS: proxyCert, HTTPS_PROXY: proxy.url };
        const digest = sha256(layer);
        const untrusted = await tether(['manifest', 'get', `${host}/x:y`], proxyEnv);
        assert.equal(untrusted.code, 1);
        assert.match(untrusted.err, /not trusted/);
        for (const flags of [['--ca-file', registryCert], ['--insecure']]) {
          const put = await tether(['blob', 'put', `${host}/proxied/ca-file`, layerFile, ...flags], proxyEnv);
          assert.equal(put.code, 0, put.err);
          const out = join(dir, 'ca-file.out');
          const get = await tether(
            ['blob', 'get', `${host}/proxied/ca-file@${digest}`, '-o', out, ...flags],
            proxyEnv,
          );
          assert.equal(get.code, 0, get.err);
          assert.ok((await readFile(out)).equals(layer));
        }
        assert.ok(proxy.seen.every((r) => r.method === 'CONNECT' && r.target === host));
      } finally {
        await proxy.close();
      }
    }
    // The registry's trust is not the proxy's: with the proxy's certificate untrusted, --ca-file for
    // the registry does not let the command through.
    const proxy = await startForwardProxy({ tls: proxyTls });
    try {
      const refused = await tether(
        ['manifest', 'get', `registry.test:${portOf(secure)}/x:y`, '--ca-file', registryCert],
        { ...env, NODE_EXTRA_CA_CERTS: '', HTTPS_PROXY: proxy.url },
      );
      assert.equal(refused.code, 1);
      assert.match(refused.err, /not trusted/);
    } finally {
      await proxy.close();
    }
  });

  test('a proxy that refuses (407) fails the command with its answer, on both paths', async () => {
    const proxy = await startForwardProxy({ credentials: { user: 'me', password: 'right' } });
    try {
      const wrong = proxy.url.replace('http://', 'http://me:wrong@');
      const plainHost = `registry.test:${portOf(plain)}`;
      const viaHttp = await tether(['manifest', 'get', '--plain-http', `${plainHost}/x:y`], {
        ...env,
        HTTP_PROXY: wrong,
      });
      assert.notEqual(viaHttp.code, 0);
      assert.match(viaHttp.err, /HTTP 407 \(the HTTP proxy wants credentials/);
      const tlsHost = `registry.test:${portOf(secure)}`;
      const viaTunnel = await tether(['manifest', 'get', `${tlsHost}/x:y`], { ...env, HTTPS_PROXY: wrong });
      assert.notEqual(viaTunnel.code, 0);
      assert.match(viaTunnel.err, /407/);
      const download = await tether(
        ['blob', 'get', `${tlsHost}/x@sha256:${'0'.repeat(64)}`, '-o', join(dir, 'no.out')],
        {
          ...env,
          HTTPS_PROXY: wrong,
        },
      );
      assert.notEqual(download.code, 0);
      assert.match(download.err, /407/);
    } finally {
      await proxy.close();
    }
  });

  test('loopback addresses and NO_PROXY matches connect directly, as Go clients do', async () => {
    const proxy = await startForwardProxy();
    try {
      const proxyEnv = { ...env, HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url, NO_PROXY: '.example.com' };
      const put = await tether(['blob', 'put', `${plain.host}/direct/loopback`, layerFile], proxyEnv);
      assert.equal(put.code, 0, put.err);
      const out = join(dir, 'direct.out');
      const get = await tether(
        ['blob', 'get', `localhost:${portOf(plain)}/direct/loopback@${sha256(layer)}`, '-o', out],
        proxyEnv,
      );
      assert.equal(get.code, 0, get.err);
      assert.ok((await readFile(out)).equals(layer));
      // registry.test is listed in NO_PROXY: the client resolves it itself, and no resolver knows it.
      const bypassed = await tether(['manifest', 'get', `registry.test:${portOf(secure)}/x:y`], {
        ...proxyEnv,
        NO_PROXY: 'example.com,registry.test',
      });
      assert.notEqual(bypassed.code, 0);
      assert.match(bypassed.err, /ENOTFOUND|EAI_AGAIN|getaddrinfo/);
      assert.deepEqual(proxy.seen, []);
    } finally {
      await proxy.close();
    }
  });

  test('an unsupported or malformed proxy setting is an error, not a silent direct connection', async () => {
    const socks = await tether(['manifest', 'get', `registry.test:${portOf(secure)}/x:y`], {
      ...env,
      HTTPS_PROXY: 'socks5://127.0.0.1:1080',
    });
    assert.notEqual(socks.code, 0);
    assert.match(socks.err, /HTTPS_PROXY: socks5 proxies are not supported/);
    const malformed = await tether(
      ['manifest', 'get', '--plain-http', `registry.test:${portOf(plain)}/x:y`],
      {
        ...env,
        HTTP_PROXY: 'http://proxy.example.com:3128/some/path',
      },
    );
    assert.notEqual(malformed.code, 0);
    assert.match(malformed.err, /HTTP_PROXY is not a proxy URL/);
  });
});
