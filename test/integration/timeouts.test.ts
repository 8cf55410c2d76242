import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { spawnTether, type TetherProcess, tempDataDir } from '../helpers/tether-process.ts';

/**
 * Request bodies time out and connections are capped (audit-sec #4): with neither, 400 stalled 4 MiB
 * manifest PUTs held 1.6 GB and were still open minutes later. Connections past the cap are told so
 * (429), not reset. Server processes of their own with short limits; bounds on elapsed time are generous.
 */

interface Reply {
  status: number;
  /** The status line and headers, through the blank line. */
  head: string;
  body: string;
  /** The connection was closed by the server. */
  closed: boolean;
}

/** Opens a connection, writes `head`, then `drip` (if any) one byte per `everyMs`; resolves on an answer. */
function stalled(port: number, head: string, drip = 0, everyMs = 500): Promise<Reply> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let dripped = 0;
    const timer = setInterval(() => {
      if (dripped < drip) {
        socket.write('x');
        dripped++;
      }
    }, everyMs);
    // Whatever happens, the test ends: a server that never answers shows as status 0.
    const giveUp = setTimeout(() => socket.destroy(), 30_000);
    socket.setEncoding('latin1');
    socket.on('data', (d) => {
      text += d;
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      clearTimeout(giveUp);
      const end = text.indexOf('\r\n\r\n');
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
        head: end < 0 ? text : text.slice(0, end + 4),
        body: end < 0 ? '' : text.slice(end + 4),
        closed: true,
      });
    });
    socket.write(head);
  });
}

/**
 * The status of `GET /v2/` on a fresh connection, asked again while it is 429 (for up to 10 s): the
 * server frees a slot when it sees a connection close, a moment after the client closed it.
 */
async function servedAgain(port: number): Promise<number> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const { status } = await stalled(port, 'GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    if (status !== 429 || performance.now() > deadline) return status;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('time limits', () => {
  let registry: TetherProcess;
  let port: number;
  let cleanup: () => Promise<void>;
  before(async () => {
    const data = await tempDataDir();
    cleanup = data.cleanup;
    registry = await spawnTether(data.dir, ['--log-level', 'warn'], {
      TETHER_LIMITS_BODY_IDLE_SECONDS: '2',
      TETHER_LIMITS_BODY_TIMEOUT_SECONDS: '3',
      TETHER_LIMITS_HEADERS_TIMEOUT_SECONDS: '2',
    });
    port = Number(registry.host.split(':')[1]);
  });
  after(async () => {
    await registry.stop();
    await cleanup();
  });

  test('a manifest body that stops arriving is answered 408 and closed', async () => {
    const started = performance.now();
    const reply = await stalled(
      port,
      'PUT /v2/slow/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n' +
        `Content-Length: 4194304\r\n\r\n${' '.repeat(100_000)}`,
    );
    assert.equal(reply.status, 408, reply.body);
    assert.equal(JSON.parse(reply.body).errors[0].code, 'UNSUPPORTED');
    assert.ok(performance.now() - started < 30_000);
  });

  test('a manifest body trickling in (never idle) is cut at its total limit', async () => {
    const started = performance.now();
    const reply = await stalled(
      port,
      'PUT /v2/slow/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n' +
        'Content-Length: 1000\r\n\r\n{',
      1000,
      300,
    );
    assert.equal(reply.status, 408, reply.body);
    assert.match(JSON.parse(reply.body).errors[0].message, /not received within 3 s/);
    assert.ok(performance.now() - started < 30_000);
  });

  test('an upload may take longer than that while its bytes flow, and is cut once they stop', async () => {
    const start = await fetch(`${registry.url}/v2/slow/blobs/uploads/`, { method: 'POST' });
    const location = start.headers.get('location')!;
    // 12 bytes, one every 400 ms: ~5 s, longer than the 3 s total limit of manifests.
    const flowing = await stalled(
      port,
      `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n`,
      12,
      400,
    );
    assert.equal(flowing.status, 202, flowing.body);
    const idle = await stalled(
      port,
      `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc`,
    );
    assert.equal(idle.status, 408, idle.body);
    assert.match(JSON.parse(idle.body).errors[0].message, /no bytes for 2 s/);
    // Nothing of the abandoned chunk was acknowledged.
    const status = await fetch(`${registry.url}${location}`);
    assert.equal(status.headers.get('range'), '0-11');
  });

  test('headers that never end are answered 408', async () => {
    const reply = await stalled(port, 'GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    assert.equal(reply.status, 408);
  });
});

/**
 * The cap on a server of its own, whose only connections are the test's: on the server above, an
 * earlier test's kept-alive connection (fetch's) could take one of the slots meant to be held here.
 */
describe('the connection cap', () => {
  let registry: TetherProcess;
  let port: number;
  let cleanup: () => Promise<void>;
  before(async () => {
    const data = await tempDataDir();
    cleanup = data.cleanup;
    registry = await spawnTether(data.dir, ['--log-level', 'warn'], { TETHER_LIMITS_MAX_CONNECTIONS: '8' });
    port = Number(registry.host.split(':')[1]);
  });
  after(async () => {
    await registry.stop();
    await cleanup();
  });

  test('connections past the cap are answered 429 and closed; the registry serves again once some close', async () => {
    // Kept-alive connections, each answered once (so the server has counted it), hold the cap.
    const held: net.Socket[] = [];
    try {
      const answers = await Promise.all(
        Array.from(
          { length: 8 },
          () =>
            new Promise<string>((resolve, reject) => {
              const s = net.connect(port, '127.0.0.1', () => s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n'));
              held.push(s);
              s.setEncoding('latin1');
              s.once('data', resolve);
              s.once('error', reject);
              s.once('close', () => reject(new Error('a held connection was closed')));
            }),
        ),
      );
      // Each was served: no other connection (an earlier test's kept-alive one) took a slot.
      for (const answer of answers) assert.match(answer, /^HTTP\/1\.1 200 /);
      // A request without a body, and one whose client sends 512 KiB of body before it reads anything:
      // the answer is not lost to a reset of the unread bytes.
      const manifestPut =
        'PUT /v2/busy/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n' +
        `Content-Length: 524288\r\n\r\n${' '.repeat(524288)}`;
      for (const request of ['GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n', manifestPut]) {
        const refused = await stalled(port, request);
        assert.equal(refused.status, 429, refused.head);
        assert.match(refused.head, /\r\nRetry-After: \d+\r\n/i);
        assert.match(refused.head, /\r\nConnection: close\r\n/i);
        assert.match(refused.head, /\r\nContent-Length: \d+\r\n/i);
        assert.doesNotMatch(refused.head, /Transfer-Encoding/i);
        assert.equal(JSON.parse(refused.body).errors[0].code, 'TOOMANYREQUESTS');
      }
    } finally {
      for (const s of held) s.destroy();
    }
    // The server sees them close a moment later: a fresh connection is served once it has.
    assert.equal(await servedAgain(port), 200);
  });
});
