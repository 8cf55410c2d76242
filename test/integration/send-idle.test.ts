import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import pino from 'pino';
import { startRegistry } from '../../src/server/start.ts';
import { pushBlob, pushImage, pushManifest, sha256 } from '../helpers/oci.ts';
import {
  openBlobFiles,
  openFilesUnder,
  spawnTether,
  spawnTlsTether,
  type TetherProcess,
  tempDataDir,
} from '../helpers/tether-process.ts';

/**
 * Downloads whose client stops reading (`limits.sendIdleSeconds`): before it, such a transfer held its
 * blob file, its buffers and a connection slot until the client disconnected, forever if it did not.
 * Server processes of their own with a 5 s limit; bounds on elapsed time are generous, and how soon a
 * cut comes is read from the server's open files, which the cut closes.
 */

const IDLE_S = 5;
/** A cut comes after the limit plus at most two sweeps; this allows for a busy machine as well. */
const CUT_BY_MS = IDLE_S * 1000 + 5_000;
const BOUNDED = { timeout: 60_000 };
const MiB = 1024 * 1024;
const BIG = 64 * MiB;

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A stalled transfer: its blob file is still open a second in, and closed (the transfer cut) no sooner
 * than the limit and within CUT_BY_MS of the stall.
 */
async function heldThenCut(registry: TetherProcess): Promise<void> {
  await delay(1000);
  assert.equal(openBlobFiles(registry), 1, 'the stalled transfer has its blob open');
  const ms = 1000 + (await within(CUT_BY_MS, () => openBlobFiles(registry) === 0));
  assert.ok(ms >= IDLE_S * 1000 - 250, `cut after ${ms} ms, before the ${IDLE_S} s limit`);
  assert.ok(ms <= CUT_BY_MS, `cut after ${ms} ms (limit ${IDLE_S} s)`);
}

/** The server's warnings about responses it abandoned. */
function abandoned(registry: TetherProcess): string[] {
  return registry
    .output()
    .split('\n')
    .filter((line) => line.includes('response abandoned'));
}

/** Polls `ready` every 50 ms; resolves with the milliseconds it took, or Infinity after `limitMs`. */
async function within(limitMs: number, ready: () => boolean): Promise<number> {
  const started = performance.now();
  while (!ready()) {
    if (performance.now() - started > limitMs) return Number.POSITIVE_INFINITY;
    await delay(50);
  }
  return performance.now() - started;
}

/**
 * Sends `GET path` on `socket` and reads the answer until `firstBytes` of it have come, then stops
 * reading. Resolves with the response's head once it has stopped; `resume()` reads on to the end and
 * resolves with the body bytes that came.
 */
async function stallAfter(socket: net.Socket, path: string, firstBytes: number) {
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  let received = 0;
  let text = '';
  await new Promise<void>((resolve) => {
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (text.length < 4096) text += chunk.toString('latin1');
      if (received >= firstBytes) {
        socket.pause();
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
  });
  const head = text.slice(0, text.indexOf('\r\n\r\n'));
  return {
    head,
    resume: () =>
      new Promise<number>((resolve) => {
        socket.on('data', (chunk: Buffer) => {
          received += chunk.length;
        });
        socket.on('error', () => {});
        socket.once('close', () => resolve(received - head.length - 4));
        socket.resume();
      }),
  };
}

/**
 * Reads `stream` to its end at `every` bytes per `everyMs` on average, as a client on a slow link does
 * (it stops reading whenever it is ahead); `every` may depend on the bytes received so far, for a link
 * that slows down. Rejects if the stream closes without an end.
 */
function readAtPace(
  stream: Readable,
  every: number | ((received: number) => number),
  everyMs: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let budget = 0;
    stream.pause();
    stream.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      budget -= chunk.length;
      if (budget <= 0) stream.pause();
    });
    const timer = setInterval(() => {
      budget += typeof every === 'number' ? every : every(received);
      if (budget > 0) stream.resume();
    }, everyMs);
    stream.once('end', () => {
      clearInterval(timer);
      resolve(Buffer.concat(chunks));
    });
    stream.once('close', () => {
      clearInterval(timer);
      reject(new Error(`closed after ${received} bytes without an end`));
    });
    stream.on('error', () => {});
  });
}

