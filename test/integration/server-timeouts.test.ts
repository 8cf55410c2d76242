import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Registry } from '../../src/registry/registry.ts';
import { DEFAULT_LIMITS, type HttpServerHandle, listen } from '../../src/server/app.ts';
import { MemoryBlobStore } from '../../src/storage/blob/memory.ts';
import { SqliteMetaStore } from '../../src/storage/meta/sqlite.ts';
import { selfSignedCert } from '../helpers/certs.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

/**
 * The server's connection timeouts, which take minutes to show in a real run, checked in milliseconds:
 * HTTP/1.1 over TLS has the plain server's settings (Node's HTTP/2 server, which serves it, cut a
 * whole request at 300 s: a long TLS upload got a bare 408), and an idle HTTP/2 session is closed after
 * 65 s, on a mocked clock.
 */

const KEEP_ALIVE_MS = 65_000;
/** Taken before the test mocks the global ones. */
const { setTimeout: realSetTimeout, clearTimeout: realClearTimeout } = globalThis;
/** Not the default, so that a setting taken from it, not from Node's defaults or another, shows. */
const LIMITS = { ...DEFAULT_LIMITS, headersTimeoutMs: 7_000 };

/** What Node's HTTP/1.1 server reads per connection: the same on the plain and the TLS server. */
function http1Settings(server: Server) {
  // Both set from options by Node's HTTP/1.1 server, and read by it, but not in its typings.
  const { connectionsCheckingInterval, requireHostHeader } = server as Server & {
    connectionsCheckingInterval: number;
    requireHostHeader: boolean;
  };
  const { requestTimeout, headersTimeout, keepAliveTimeout } = server;
  return { requestTimeout, headersTimeout, connectionsCheckingInterval, keepAliveTimeout, requireHostHeader };
}

describe('server timeouts', () => {
  const log = pino({ level: 'silent' });
  const registry = new Registry(new MemoryBlobStore(), new SqliteMetaStore({ path: ':memory:' }), log);
  let plain: HttpServerHandle;
  let secure: HttpServerHandle;
  let ca: Buffer;
  let cleanup: () => Promise<void>;
  before(async () => {
    const data = await tempDataDir();
    cleanup = data.cleanup;
    const files = { cert: join(data.dir, 'cert.pem'), key: join(data.dir, 'key.pem') };
    selfSignedCert(files, 'server-timeouts', 'IP:127.0.0.1');
    ca = readFileSync(files.cert);
    plain = await listen(registry, log, { host: '127.0.0.1', port: 0, limits: LIMITS });
    secure = await listen(registry, log, { host: '127.0.0.1', port: 0, limits: LIMITS, tls: files });
  });
  after(async () => {
    await plain?.close();
    await secure?.close();
    await registry.close();
    await cleanup?.();
  });

  test('HTTP/1.1, plain and over TLS: no limit on a whole request, headers within the limit, 65 s keep-alive', async () => {
    const expected = {
      requestTimeout: 0,
      headersTimeout: 7_000,
      connectionsCheckingInterval: 5_000,
      keepAliveTimeout: KEEP_ALIVE_MS,
      requireHostHeader: false,
    };
    assert.deepEqual(http1Settings(plain.server), expected, 'plain HTTP');
    assert.deepEqual(http1Settings(secure.server), expected, 'TLS (HTTP/2 server, HTTP/1.1 by ALPN)');
    // And the TLS server's HTTP/1.1 connections are served with them: Node announces its keep-alive.
    const keepAlive = await new Promise<string | undefined>((resolve, reject) => {
      const agent = new https.Agent({ keepAlive: true, ca });
      https
        .get(`https://${secure.address}/v2/`, { agent }, (res) => {
          res.resume();
          res.on('end', () => {
            agent.destroy();
            resolve(res.headers['keep-alive'] as string | undefined);
          });
        })
        .on('error', reject);
    });
    assert.equal(keepAlive, `timeout=${KEEP_ALIVE_MS / 1000}`);
  });

  test('an HTTP/2 session with no request in progress is closed 65 s after its last one, not before', async (t) => {
    // The server's timers run on a mocked clock from here on; the sockets, and Node's own timers, do not.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const served = new Promise<void>((resolve) =>
      // Heard after the server's own listeners (limitSessionIdle's, installed by listen): once this
      // stream has closed, the session's idle timer has been set.
      secure.server.once('session', (session: http2.ServerHttp2Session) =>
        session.once('stream', (stream: http2.ServerHttp2Stream) => stream.once('close', resolve)),
      ),
    );
    const session = http2.connect(`https://${secure.address}`, { ca });
    t.after(() => session.destroy());
    let goaway = false;
    const closing = once(session, 'goaway').then(() => {
      goaway = true;
    });
    session.on('error', () => {});
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ':path': '/v2/' });
      stream.on('response', (headers) => resolve(Number(headers[':status'])));
      stream.on('error', reject);
      stream.resume();
    });
    assert.equal(status, 200);
    await served;
    t.mock.timers.tick(KEEP_ALIVE_MS - 1);
    // A round trip: a GOAWAY sent before the answer to this PING would have arrived first.
    await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
    assert.equal(goaway, false, 'closed before 65 s');
    t.mock.timers.tick(1);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = realSetTimeout(() => resolve('late'), 5_000);
    });
    const result = await Promise.race([closing, late]);
    realClearTimeout(timer);
    assert.notEqual(result, 'late', 'no GOAWAY 65 s after the last request');
  });
});
