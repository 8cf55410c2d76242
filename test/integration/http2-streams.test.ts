import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { ERROR_CODE, FLAG, FRAME, frame, PREFACE } from '../helpers/h2-frames.ts';
import { sha256 } from '../helpers/oci.ts';
import { openBlobFiles, spawnTlsTether, type TetherProcess } from '../helpers/tether-process.ts';

const { HEADERS, RST_STREAM, GOAWAY } = FRAME;
const { END_STREAM, END_HEADERS } = FLAG;
const { REFUSED_STREAM } = ERROR_CODE;

/**
 * How many streams one HTTP/2 session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS, app.ts).
 * Node's default is no limit: a session opening 2000 blob GETs and reading nothing held 2000 open files
 * and 2.1 GB of read buffers, where an HTTP/1.1 connection holds one answer at a time (pipelining.test.ts).
 */

const MiB = 1024 * 1024;
const LIMIT = 100;
const BOUNDED = { timeout: 60_000 };
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** HPACK for `GET https <path>` with `:authority 127.0.0.1` (literals without Huffman coding). */
function getHeaderBlock(path: string): Buffer {
  const literal = (index: number, value: string) =>
    Buffer.concat([Buffer.from([index, value.length]), Buffer.from(value)]);
  return Buffer.concat([Buffer.from([0x82, 0x87]), literal(0x04, path), literal(0x01, '127.0.0.1')]);
}

/** Max of `sample()` over `ms`, looked at every 100 ms. */
async function peakOver(ms: number, sample: () => number): Promise<number> {
  let peak = sample();
  for (const until = performance.now() + ms; performance.now() < until; ) {
    await delay(100);
    peak = Math.max(peak, sample());
  }
  return peak;
}

describe('HTTP/2 streams per session', () => {
  let registry: TetherProcess;
  let ca: Buffer;
  let cleanup: () => Promise<void>;
  // Larger than a stream's first write (1 MiB) and than the 64 KiB a client that reads nothing lets
  // through: each stream that was started holds its file.
  const big = randomBytes(4 * MiB);
  const small = randomBytes(100 * 1024);

  const connect = () => {
    const session = http2.connect(registry.url, { ca });
    session.on('error', () => {});
    return session;
  };

  const push = async (data: Buffer): Promise<string> => {
    const digest = sha256(data);
    const session = connect();
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': `/v2/h2/streams/blobs/uploads/?digest=${digest}`,
        'content-type': 'application/octet-stream',
        'content-length': String(data.length),
      });
      stream.end(data);
      const [headers] = (await new Promise((resolve) => stream.once('response', (h) => resolve([h])))) as [
        http2.IncomingHttpHeaders,
      ];
      stream.resume();
      assert.equal(headers[':status'], 201);
      return digest;
    } finally {
      session.close();
    }
  };

  let bigDigest: string;
  let smallDigest: string;
  before(async () => {
    ({ registry, ca, cleanup } = await spawnTlsTether('h2-streams', ['--log-level', 'warn']));
    bigDigest = await push(big);
    smallDigest = await push(small);
  });
  after(async () => {
    await registry.stop();
    await cleanup();
  });

  test('a session that opens 300 blob GETs and reads nothing holds at most 100 files', BOUNDED, async () => {
    const session = connect();
    try {
      await new Promise((resolve) => session.once('remoteSettings', resolve));
      for (let i = 0; i < 300; i++) {
        // Nothing is read: no 'data' listener, so the client grants no more window than the first 64 KiB.
        session.request({ ':path': `/v2/h2/streams/blobs/${bigDigest}` }).on('error', () => {});
      }
      const open = await peakOver(1500, () => openBlobFiles(registry));
      assert.ok(open <= LIMIT, `${open} blob files open for one session`);
      assert.ok(open > 0, 'the streams were started');
      // Said to the client, which keeps the rest of its requests until a stream ends.
      assert.equal(session.remoteSettings.maxConcurrentStreams, LIMIT);
    } finally {
      session.destroy();
    }
    // And the client leaving frees them.
    for (const until = performance.now() + 5000; openBlobFiles(registry) > 0 && performance.now() < until; )
      await delay(100);
    assert.equal(openBlobFiles(registry), 0);
  });

  test('a client that ignores the limit has the streams over it refused', BOUNDED, async () => {
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect(
        { port: Number(registry.host.split(':')[1]), host: '127.0.0.1', ca, ALPNProtocols: ['h2'] },
        () => resolve(s),
      );
      s.once('error', reject);
    });
    socket.on('error', () => {});
    let refused = 0;
    let goaway = false;
    let received = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      while (received.length >= 9 && received.length >= 9 + received.readUIntBE(0, 3)) {
        const length = received.readUIntBE(0, 3);
        const payload = received.subarray(9, 9 + length);
        if (received[3] === RST_STREAM && payload.readUInt32BE(0) === REFUSED_STREAM) refused++;
        if (received[3] === GOAWAY) goaway = true;
        received = received.subarray(9 + length);
      }
    });
    try {
      // 300 requests right after the preface, before the server's SETTINGS can have arrived, and
      // never a WINDOW_UPDATE.
      const block = getHeaderBlock(`/v2/h2/streams/blobs/${bigDigest}`);
      const requests = Array.from({ length: 300 }, (_, i) =>
        frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, block),
      );
      socket.write(Buffer.concat([PREFACE, ...requests]));
      const open = await peakOver(1500, () => openBlobFiles(registry));
      assert.ok(open <= LIMIT, `${open} blob files open for one session`);
      assert.ok(refused >= 300 - LIMIT || goaway, `${refused} streams refused, no GOAWAY`);
    } finally {
      socket.destroy();
    }
  });

  test('a session that keeps 50 blob GETs in flight is served 500 of them', BOUNDED, async () => {
    // Streams are reused as they end: none stays counted against the limit once it is done. (A client
    // that keeps exactly the limit in flight, as Node's does when handed more requests than that, can
    // have a new stream refused with ENHANCE_YOUR_CALM: Node counts a stream until its cleanup has run,
    // a moment after the client saw it end. Go's client opens another connection instead.)
    const session = connect();
    const get = () =>
      new Promise<string>((resolve, reject) => {
        const stream = session.request({ ':path': `/v2/h2/streams/blobs/${smallDigest}` });
        const chunks: Buffer[] = [];
        stream.on('response', (headers) => {
          if (headers[':status'] !== 200) reject(new Error(`status ${headers[':status']}`));
        });
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => resolve(sha256(Buffer.concat(chunks))));
        stream.on('error', reject);
      });
    try {
      let left = 500;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (left-- > 0) assert.equal(await get(), smallDigest);
        }),
      );
    } finally {
      session.close();
    }
  });
});
