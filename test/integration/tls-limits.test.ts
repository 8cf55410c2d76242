import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { FLAG, FRAME, frame, PREFACE } from '../helpers/h2-frames.ts';
import { spawnTlsTether, type TetherProcess } from '../helpers/tether-process.ts';

const { HEADERS, CONTINUATION } = FRAME;
const { END_HEADERS } = FLAG;

/**
 * Slow clients and the connection cap over TLS (HTTP/2 and HTTP/1.1 by ALPN). Node's HTTP/2 server has
 * no header timeout and a 120 s handshake timeout: a trickled handshake held its connection 120 s, HTTP/1.1
 * headers over TLS 60-90 s, and an HTTP/2 session that sent no request, or trickled its HEADERS frame,
 * for as long as it liked. A server process of its own with a 2 s header timeout; bounds are generous.
 */

const HEADERS_TIMEOUT_S = 2;
const CAP = 6;
/** Well under what each slow client held before (120 s, 60 s, unbounded), well over 2 s plus slack. */
const PROMPTLY_MS = 9_000;
/** A probe that is still open after this long has not been bounded. */
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

/** Writes `bytes` to `socket` one byte per `everyMs`, until the socket closes. */
function trickle(socket: net.Socket, bytes: Buffer, everyMs: number): void {
  let i = 0;
  const timer = setInterval(() => {
    if (i < bytes.length && !socket.destroyed) socket.write(bytes.subarray(i, ++i));
  }, everyMs);
  socket.once('close', () => clearInterval(timer));
}

/** The first flight of a real TLS client (its ClientHello), captured by a listener of our own. */
function clientHello(): Promise<Buffer> {
  return new Promise((resolve) => {
    const capture = net.createServer((s) =>
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
        capture.close();
      }),
    );
    capture.listen(0, '127.0.0.1', () => {
      const { port } = capture.address() as net.AddressInfo;
      tls.connect({ port, host: '127.0.0.1', ALPNProtocols: ['h2', 'http/1.1'] }).on('error', () => {});
    });
  });
}

/** HPACK for GET https /v2/ (no Huffman coding), then `x-slow: aaa…`, a header to spread over frames. */
const HEADER_BLOCK = Buffer.concat([
  Buffer.from([0x82, 0x87, 0x04, 0x04]),
  Buffer.from('/v2/'),
  Buffer.from([0x00, 0x06]),
  Buffer.from('x-slow'),
  Buffer.from([0x7e]),
  Buffer.alloc(126, 'a'),
]);

