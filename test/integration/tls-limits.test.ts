import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { selfSignedCert } from '../helpers/certs.ts';
import { spawnTether, type TetherProcess, tempDataDir } from '../helpers/tether-process.ts';

/**
 * The connection cap over TLS (HTTP/2 and HTTP/1.1 by ALPN): connections past it are answered after a
 * handshake, not reset. A server process of its own with a small cap.
 */

const CAP = 6;
/** A connection still open after this long was not closed by the server. */
const GIVE_UP_MS = 25_000;
/** A server that regressed fails a test rather than hanging it. */
const BOUNDED = { timeout: 40_000 };

interface Closed {
  /** Milliseconds from the probe's start to the server closing the connection. */
  ms: number;
  /** What the server sent (decrypted), as latin1. */
  text: string;
}

/** Resolves when the server closes `socket` (or after GIVE_UP_MS, with `ms` Infinity). */
function closedBy(socket: net.Socket, started = performance.now()): Promise<Closed> {
  return new Promise((resolve) => {
    let text = '';
    const giveUp = setTimeout(() => {
      resolve({ ms: Number.POSITIVE_INFINITY, text });
      socket.destroy();
    }, GIVE_UP_MS);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(giveUp);
      resolve({ ms: performance.now() - started, text });
    });
  });
}

describe('the connection cap over TLS', () => {
  let registry: TetherProcess;
  let port: number;
  let ca: Buffer;
  let cleanup: () => Promise<void>;
  const connect = (alpn: string[]) =>
    new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', ca, ALPNProtocols: alpn }, () => resolve(s));
      s.once('error', reject);
    });

  before(async () => {
    const data = await tempDataDir();
    cleanup = data.cleanup;
    const cert = join(data.dir, 'cert.pem');
    const key = join(data.dir, 'key.pem');
    selfSignedCert({ cert, key }, 'tls-limits', 'IP:127.0.0.1');
    ca = readFileSync(cert);
    registry = await spawnTether(join(data.dir, 'data'), ['--log-level', 'warn'], {
      TETHER_TLS_CERT: cert,
      TETHER_TLS_KEY: key,
      TETHER_LIMITS_MAX_CONNECTIONS: String(CAP),
    });
    port = Number(registry.host.split(':')[1]);
  });
  after(async () => {
    await registry.stop();
    await cleanup();
  });

  test(
    'connections past the cap are answered 429 over HTTP/1.1, whatever the client offers by ALPN',
    BOUNDED,
    async () => {
      // Kept-alive HTTP/1.1 connections, each answered once, hold the cap.
      const held = await Promise.all(
        Array.from({ length: CAP }, async () => {
          const s = await connect(['http/1.1']);
          s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n');
          await new Promise((resolve) => s.once('data', resolve));
          return s;
        }),
      );
      try {
        for (const alpn of [['h2', 'http/1.1'], ['http/1.1'], []]) {
          const s = await connect(alpn);
          assert.equal(s.alpnProtocol, alpn.length ? 'http/1.1' : false);
          const closed = closedBy(s);
          s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n');
          const { text } = await closed;
          const end = text.indexOf('\r\n\r\n');
          assert.match(text, /^HTTP\/1\.1 429 /, `ALPN ${alpn}`);
          const head = text.slice(0, end + 2);
          assert.match(head, /\r\nRetry-After: \d+\r\n/i);
          assert.match(head, /\r\nConnection: close\r\n/i);
          assert.doesNotMatch(head, /Transfer-Encoding/i);
          assert.equal(JSON.parse(text.slice(end + 4)).errors[0].code, 'TOOMANYREQUESTS');
        }
      } finally {
        for (const s of held) s.destroy();
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      const s = await connect(['http/1.1']);
      s.end('GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      assert.match((await closedBy(s)).text, /^HTTP\/1\.1 200 /);
    },
  );

  test('failed handshakes, under the cap or over it, give their slots back', BOUNDED, async () => {
    await Promise.all(
      Array.from({ length: CAP * 3 }, async () => {
        const s = net.connect(port, '127.0.0.1');
        const closed = closedBy(s);
        s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n');
        await closed;
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    const sockets = await Promise.all(Array.from({ length: CAP }, () => connect(['http/1.1'])));
    try {
      for (const s of sockets) {
        const closed = closedBy(s);
        s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        assert.match((await closed).text, /^HTTP\/1\.1 200 /);
      }
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});
