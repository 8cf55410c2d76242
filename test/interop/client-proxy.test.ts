import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { selfSignedCert } from '../helpers/certs.ts';
import { NO_PROXY_SETTINGS, startForwardProxy } from '../helpers/forward-proxy.ts';
import { TOOLS_BIN } from '../helpers/interop.ts';
import { pushImage } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ ok: !err, out: err ? stderr : stdout }),
    );
  });
}

/**
 * Which requests go through a proxy is the same for Tether as for oras (Go's net/http): for each
 * setting, both list a repository's tags through a forward proxy, and the proxy says whether it was
 * asked. `registry.test` is a name no resolver knows, so a client that goes direct there fails.
 */
describe('proxy choice: tether and oras agree', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let registry: RunningRegistry;
  let port: string;
  let base: NodeJS.ProcessEnv;
  let secure: RunningRegistry;
  let cert: string;

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    registry = await startRegistry();
    port = registry.host.slice(registry.host.lastIndexOf(':') + 1);
    await pushImage(registry.url, 'proxied/app', 'v1');
    cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    selfSignedCert({ cert, key }, 'registry.test', 'DNS:registry.test');
    secure = await startRegistry({ settings: { 'tls.cert': cert, 'tls.key': key } });
    base = {
      ...process.env,
      ...NO_PROXY_SETTINGS,
      HOME: dir,
      DOCKER_CONFIG: join(dir, 'docker'),
    };
  });
  after(async () => {
    await registry?.close();
    await secure?.close();
    await cleanup?.();
  });

  test('HTTP_PROXY, NO_PROXY names, suffixes, ports and CIDRs, loopback, lower case, the other scheme', async () => {
    const proxy = await startForwardProxy();
    try {
      const P = proxy.url;
      const cases: { name: string; host: string; env: Record<string, string>; proxied: boolean }[] = [
        { name: 'HTTP_PROXY', host: `registry.test:${port}`, env: { HTTP_PROXY: P }, proxied: true },
        { name: 'lower case', host: `registry.test:${port}`, env: { http_proxy: P }, proxied: true },
        {
          name: 'NO_PROXY name',
          host: `registry.test:${port}`,
          env: { HTTP_PROXY: P, NO_PROXY: 'registry.test' },
          proxied: false,
        },
        {
          name: 'NO_PROXY suffix',
          host: `registry.test:${port}`,
          env: { HTTP_PROXY: P, NO_PROXY: 'other.org,.test' },
          proxied: false,
        },
        {
          name: 'NO_PROXY port',
          host: `registry.test:${port}`,
          env: { HTTP_PROXY: P, NO_PROXY: `registry.test:${port}` },
          proxied: false,
        },
        {
          name: 'NO_PROXY other port',
          host: `registry.test:${port}`,
          env: { HTTP_PROXY: P, NO_PROXY: 'registry.test:1' },
          proxied: true,
        },
        {
          name: 'CIDR vs name',
          host: `registry.test:${port}`,
          env: { HTTP_PROXY: P, NO_PROXY: '127.0.0.0/8' },
          proxied: true,
        },
        {
          name: 'NO_PROXY *',
          host: `registry.test:${port}`,
          env: { HTTP_PROXY: P, NO_PROXY: '*' },
          proxied: false,
        },
        { name: 'HTTPS_PROXY only', host: `registry.test:${port}`, env: { HTTPS_PROXY: P }, proxied: false },
        { name: 'loopback IP', host: `127.0.0.1:${port}`, env: { HTTP_PROXY: P }, proxied: false },
        { name: 'localhost', host: `localhost:${port}`, env: { HTTP_PROXY: P }, proxied: false },
      ];
      const clients = {
        oras: (host: string, env: NodeJS.ProcessEnv) =>
          run(join(TOOLS_BIN, 'oras'), ['repo', 'tags', '--plain-http', `${host}/proxied/app`], env),
        tether: (host: string, env: NodeJS.ProcessEnv) =>
          run(process.execPath, [CLI, 'repo', 'tags', '--plain-http', `${host}/proxied/app`], env),
      };
      for (const c of cases) {
        for (const [client, list] of Object.entries(clients)) {
          const asked = proxy.seen.length;
          const result = await list(c.host, { ...base, ...c.env });
          const proxied = proxy.seen.length > asked;
          assert.equal(proxied, c.proxied, `${client}, ${c.name}: proxied ${proxied}`);
          // Proxied or to a loopback address, the tags are listed; direct to registry.test, nothing is.
          const reachable = proxied || !c.host.startsWith('registry.test');
          assert.equal(result.ok, reachable, `${client}, ${c.name}: ${result.out}`);
          if (reachable) assert.match(result.out, /^v1$/m, `${client}, ${c.name}`);
        }
      }
    } finally {
      await proxy.close();
    }
  });

  test('HTTPS: both open a CONNECT tunnel with HTTPS_PROXY, and go direct with only HTTP_PROXY', async () => {
    const proxy = await startForwardProxy();
    try {
      const host = `registry.test:${secure.host.slice(secure.host.lastIndexOf(':') + 1)}`;
      // Go reads SSL_CERT_FILE in place of the system's CAs; Node adds NODE_EXTRA_CA_CERTS to them.
      const trust = { SSL_CERT_FILE: cert, NODE_EXTRA_CA_CERTS: cert };
      const clients = {
        oras: (env: NodeJS.ProcessEnv) => run(join(TOOLS_BIN, 'oras'), ['repo', 'ls', host], env),
        tether: (env: NodeJS.ProcessEnv) => run(process.execPath, [CLI, 'repo', 'ls', host], env),
      };
      for (const [client, list] of Object.entries(clients)) {
        const asked = proxy.seen.length;
        const tunnelled = await list({ ...base, ...trust, HTTPS_PROXY: proxy.url });
        assert.ok(tunnelled.ok, `${client}: ${tunnelled.out}`);
        assert.ok(proxy.seen.length > asked, client);
        for (const request of proxy.seen.slice(asked))
          assert.deepEqual([request.method, request.target], ['CONNECT', host]);
        const before = proxy.seen.length;
        const direct = await list({ ...base, ...trust, HTTP_PROXY: proxy.url });
        assert.equal(direct.ok, false, `${client} reached registry.test without a proxy`);
        assert.equal(proxy.seen.length, before, `${client} asked HTTP_PROXY for an https:// registry`);
      }
    } finally {
      await proxy.close();
    }
  });
});