describe('slow clients and the connection cap over TLS', () => {
  let registry: TetherProcess;
  let port: number;
  let ca: Buffer;
  let cleanup: () => Promise<void>;
  const connect = (alpn: string[]) =>
    new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', ca, ALPNProtocols: alpn }, () => resolve(s));
      s.once('error', reject);
    });

  /**
   * The statuses of `GET /v2/` on `n` connections open at once (0: the connection failed), asked again
   * while any is not 200 (for up to 10 s): the server frees a slot when it sees a connection close, a
   * moment after the client did.
   */
  const servedAgain = async (n: number): Promise<number[]> => {
    const deadline = performance.now() + 10_000;
    for (;;) {
      const sockets: tls.TLSSocket[] = [];
      try {
        const statuses = await Promise.all(
          Array.from({ length: n }, async () => {
            const s = await connect(['http/1.1']).catch(() => undefined);
            if (s === undefined) return 0;
            sockets.push(s);
            const closed = closedBy(s);
            s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
            return Number(/^HTTP\/1\.1 (\d{3}) /.exec((await closed).text)?.[1] ?? 0);
          }),
        );
        if (statuses.every((s) => s === 200) || performance.now() > deadline) return statuses;
      } finally {
        for (const s of sockets) s.destroy();
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  before(async () => {
    ({ registry, ca, cleanup } = await spawnTlsTether('tls-limits', ['--log-level', 'warn'], {
      TETHER_LIMITS_HEADERS_TIMEOUT_SECONDS: String(HEADERS_TIMEOUT_S),
      TETHER_LIMITS_MAX_CONNECTIONS: String(CAP),
    }));
    port = Number(registry.host.split(':')[1]);
  });
  after(async () => {
    await registry.stop();
    await cleanup();
  });

  test('a handshake trickled a byte at a time is closed within the header timeout', BOUNDED, async () => {
    const hello = await clientHello();
    const socket = net.connect(port, '127.0.0.1');
    const closed = closedBy(socket);
    trickle(socket, hello, 300);
    const { ms } = await closed;
    assert.ok(ms < PROMPTLY_MS, `closed after ${ms} ms`);
  });

  test('HTTP/1.1 headers trickled over TLS are answered 408 with error JSON', BOUNDED, async () => {
    const started = performance.now();
    const socket = await connect(['http/1.1']);
    const closed = closedBy(socket, started);
    socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    trickle(socket, Buffer.alloc(1000, 'a'), 300);
    const { ms, text } = await closed;
    assert.ok(ms < PROMPTLY_MS, `closed after ${ms} ms`);
    assert.match(text, /^HTTP\/1\.1 408 /);
    const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
    assert.equal(body.errors[0].code, 'UNSUPPORTED');
  });

  test(
    'an HTTP/2 session with no request, or trickling its HEADERS or CONTINUATION frames, is closed',
    BOUNDED,
    async () => {
      const probes = {
        idle: async () => {
          const socket = await connect(['h2']);
          socket.write(PREFACE);
          return socket;
        },
        'HEADERS a byte at a time': async () => {
          const socket = await connect(['h2']);
          socket.write(PREFACE);
          trickle(socket, frame(HEADERS, END_HEADERS, 1, HEADER_BLOCK), 300);
          return socket;
        },
        // nghttp2 ends a header block after 8 CONTINUATION frames, but takes them as slowly as they come.
        'a 1-byte CONTINUATION frame every 2 s': async () => {
          const socket = await connect(['h2']);
          socket.write(Buffer.concat([PREFACE, frame(HEADERS, 0, 1, HEADER_BLOCK.subarray(0, 10))]));
          let sent = 10;
          const timer = setInterval(() => {
            socket.write(frame(CONTINUATION, 0, 1, HEADER_BLOCK.subarray(sent, ++sent)));
          }, 2_000);
          socket.once('close', () => clearInterval(timer));
          return socket;
        },
      };
      await Promise.all(
        Object.entries(probes).map(async ([name, open]) => {
          const started = performance.now();
          const { ms } = await closedBy(await open(), started);
          assert.ok(ms < PROMPTLY_MS, `${name}: closed after ${ms} ms`);
        }),
      );
    },
  );

  test(
    'an HTTP/2 session that made a request may wait longer than that for its next one',
    BOUNDED,
    async () => {
      const session = http2.connect(`https://127.0.0.1:${port}`, { ca });
      const get = () =>
        new Promise<number>((resolve, reject) => {
          const stream = session.request({ ':path': '/v2/' });
          stream.on('response', (headers) => {
            stream.resume();
            stream.on('end', () => resolve(Number(headers[':status'])));
          });
          stream.on('error', reject);
        });
      try {
        assert.equal(await get(), 200);
        await new Promise((resolve) => setTimeout(resolve, (HEADERS_TIMEOUT_S + 2) * 1000));
        assert.equal(await get(), 200);
      } finally {
        session.destroy();
      }
    },
  );

  test(
    'HTTP/1.1 over TLS takes the plain server settings: a kept-alive connection outlives 5 s',
    BOUNDED,
    async () => {
      const socket = await connect(['http/1.1']);
      socket.setEncoding('latin1');
      const get = () =>
        new Promise<string>((resolve, reject) => {
          let text = '';
          const onData = (d: string) => {
            text += d;
            const end = text.indexOf('\r\n\r\n');
            if (end >= 0 && text.length >= end + 4 + Number(/content-length: (\d+)/i.exec(text)?.[1])) {
              socket.off('data', onData);
              resolve(text);
            }
          };
          if (socket.destroyed) reject(new Error('the server closed the connection'));
          socket.on('data', onData);
          socket.once('close', () => reject(new Error('the server closed the connection')));
          socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n');
        });
      try {
        assert.match(await get(), /^HTTP\/1\.1 200 /);
        // Node's HTTP/2 server closes HTTP/1.1 connections idle 5 s; plain HTTP keeps them 65 s.
        await new Promise((resolve) => setTimeout(resolve, 6_000));
        assert.match(await get(), /^HTTP\/1\.1 200 /);
      } finally {
        socket.destroy();
      }
    },
  );

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
          held.push(s);
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
      assert.deepEqual(await servedAgain(1), [200]);
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
    assert.deepEqual(await servedAgain(CAP), Array(CAP).fill(200));
  });
});
