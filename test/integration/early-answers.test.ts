import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { sha256 } from '../helpers/oci.ts';
import { spawnTether, spawnTlsTether, type TetherProcess, tempDataDir } from '../helpers/tether-process.ts';

/**
 * A registry that refuses a request before reading its body (unknown upload, bad name, too large) must
 * still get that answer to the client. Closing a connection with unread input sends a TCP reset, which
 * Node and Go clients reported as EPIPE or ECONNRESET instead of the error code they act on. The
 * server runs in its own process: in this one, the client's writes and the server's reads take turns
 * on one event loop and the race does not show.
 */

interface Reply {
  status: number;
  code?: string;
  /** The server sent `100 Continue`. */
  continued: boolean;
}

const UNKNOWN_UPLOAD = '/v2/early/blobs/uploads/00000000-0000-0000-0000-000000000000';
const BIG = Buffer.alloc(20_000_000, 7);
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
/** Over the default 4 MiB manifest limit. */
const OVERSIZED_MANIFEST = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST_TYPE,
    annotations: Object.fromEntries(Array.from({ length: 430 }, (_, i) => [`k${i}`, 'x'.repeat(10_000)])),
  }),
);

describe('answers given before the request body is read', () => {
  let registry: TetherProcess;
  let cleanup: () => Promise<void>;
  before(async () => {
    const data = await tempDataDir();
    cleanup = data.cleanup;
    registry = await spawnTether(data.dir);
  });
  after(async () => {
    await registry.stop();
    await cleanup();
  });

  /** One request on a fresh connection; `expect` waits for `100 Continue` before sending the body. */
  const send = (
    method: string,
    path: string,
    body: Buffer,
    options: { chunked?: boolean; expect?: boolean; type?: string } = {},
  ) =>
    new Promise<Reply>((resolve, reject) => {
      let continued = false;
      const req = http.request(
        `${registry.url}${path}`,
        {
          method,
          agent: false,
          headers: {
            'Content-Type': options.type ?? 'application/octet-stream',
            ...(options.chunked ? {} : { 'Content-Length': body.length }),
            ...(options.expect ? { Expect: '100-continue' } : {}),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => {
            const code = text
              ? (JSON.parse(text) as { errors?: { code: string }[] }).errors?.[0]?.code
              : undefined;
            resolve({ status: res.statusCode!, ...(code ? { code } : {}), continued });
          });
        },
      );
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${method} ${path}`)));
      if (options.expect) {
        req.on('continue', () => {
          continued = true;
          req.end(body);
        });
        req.flushHeaders();
      } else {
        req.end(body);
      }
    });

  // Several tries each: the reset races the answer, and lost it in 2 to 6 of 6 tries before.
  const TRIES = 5;

  test('a PATCH to an unknown upload gets its 404, not a reset', async () => {
    for (let i = 0; i < TRIES; i++) {
      assert.deepEqual(await send('PATCH', UNKNOWN_UPLOAD, BIG), {
        status: 404,
        code: 'BLOB_UPLOAD_UNKNOWN',
        continued: false,
      });
    }
  });

  test('a monolithic upload to an invalid name gets its 400', async () => {
    for (let i = 0; i < TRIES; i++) {
      const reply = await send('POST', `/v2/BAD/blobs/uploads/?digest=${sha256(BIG)}`, BIG);
      assert.deepEqual(reply, { status: 400, code: 'NAME_INVALID', continued: false });
    }
  });

  test('an oversized manifest gets its 413, with a length and chunked', async () => {
    for (let i = 0; i < TRIES; i++) {
      for (const chunked of [false, true]) {
        const reply = await send('PUT', '/v2/early/manifests/big', OVERSIZED_MANIFEST, {
          chunked,
          type: MANIFEST_TYPE,
        });
        assert.deepEqual(
          reply,
          { status: 413, code: 'SIZE_INVALID', continued: false },
          `chunked: ${chunked}`,
        );
      }
    }
  });

  test('Expect: 100-continue is answered only once the body is wanted', async () => {
    // Refused: the final answer comes instead of `100 Continue`, and the body is never sent.
    for (let i = 0; i < TRIES; i++) {
      const reply = await send('PATCH', UNKNOWN_UPLOAD, BIG, { expect: true });
      assert.deepEqual(reply, { status: 404, code: 'BLOB_UPLOAD_UNKNOWN', continued: false });
    }
    const start = await fetch(`${registry.url}/v2/early/blobs/uploads/`, { method: 'POST' });
    assert.equal(start.status, 202);
    const location = start.headers.get('location')!;
    const patched = await send('PATCH', location, BIG, { expect: true });
    assert.deepEqual(patched, { status: 202, continued: true });
    const digest = sha256(BIG);
    const put = await send('PUT', `${location}?digest=${digest}`, Buffer.alloc(0), { expect: false });
    assert.equal(put.status, 201);
    const head = await fetch(`${registry.url}/v2/early/blobs/${digest}`, { method: 'HEAD' });
    assert.equal(head.headers.get('content-length'), String(BIG.length));
  });
});

test('a request the HTTP parser refuses gets error JSON, not a bare 400', async () => {
  const { dir, cleanup } = await tempDataDir();
  const registry = await spawnTether(dir);
  const port = Number(registry.host.split(':')[1]);
  /** Sends raw bytes and returns everything the server answers before it closes. */
  const raw = (bytes: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.end(bytes));
      let text = '';
      socket.setEncoding('latin1');
      socket.on('data', (c: string) => {
        text += c;
      });
      socket.on('error', reject);
      socket.on('close', () => resolve(text));
    });
  try {
    const manifest = '{"schemaVersion":2}';
    for (const [what, request, status] of [
      ['a bad request line', 'NOT HTTP AT ALL\r\n\r\n', 400],
      // The body runs past its Content-Length into what the parser reads as a second request.
      [
        'a body longer than its Content-Length',
        `PUT /v2/a/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n${manifest}`,
        400,
      ],
      ['headers over the limit', `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
    ] as const) {
      const answer = await raw(request);
      const last = answer.lastIndexOf('HTTP/1.1 ');
      const head = answer.slice(last, answer.indexOf('\r\n\r\n', last));
      assert.match(head, new RegExp(`^HTTP/1\\.1 ${status} `), what);
      assert.match(head, /\r\nContent-Type: application\/json\r\n/, what);
      const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n', last) + 4)) as {
        errors: { code: string }[];
      };
      assert.equal(body.errors[0]!.code, 'UNSUPPORTED', what);
    }
  } finally {
    await registry.stop();
    await cleanup();
  }
});

