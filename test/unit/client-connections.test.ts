import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { AuthError } from '../../src/client/auth.ts';
import { RegistryClient } from '../../src/client/client.ts';
import { parseImageReference } from '../../src/client/reference.ts';
import { send } from '../../src/client/transport.ts';

/**
 * A response the client gives up on must still be read or dropped: an unread body keeps its
 * connection busy, so the next request opens another, and a CLI process cannot exit while it is open.
 */
describe('client connections', () => {
  let server: http.Server;
  let host: string;
  let connections = 0;
  const errorBody = JSON.stringify({ errors: [{ code: 'DENIED', message: 'no' }] });

  before(async () => {
    server = http.createServer((req, res) => {
      const answer = (status: number, headers: Record<string, string> = {}) => {
        res.writeHead(status, {
          'Content-Type': 'application/json',
          'Content-Length': String(errorBody.length),
          ...headers,
        });
        res.end(errorBody);
      };
      // Drain what was sent before answering, as a registry does.
      req.resume();
      req.on('end', () => {
        if (req.url === '/token' || req.url?.startsWith('/token?')) return answer(401);
        if (req.url?.startsWith('/v2/locked/')) return answer(412);
        return answer(401, { 'WWW-Authenticate': `Bearer realm="http://${host}/token",service="test"` });
      });
    });
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  test('a manifest PUT refused with 412 frees its connection for the next request', async () => {
    const client = new RegistryClient({ credentials: async () => undefined });
    const ref = parseImageReference(`${host}/locked/app:v1`);
    const before = connections;
    for (let i = 0; i < 3; i++) {
      const put = await client.putManifest(
        ref,
        'v1',
        Buffer.from('{}'),
        'application/vnd.oci.image.index.v1+json',
        {
          'If-Match': '"stale"',
        },
      );
      assert.equal(put.preconditionFailed, true);
    }
    assert.ok(connections - before <= 1, `${connections - before} connections for three requests`);
  });

  test('a token endpoint that refuses the credentials frees its connection', async () => {
    const client = new RegistryClient({ credentials: async () => ({ username: 'u', password: 'p' }) });
    const ref = parseImageReference(`${host}/private/app:v1`);
    const before = connections;
    for (let i = 0; i < 3; i++) {
      await assert.rejects(client.getManifest(ref), (err: unknown) => err instanceof AuthError);
    }
    // One kept-alive connection (or the one the previous test left) serves all six requests.
    assert.ok(connections - before <= 1, `${connections - before} connections for six requests`);
  });
});

/**
 * An idle kept-alive connection must be closed by the client before the server closes it: a request
 * sent on it just as the server does fails with "socket hang up". Node's agent closes it a second
 * before the server's `Keep-Alive: timeout=N` hint, but only when the agent has a timeout of its own.
 */
describe('idle client connections', () => {
  test('are closed before the Keep-Alive timeout the server announces', async () => {
    // The server announces timeout=2 (and, like any Node server, waits a little longer itself). Who
    // closed first is read on the server's side: the client's FIN arrives as 'end' before 'close';
    // when the server's own timer closes the connection, it ends without one. Both timers run in this
    // process, so a loaded machine delays them alike and cannot change which fires first.
    const server = http.createServer({ keepAliveTimeout: 2000 }, (_req, res) => res.end('{}'));
    const closed = new Promise<{ at: number; byClient: boolean }>((resolve) => {
      server.once('connection', (socket) => {
        let byClient = false;
        socket.once('end', () => {
          byClient = true;
        });
        socket.once('close', () => resolve({ at: performance.now(), byClient }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const res = await send(new URL(`http://127.0.0.1:${port}/v2/`), { method: 'GET' });
      assert.equal(res.headers.get('keep-alive'), 'timeout=2');
      await res.discard();
      const idleSince = performance.now();
      const { at, byClient } = await closed;
      const idleMs = Math.round(at - idleSince);
      assert.ok(byClient, `the server closed the connection (after ${idleMs} ms idle), not the client`);
      // Not at once: the connection was kept for reuse (a timer cannot fire early; load only delays it).
      assert.ok(idleMs >= 800, `closed after ${idleMs} ms idle`);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
