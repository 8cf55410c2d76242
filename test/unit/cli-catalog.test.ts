import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { listNamespace } from '../../src/cli/catalog.ts';
import { Authenticator } from '../../src/client/auth.ts';
import { ClientError } from '../../src/client/errors.ts';
import { RegistryHttp } from '../../src/client/registry-http.ts';

const CATALOG = [
  'aa',
  'many',
  'many-x/a',
  'many.y',
  'many/r1',
  'many/r2',
  'many/sub/r3',
  'many0',
  'manyz',
  ...Array.from({ length: 20 }, (_, i) => `zz/${String(i).padStart(2, '0')}`),
];

/**
 * A catalog served two names a page, with `last` and `Link` as Distribution serves them (`sorted`), or
 * in an order of its own that ignores `last` (which no name must be lost to).
 */
async function fakeRegistry(sorted: boolean) {
  const requests: string[] = [];
  const names = sorted ? CATALOG : [...CATALOG].reverse();
  const server = http.createServer((req, res) => {
    requests.push(req.url!);
    const url = new URL(req.url!, 'http://registry');
    if (url.pathname !== '/v2/_catalog') {
      res.writeHead(404).end();
      return;
    }
    const last = url.searchParams.get('last');
    const start = Number(url.searchParams.get('start') ?? 0);
    const rest = sorted && last !== null ? names.filter((n) => n > last) : names.slice(start);
    const page = rest.slice(0, 2);
    const next = sorted
      ? `/v2/_catalog?n=2&last=${encodeURIComponent(page.at(-1) ?? '')}`
      : `/v2/_catalog?n=2&start=${start + 2}`;
    res.writeHead(200, {
      'content-type': 'application/json',
      ...(rest.length > 2 ? { link: `<${next}>; rel="next"` } : {}),
    });
    res.end(JSON.stringify({ repositories: page }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    requests,
    http: new RegistryHttp(host, new Authenticator(async () => undefined)),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

test('repo ls HOST/NS: the names under NS/, starting at last=NS and stopping past the namespace', async (t) => {
  const reg = await fakeRegistry(true);
  t.after(reg.close);
  assert.deepEqual(await listNamespace(reg.http, 'many'), ['r1', 'r2', 'sub/r3']);
  assert.equal(reg.requests[0], '/v2/_catalog?last=many');
  // many-x/a many.y | many/r1 many/r2 | many/sub/r3 many0 (past the namespace: done). Ten pages of zz/ unread.
  assert.equal(reg.requests.length, 3, reg.requests.join(' '));
  assert.deepEqual(await listNamespace(reg.http, 'many/sub'), ['r3']);
  assert.deepEqual(await listNamespace(reg.http, 'nothing'), []);
});

test('a catalog out of lexical order is read whole, so no name is lost to `last`', async (t) => {
  const reg = await fakeRegistry(false);
  t.after(reg.close);
  assert.deepEqual((await listNamespace(reg.http, 'many')).sort(), ['r1', 'r2', 'sub/r3']);
  assert.ok(reg.requests.includes('/v2/_catalog'), 'started over from the first page');
});

test('a refused catalog is a ClientError with the status', async (t) => {
  const server = http.createServer((_req, res) => res.writeHead(401).end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  await assert.rejects(
    listNamespace(new RegistryHttp(host, new Authenticator(async () => undefined)), 'many'),
    (err) => err instanceof ClientError && err.status === 401 && /tether login/.test(err.message),
  );
});