test('a connection left open after an early answer does not hold a stopping server', async () => {
  const { dir, cleanup } = await tempDataDir();
  const registry = await spawnTether(dir);
  const port = Number(registry.host.split(':')[1]);
  const socket = net.connect(port, '127.0.0.1');
  try {
    // A 100 MB body announced, 1 MB of it sent, and the connection kept open: the server answers, then
    // reads and drops what comes until the client closes or the linger time is up.
    socket.write(
      `PATCH ${UNKNOWN_UPLOAD} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n${'x'.repeat(1_000_000)}`,
    );
    const head = await new Promise<string>((resolve) => {
      let text = '';
      socket.setEncoding('latin1');
      socket.on('data', (c: string) => {
        text += c;
        if (text.includes('\r\n\r\n')) resolve(text);
      });
    });
    assert.match(head, /^HTTP\/1\.1 404 /);
    assert.match(head, /\r\nConnection: close\r\n/i);
    const started = performance.now();
    assert.equal(await registry.stop(), 0);
    const ms = performance.now() - started;
    // It stops in a fraction of a second; a lingering connection it failed to sweep would hold it for
    // the whole linger time (5 s, LINGER_MS in src/server/app.ts): a bound under that, with room to spare.
    assert.ok(ms < 4_000, `the server took ${Math.round(ms)} ms to stop`);
  } finally {
    socket.destroy();
    await cleanup();
  }
});

test('with TLS, Expect: 100-continue is answered on the body first read, over HTTP/1.1 and HTTP/2', async (t) => {
  const { registry, ca, cleanup } = await spawnTlsTether('expect');
  t.after(cleanup);
  t.after(() => registry.stop());
  const body = Buffer.alloc(3_000_000, 5);
  const session = http2.connect(registry.url, { ca });
  t.after(() => session.destroy());
  /** One HTTP/2 request whose body waits for `100 Continue`, sent without a Content-Length. */
  const h2 = (method: string, path: string) =>
    new Promise<Reply>((resolve, reject) => {
      let continued = false;
      const stream = session.request(
        { ':method': method, ':path': path, expect: '100-continue' },
        { endStream: false },
      );
      stream.on('continue', () => {
        continued = true;
        stream.end(body);
      });
      stream.on('response', (headers) => {
        stream.resume();
        stream.on('end', () => resolve({ status: Number(headers[':status']), continued }));
      });
      stream.on('error', reject);
    });
  /** The same over HTTP/1.1. */
  const h1 = (method: string, path: string) =>
    new Promise<Reply>((resolve, reject) => {
      let continued = false;
      const req = https.request(`${registry.url}${path}`, {
        method,
        ca,
        agent: false,
        headers: { Expect: '100-continue', 'Content-Length': body.length },
      });
      req.on('continue', () => {
        continued = true;
        req.end(body);
      });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, continued }));
      });
      req.on('error', reject);
      req.flushHeaders();
    });
  for (const [name, send] of [
    ['HTTP/1.1', h1],
    ['HTTP/2', h2],
  ] as const) {
    assert.deepEqual(await send('PATCH', UNKNOWN_UPLOAD), { status: 404, continued: false }, name);
    const start = await new Promise<string>((resolve, reject) => {
      const s = session.request({ ':method': 'POST', ':path': '/v2/early/blobs/uploads/' });
      s.on('response', (headers) => {
        s.resume();
        resolve(String(headers.location));
      });
      s.on('error', reject);
      s.end();
    });
    assert.deepEqual(await send('PATCH', start), { status: 202, continued: true }, name);
    // The body was stored, on HTTP/2 without a Content-Length too (its end is a DATA frame's flag).
    const range = await new Promise<string>((resolve, reject) => {
      const s = session.request({ ':method': 'GET', ':path': start });
      s.on('response', (headers) => {
        s.resume();
        resolve(String(headers.range));
      });
      s.on('error', reject);
      s.end();
    });
    assert.equal(range, `0-${body.length - 1}`, name);
  }
});