describe('downloads whose client stops reading (HTTP/1.1)', () => {
  let registry: TetherProcess;
  let port: number;
  let cleanup: () => Promise<void>;
  const big = randomBytes(BIG);
  let bigDigest: string;
  before(async () => {
    const data = await tempDataDir();
    cleanup = data.cleanup;
    registry = await spawnTether(data.dir, ['--log-level', 'warn'], {
      TETHER_LIMITS_SEND_IDLE_SECONDS: String(IDLE_S),
      TETHER_LIMITS_MANIFEST_MAX_BYTES: String(16 * MiB),
    });
    port = Number(registry.host.split(':')[1]);
    bigDigest = await pushBlob(registry.url, 'idle/big', big);
  });
  after(async () => {
    await registry.stop();
    await cleanup();
  });

  test('a client reading steadily for much longer than the limit gets the whole blob', BOUNDED, async () => {
    // 256 KiB every 100 ms: ~10 s for 24 MiB, over three times the limit. Slower than this on loopback,
    // the kernel itself reports progress too seldom (see docs/architecture.md); HTTP/2 below reads slower.
    const blob = big.subarray(0, 24 * MiB);
    const digest = await pushBlob(registry.url, 'idle/steady', blob);
    const started = performance.now();
    const socket = net.connect(port, '127.0.0.1');
    socket.write(`GET /v2/idle/steady/blobs/${digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const all = await readAtPace(socket, 256 * 1024, 100);
    const end = all.indexOf('\r\n\r\n');
    assert.match(all.subarray(0, end).toString('latin1'), /^HTTP\/1\.1 200 /);
    const body = all.subarray(end + 4);
    assert.equal(body.length, blob.length);
    assert.equal(sha256(body), digest);
    assert.ok(performance.now() - started > 1.5 * IDLE_S * 1000, 'the download outlasted the limit');
  });

  test(
    'a blob download that stops being read is cut within the limit; the next pull works',
    BOUNDED,
    async () => {
      const socket = net.connect(port, '127.0.0.1');
      const path = `/v2/idle/big/blobs/${bigDigest}`;
      const stalled = await stallAfter(socket, path, MiB);
      assert.match(stalled.head, /^HTTP\/1\.1 200 /);
      const since = performance.now();
      // The transfer holds its file while it waits on the client...
      // ...until the limit: then the file is closed.
      await heldThenCut(registry);
      // The client gets what the kernel had buffered, then the end of a connection, short of the blob.
      const got = await stalled.resume();
      assert.ok(got < BIG, `${got} bytes of ${BIG} came over a connection that was cut`);
      assert.ok(performance.now() - since < 30_000);
      const line = abandoned(registry).find((l) => l.includes(path));
      assert.ok(line, `a warning names the request:\n${registry.output()}`);
      const logged = JSON.parse(line);
      assert.equal(logged.level, 40);
      assert.ok(logged.sent >= MiB && logged.sent < BIG, `sent ${logged.sent}`);
      // The registry serves the same blob whole right after, and lets go of its file.
      const again = await fetch(`${registry.url}${path}`);
      assert.equal(again.status, 200);
      assert.equal(sha256(Buffer.from(await again.arrayBuffer())), bigDigest);
      assert.ok(Number.isFinite(await within(5_000, () => openBlobFiles(registry) === 0)));
    },
  );

  test('a manifest whose client does not read it is cut too', BOUNDED, async () => {
    // 12 MiB: more than loopback's socket buffers take at once, so the rest waits in the server.
    const image = await pushImage(registry.url, 'idle/manifest', 'base');
    const manifest = JSON.parse(image.bytes.toString());
    manifest.annotations = { padding: 'x'.repeat(12 * MiB) };
    const pushed = await pushManifest(registry.url, 'idle/manifest', 'big', manifest);
    assert.equal(pushed.response.status, 201, await pushed.response.text());
    const path = '/v2/idle/manifest/manifests/big';
    const socket = net.connect(port, '127.0.0.1');
    const stalled = await stallAfter(socket, path, 64 * 1024);
    assert.match(stalled.head, /^HTTP\/1\.1 200 /);
    const ms = await within(CUT_BY_MS, () => abandoned(registry).some((l) => l.includes(path)));
    assert.ok(ms <= CUT_BY_MS, `not cut within ${CUT_BY_MS} ms`);
    const got = await stalled.resume();
    assert.ok(got < pushed.bytes.length, `${got} bytes of ${pushed.bytes.length}`);
  });

  test('nothing else was abandoned: a finished response is watched no more', () => {
    assert.equal(abandoned(registry).length, 2, registry.output());
  });
});

describe('downloads whose client stops reading, over TLS (HTTP/2 and HTTP/1.1)', () => {
  let registry: TetherProcess;
  let port: number;
  let ca: Buffer;
  let cleanup: () => Promise<void>;
  const big = randomBytes(BIG);
  let bigDigest: string;
  let session: http2.ClientHttp2Session;
  before(async () => {
    ({ registry, ca, cleanup } = await spawnTlsTether('send-idle', ['--log-level', 'warn'], {
      TETHER_LIMITS_SEND_IDLE_SECONDS: String(IDLE_S),
    }));
    port = Number(registry.host.split(':')[1]);
    session = http2.connect(registry.url, { ca });
    bigDigest = await h2Push('idle/big', big);
  });
  after(async () => {
    session.close();
    await registry.stop();
    await cleanup();
  });

  /** Monolithic push over the session (fetch would need the CA in the environment). */
  async function h2Push(repo: string, bytes: Buffer): Promise<string> {
    const digest = sha256(bytes);
    const req = session.request({
      ':method': 'POST',
      ':path': `/v2/${repo}/blobs/uploads/?digest=${digest}`,
      'content-type': 'application/octet-stream',
      'content-length': bytes.length,
    });
    req.end(bytes);
    const [headers] = await Promise.all([
      new Promise<http2.IncomingHttpHeaders>((resolve) => req.once('response', resolve)),
      new Promise((resolve) => req.resume().once('end', resolve)),
    ]);
    assert.equal(headers[':status'], 201);
    return digest;
  }

  test(
    'an HTTP/2 client that slows to 32 KiB every 500 ms, far below 1 MiB per limit, is not cut',
    BOUNDED,
    async () => {
      // 512 KiB/s for the first 1.5 MiB, then 64 KiB/s for 640 KiB (~10 s, two limits). The first write
      // is a whole 1 MiB buffer, taken in ~2 s: slow, so the transfer goes on in pieces from 64 KiB up,
      // and the slow part shows progress every second or so. Left in 1 MiB writes, one would take 16 s.
      const fast = 1.5 * MiB;
      const blob = big.subarray(0, fast + 640 * 1024);
      const digest = await h2Push('idle/slow', blob);
      const req = session.request({ ':path': `/v2/idle/slow/blobs/${digest}` });
      const started = performance.now();
      const body = await readAtPace(req, (received) => (received < fast ? 256 * 1024 : 32 * 1024), 500);
      assert.equal(body.length, blob.length);
      assert.equal(sha256(body), digest);
      assert.ok(performance.now() - started > 1.5 * IDLE_S * 1000, 'the download outlasted the limit');
    },
  );

  test(
    'an HTTP/2 stream that stops being read is reset within the limit; its session goes on',
    BOUNDED,
    async () => {
      const path = `/v2/idle/big/blobs/${bigDigest}`;
      const req = session.request({ ':path': path });
      const status = await new Promise((resolve) => req.once('response', (h) => resolve(h[':status'])));
      assert.equal(status, 200);
      // Never read: the client's flow-control window stays closed, and nothing more can be sent.
      req.pause();
      const closed = new Promise<number>((resolve) => req.once('close', () => resolve(req.rstCode ?? -1)));
      req.on('error', () => {});
      await heldThenCut(registry);
      assert.equal(await closed, http2.constants.NGHTTP2_CANCEL, 'reset, not ended as if complete');
      assert.ok(registry.output().includes('response abandoned'), registry.output());
      // The same session pulls the same blob whole.
      const again = session.request({ ':path': path });
      const hash = createHash('sha256');
      again.on('data', (chunk: Buffer) => hash.update(chunk));
      await new Promise((resolve) => again.once('end', resolve));
      assert.equal(`sha256:${hash.digest('hex')}`, bigDigest);
    },
  );

  test('HTTP/1.1 over TLS: a download that stops being read is cut within the limit', BOUNDED, async () => {
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', ca, ALPNProtocols: ['http/1.1'] }, () => resolve(s));
      s.once('error', reject);
    });
    const stalled = await stallAfter(socket, `/v2/idle/big/blobs/${bigDigest}`, MiB);
    assert.match(stalled.head, /^HTTP\/1\.1 200 /);
    await heldThenCut(registry);
    assert.ok((await stalled.resume()) < BIG);
  });

  test('a manifest whose HTTP/2 client does not read it is reset too', BOUNDED, async () => {
    // 1 MiB: far more than an HTTP/2 stream's 64 KiB window, which the client does not open.
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [],
      annotations: { padding: 'x'.repeat(MiB) },
    });
    const put = session.request({
      ':method': 'PUT',
      ':path': '/v2/idle/index/manifests/big',
      'content-type': 'application/vnd.oci.image.index.v1+json',
    });
    put.end(manifest);
    const putStatus = await new Promise((resolve) => put.once('response', (h) => resolve(h[':status'])));
    put.resume();
    assert.equal(putStatus, 201);
    const req = session.request({ ':path': '/v2/idle/index/manifests/big' });
    req.pause();
    req.on('error', () => {});
    const started = performance.now();
    const code = await new Promise<number>((resolve) => req.once('close', () => resolve(req.rstCode ?? -1)));
    const ms = performance.now() - started;
    assert.equal(code, http2.constants.NGHTTP2_CANCEL);
    assert.ok(ms >= IDLE_S * 1000 - 250 && ms <= CUT_BY_MS, `reset after ${ms} ms`);
    // The warning reaches the server's output on its own schedule, after the reset.
    const logged = await within(5_000, () =>
      abandoned(registry).some((l) => l.includes('/v2/idle/index/manifests/big')),
    );
    assert.ok(logged < Number.POSITIVE_INFINITY, 'the cut is logged');
  });

  test('nothing else was abandoned: a finished response is watched no more', () => {
    assert.equal(abandoned(registry).length, 3, registry.output());
  });
});

describe('downloads from the in-memory store (the embedded default of startRegistry)', () => {
  test('a steady reader is not cut, and one that stops reading is', BOUNDED, async () => {
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
    const reg = await startRegistry({ settings: { 'limits.sendIdleSeconds': 2 }, logger });
    try {
      const blob = randomBytes(16 * MiB);
      const digest = await pushBlob(reg.url, 'idle/memory', blob);
      const [host, port] = [reg.host.split(':')[0], Number(reg.host.split(':')[1])];
      const path = `/v2/idle/memory/blobs/${digest}`;
      // 2 MiB/s: ~8 s for 16 MiB, four limits. Before the store reported its pieces, such a reader was
      // cut 2 s in, with nothing counted as sent.
      const steady = net.connect(port, host);
      steady.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const all = await readAtPace(steady, 256 * 1024, 125);
      const body = all.subarray(all.indexOf('\r\n\r\n') + 4);
      assert.equal(body.length, blob.length);
      assert.equal(sha256(body), digest);
      assert.equal(warnings.length, 0, warnings.join(''));
      const stalled = net.connect(port, host);
      const { resume } = await stallAfter(stalled, path, 64 * 1024);
      const cut = await within(CUT_BY_MS, () => warnings.some((w) => w.includes('response abandoned')));
      assert.ok(cut < Number.POSITIVE_INFINITY, 'the stalled download was cut');
      assert.ok((await resume()) < blob.length, 'the stalled client did not get the whole blob');
    } finally {
      await reg.close();
    }
  });
});

/**
 * A disk that stops answering, in this process: once `hangFrom` is set, every read of a file under
 * `under` at or past that offset is held, as a failing disk or unreachable network storage holds a
 * pread, until `release()` passes the held reads on to the file. `restore()` releases and puts the real
 * read back.
 */
async function hangingDisk(under: string) {
  const probe = await open(process.execPath);
  const proto = Object.getPrototypeOf(probe) as FileHandle;
  await probe.close();
  const real = proto.read;
  const held: Array<() => void> = [];
  const disk = {
    hangFrom: Number.POSITIVE_INFINITY,
    held: () => held.length,
    release: () => {
      for (const read of held.splice(0)) read();
    },
    restore: () => {
      proto.read = real;
      disk.release();
    },
  };
  proto.read = function (this: FileHandle, ...args: unknown[]) {
    const position = args[3];
    let hang = false;
    if (typeof position === 'number' && position >= disk.hangFrom) {
      try {
        hang = readlinkSync(`/proc/self/fd/${this.fd}`).startsWith(under);
      } catch {
        // Not a file we know of: read it.
      }
    }
    const read = () => Reflect.apply(real, this, args);
    if (!hang) return read();
    return new Promise((resolve, reject) => held.push(() => read().then(resolve, reject)));
  } as FileHandle['read'];
  return disk;
}

describe('a blob whose storage read stalls (in-process server, file store)', () => {
  test(
    "is cut within the limit and logged as a storage stall at error level, not as the client's; a client that stops reading is still the client's",
    BOUNDED,
    async () => {
      const idleS = 2;
      const data = await tempDataDir();
      const lines: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
      const reg = await startRegistry({
        storage: { data: data.dir },
        settings: { 'limits.sendIdleSeconds': idleS },
        logger,
      });
      const blobs = join(data.dir, 'blobs');
      const disk = await hangingDisk(blobs);
      const cuts = () => lines.filter((l) => l.includes('response abandoned')).map((l) => JSON.parse(l));
      try {
        const blob = randomBytes(32 * MiB);
        const digest = await pushBlob(reg.url, 'idle/disk', blob);
        const [host, port] = [reg.host.split(':')[0], Number(reg.host.split(':')[1])];
        const path = `/v2/idle/disk/blobs/${digest}`;

        // The disk answers the first MiB, then hangs; the client reads everything that comes.
        disk.hangFrom = MiB;
        const socket = net.connect(port, host);
        socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
        const chunks: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => chunks.push(chunk));
        socket.on('error', () => {});
        const closed = new Promise((resolve) => socket.once('close', resolve));
        const started = performance.now();
        const cut = await within(idleS * 1000 + 5_000, () => cuts().length > 0);
        assert.ok(cut < Number.POSITIVE_INFINITY, `not cut:\n${lines.join('')}`);
        const ms = performance.now() - started;
        assert.ok(ms >= idleS * 1000 - 250, `cut after ${ms} ms, before the ${idleS} s limit`);
        const [storage] = cuts();
        assert.equal(storage.level, 50, 'a storage stall is an error, not a warning');
        assert.match(storage.msg, /read of the blob from storage/);
        assert.doesNotMatch(storage.msg, /client/);
        assert.equal(storage.stalled, 'storage');
        assert.equal(storage.url, path);
        assert.equal(storage.sent, MiB, 'the client took all it was given');
        // The client gets the first MiB and the end of the connection, short of the blob.
        await closed;
        const all = Buffer.concat(chunks);
        const body = all.subarray(all.indexOf('\r\n\r\n') + 4);
        assert.match(all.subarray(0, 12).toString('latin1'), /^HTTP\/1\.1 200/);
        assert.equal(body.length, MiB);
        // The file stays open while its read is outstanding (a pread in progress cannot be cancelled),
        // and is closed once the disk answers.
        assert.ok(disk.held() > 0);
        assert.equal(openFilesUnder('self', blobs), 1);
        disk.release();
        disk.hangFrom = Number.POSITIVE_INFINITY;
        assert.ok(Number.isFinite(await within(5_000, () => openFilesUnder('self', blobs) === 0)));

        // A healthy disk and a client that stops reading: the client's stall, as before.
        const stalled = net.connect(port, host);
        const { resume } = await stallAfter(stalled, path, MiB);
        assert.ok(Number.isFinite(await within(idleS * 1000 + 5_000, () => cuts().length > 1)));
        const client = cuts()[1];
        assert.equal(client.level, 40);
        assert.match(client.msg, /the client took no bytes/);
        assert.equal(client.stalled, 'client');
        assert.ok(client.sent >= MiB && client.sent < blob.length, `sent ${client.sent}`);
        assert.ok((await resume()) < blob.length);
        assert.equal(cuts().length, 2, lines.join(''));
      } finally {
        disk.restore();
        await reg.close();
        await data.cleanup();
      }
    },
  );
});
