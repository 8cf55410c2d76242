import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import type { BodySink } from '../../src/client/body-sink.ts';
import { type DownloadHead, download } from '../../src/client/download.ts';
import { selfSignedCert } from '../helpers/certs.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

/**
 * The download reader against servers that answer exactly as each test says, split across as many
 * writes as it likes, so every framing and every way a response can end early is exercised.
 */
describe('client download', () => {
  /** What the raw server writes for a request path: the pieces of the response, then whether to close. */
  const answers = new Map<string, { pieces: (string | Buffer)[]; close?: boolean; gapMs?: number }>();
  const requests: string[] = [];
  let server: net.Server;
  let base: string;

  before(async () => {
    server = net.createServer((socket) => {
      let head = '';
      socket.on('data', async (data) => {
        head += data.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        requests.push(head);
        const path = head.split(' ')[1]!;
        const answer = answers.get(path);
        if (!answer) return socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
        for (const piece of answer.pieces) {
          socket.write(piece);
          if (answer.gapMs) await new Promise((r) => setTimeout(r, answer.gapMs));
        }
        if (answer.close !== false) socket.end();
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const timeout = () => Object.assign(new Error('idle'), { code: 'ETIMEDOUT' });
  const get = (path: string, headers: Record<string, string> = {}, idleMs = 10_000) =>
    download(new URL(path, base), headers, idleMs, timeout);

  /** Keeps copies of what it is lent; with `holdMs`, answers each chunk with a wait and checks the
   * chunk is unchanged when the wait ends (the lending contract). */
  function collector(holdMs = 0): BodySink & { bytes: () => Buffer } {
    const chunks: Buffer[] = [];
    return {
      write(chunk) {
        const copy = Buffer.from(chunk);
        chunks.push(copy);
        if (!holdMs) return;
        return new Promise<void>((resolve, reject) =>
          setTimeout(() => {
            if (Buffer.compare(Buffer.from(chunk), copy) !== 0)
              reject(new Error('a lent chunk changed before its write settled'));
            else resolve();
          }, holdMs),
        );
      },
      bytes: () => Buffer.concat(chunks),
    };
  }

  async function body(head: DownloadHead, sink = collector()): Promise<Buffer> {
    assert.ok(head.body, 'a body');
    await head.body.pourInto(sink);
    return sink.bytes();
  }

  test('a Content-Length body split anywhere, with the head split too', async () => {
    const payload = randomBytes(300_000);
    answers.set('/length', {
      pieces: [
        'HTTP/1.1 200 OK\r\nContent-Le',
        `ngth: ${payload.length}\r\nX-A: 1\r\nX-A: 2\r\n\r`,
        Buffer.concat([Buffer.from('\n'), payload.subarray(0, 7)]),
        payload.subarray(7, 100_000),
        payload.subarray(100_000),
      ],
      gapMs: 5,
    });
    const head = await get('/length', { Authorization: 'Bearer t', Accept: '*/*' });
    assert.equal(head.status, 200);
    assert.equal(head.statusText, 'OK');
    assert.equal(head.headers.get('x-a'), '1, 2');
    assert.ok((await body(head)).equals(payload));
    const sent = requests.at(-1)!;
    assert.match(sent, /^GET \/length HTTP\/1\.1\r\n/);
    assert.match(sent, /\r\nHost: 127\.0\.0\.1:\d+\r\n/);
    assert.match(sent, /\r\nAuthorization: Bearer t\r\n/);
    assert.match(sent, /\r\nConnection: close\r\n\r\n$/);
  });

  test('a chunked body with extensions and trailers, split inside sizes, data and CRLFs', async () => {
    const parts = [randomBytes(10), randomBytes(70_000), randomBytes(1)];
    const wire = Buffer.concat([
      ...parts.map((part, i) =>
        Buffer.concat([
          Buffer.from(`${part.length.toString(16)}${i === 1 ? ';name=value' : ''}\r\n`),
          part,
          Buffer.from('\r\n'),
        ]),
      ),
      Buffer.from('0\r\nDigest: x\r\n\r\n'),
    ]);
    // Cut the wire at awkward places: inside a size line, between CR and LF, inside the data.
    const cuts = [1, 3, 12, 14, 500, 70_020, wire.length - 3];
    const pieces: Buffer[] = [Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')];
    let from = 0;
    for (const cut of cuts) {
      pieces.push(wire.subarray(from, cut));
      from = cut;
    }
    pieces.push(wire.subarray(from));
    answers.set('/chunked', { pieces, gapMs: 3 });
    assert.ok((await body(await get('/chunked'))).equals(Buffer.concat(parts)));
  });

  test('a body that runs to the close, and interim 1xx responses before the real one', async () => {
    const payload = randomBytes(50_000);
    answers.set('/close', {
      pieces: ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nServer: x\r\n\r\n', payload],
    });
    assert.ok((await body(await get('/close'))).equals(payload));
  });

  test('204, 304 and an empty Content-Length have no body', async () => {
    for (const [path, status] of [
      ['/204', '204 No Content\r\n'],
      ['/304', '304 Not Modified\r\nContent-Length: 10\r\n'],
      ['/empty', '200 OK\r\nContent-Length: 0\r\n'],
    ] as const) {
      answers.set(path, { pieces: [`HTTP/1.1 ${status}\r\n`], close: false });
      const head = await get(path);
      assert.equal(head.body, null, path);
    }
  });

  test('a slow sink holds back the socket and every lent chunk stays intact until its write settles', async () => {
    const payload = randomBytes(6 * 1024 * 1024);
    answers.set('/slow', {
      pieces: [`HTTP/1.1 200 OK\r\nContent-Length: ${payload.length}\r\n\r\n`, payload],
    });
    assert.ok((await body(await get('/slow'), collector(2))).equals(payload));
  });

  test('responses that end early or break the protocol fail, never end cleanly', async () => {
    const cases: [string, (string | Buffer)[], RegExp][] = [
      ['/short', ['HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n', 'x'.repeat(60)], /99 bytes|40 bytes/],
      [
        '/short-chunked',
        ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc'],
        /chunked body ended/,
      ],
      ['/bad-size', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'], /chunk size/],
      ['/no-crlf', ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX\r\n'], /CRLF/],
      ['/extra', ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabcd'], /more than its Content-Length/],
    ];
    for (const [path, pieces, message] of cases) {
      answers.set(path, { pieces });
      const head = await get(path);
      await assert.rejects(body(head), message, path);
    }
  });

  test('a bad head fails the request itself', async () => {
    const cases: [string, (string | Buffer)[], RegExp][] = [
      ['/not-http', ['SSH-2.0-OpenSSH\r\n\r\n'], /not an HTTP\/1\.1 response/],
      ['/bad-length', ['HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n'], /bad Content-Length/],
      ['/folded', ['HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n\r\n'], /bad response header/],
      ['/huge-head', [`HTTP/1.1 200 OK\r\nX-A: ${'a'.repeat(70_000)}`], /larger than/],
      ['/closed', ['HTTP/1.1 200 OK\r\n'], /closed before the response/],
    ];
    for (const [path, pieces, message] of cases) {
      answers.set(path, { pieces });
      await assert.rejects(get(path), message, path);
    }
  });

  test('header values with CR or LF are refused before anything is sent', async () => {
    await assert.rejects(get('/length', { 'X-Evil': 'a\r\nHost: elsewhere' }), { code: 'ERR_INVALID_CHAR' });
  });

  test('a server that goes silent is given up after the idle timeout', async () => {
    answers.set('/silent', { pieces: ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'], close: false });
    const head = await get('/silent', {}, 200);
    await assert.rejects(body(head), { code: 'ETIMEDOUT' });
  });

  test('over TLS, where decrypted records keep arriving while the sink waits', async () => {
    const { dir, cleanup } = await tempDataDir();
    try {
      selfSignedCert(
        { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') },
        'localhost',
        'DNS:localhost',
      );
      const payload = randomBytes(5 * 1024 * 1024 + 3);
      const tlsServer = https.createServer(
        { key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) },
        (_req, res) => res.end(payload),
      );
      await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
      const port = (tlsServer.address() as AddressInfo).port;
      // The system CAs do not know this certificate: the handshake must fail.
      await assert.rejects(download(new URL(`https://localhost:${port}/`), {}, 10_000, timeout), {
        code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
      });
      const defaults = tls.getCACertificates('default');
      tls.setDefaultCACertificates([...defaults, await readFile(join(dir, 'cert.pem'), 'utf8')]);
      try {
        const head = await download(new URL(`https://localhost:${port}/`), {}, 10_000, timeout);
        const got = await body(head, collector(1));
        assert.equal(
          createHash('sha256').update(got).digest('hex'),
          createHash('sha256').update(payload).digest('hex'),
        );
      } finally {
        tls.setDefaultCACertificates(defaults);
        tlsServer.closeAllConnections();
        await new Promise((resolve) => tlsServer.close(resolve));
      }
    } finally {
      await cleanup();
    }
  });
});
