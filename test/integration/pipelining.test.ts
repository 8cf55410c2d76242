import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { pushBlob, pushImage, sha256 } from '../helpers/oci.ts';
import { openBlobFiles, spawnTether, type TetherProcess, tempDataDir } from '../helpers/tether-process.ts';

/**
 * HTTP/1.1 pipelining (RFC 9112 §9.3.2): a client may send requests without waiting for the answers
 * before them. The server answers them in order, and answers a request only once the one before it has
 * been answered: it does not open a queued blob's file, fill buffers for it or apply a change before its
 * turn. Before, every queued request ran at once: 300 pipelined blob GETs with nothing read held 300
 * files and ~320 MB, and a GET pipelined behind a PUT of the same manifest could run first.
 */

const MiB = 1024 * 1024;
const BOUNDED = { timeout: 60_000 };
/** The server's limits.bodyIdleSeconds: short, for the download pipelined behind an upload. */
const BODY_IDLE_S = 2;
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
}

/**
 * Reads HTTP/1.1 responses off a socket, one per call, in the order they come. Bodies are framed by
 * Content-Length (every Tether answer has one); `bodiless` is for answers to HEAD.
 */
class ResponseReader {
  #chunks: Buffer[] = [];
  #length = 0;
  #waiter: (() => void) | undefined;
  #closed = false;
  constructor(socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      this.#waiter?.();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#waiter?.();
    });
  }

  async #until(ready: () => boolean): Promise<void> {
    while (!ready()) {
      if (this.#closed) throw new Error('connection closed before the response was complete');
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
      });
      this.#waiter = undefined;
    }
  }

  /** The first `n` bytes received and not yet taken. */
  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = all.length > n ? [all.subarray(n)] : [];
    this.#length -= n;
    return all.subarray(0, n);
  }

  /** Where the head ends in what has been received, or -1. */
  #headEnd(): number {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0]?.indexOf('\r\n\r\n') ?? -1;
  }

  async next(bodiless = false): Promise<RawResponse> {
    await this.#until(() => this.#headEnd() >= 0);
    const head = this.#take(this.#headEnd() + 4).toString('latin1');
    const [statusLine, ...lines] = head.slice(0, -4).split('\r\n');
    const headers = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    assert.equal(headers.get('transfer-encoding'), undefined, 'every answer has a Content-Length');
    const length = bodiless ? 0 : Number(headers.get('content-length') ?? 0);
    await this.#until(() => this.#length >= length);
    return { status: Number(statusLine!.split(' ')[1]), headers, body: this.#take(length) };
  }
}

function request(method: string, path: string, body?: Buffer, contentType?: string): string | Buffer {
  const head = `${method} ${path} HTTP/1.1\r\nHost: x\r\n`;
  if (!body) return `${head}\r\n`;
  return Buffer.concat([
    Buffer.from(`${head}Content-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n\r\n`),
    body,
  ]);
}

async function connect(registry: TetherProcess): Promise<net.Socket> {
  const socket = net.connect(Number(registry.host.split(':')[1]), '127.0.0.1');
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

describe('HTTP/1.1 pipelining', () => {
  let registry: TetherProcess;
  let cleanup: () => Promise<void>;
  // Larger than loopback's socket buffers (up to 4 MiB sending and 6 MiB receiving) can hold.
  const big = randomBytes(32 * MiB);
  let bigDigest: string;
  before(async () => {
    const data = await tempDataDir();
    cleanup = data.cleanup;
    registry = await spawnTether(data.dir, ['--log-level', 'warn'], {
      TETHER_LIMITS_BODY_IDLE_SECONDS: String(BODY_IDLE_S),
    });
    bigDigest = await pushBlob(registry.url, 'pipe/big', big);
  });
  after(async () => {
    await registry.stop();
    await cleanup();
  });

  test('requests sent in one write are applied and answered in order', BOUNDED, async () => {
    const image = await pushImage(registry.url, 'pipe/order', 'base');
    const manifest = image.bytes;
    const type = 'application/vnd.oci.image.manifest.v1+json';
    const missing = sha256('not stored');
    const socket = await connect(registry);
    const responses = new ResponseReader(socket);
    try {
      // Each request after the PUT depends on the one before it having been applied.
      const steps: Array<[string | Buffer, number, boolean]> = [
        [request('PUT', '/v2/pipe/order/manifests/t1', manifest, type), 201, false],
        [request('HEAD', '/v2/pipe/order/manifests/t1'), 200, true],
        [request('GET', '/v2/pipe/order/manifests/t1'), 200, false],
        [request('GET', `/v2/pipe/big/blobs/${bigDigest}`), 200, false],
        [request('DELETE', '/v2/pipe/order/manifests/t1'), 202, false],
        [request('GET', '/v2/pipe/order/manifests/t1'), 404, false],
        [request('GET', `/v2/pipe/order/blobs/${missing}`), 404, false],
        [request('GET', `/v2/pipe/order/blobs/${image.layer}`), 200, false],
      ];
      socket.write(Buffer.concat(steps.map(([bytes]) => Buffer.from(bytes))));
      const got: RawResponse[] = [];
      for (const [, , bodiless] of steps) got.push(await responses.next(bodiless));
      assert.deepEqual(
        got.map((r) => r.status),
        steps.map(([, status]) => status),
      );
      assert.equal(got[1]!.headers.get('docker-content-digest'), image.digest);
      assert.deepEqual(got[2]!.body, manifest);
      assert.equal(sha256(got[3]!.body), bigDigest);
      assert.equal(JSON.parse(got[5]!.body.toString()).errors[0].code, 'MANIFEST_UNKNOWN');
      assert.equal(JSON.parse(got[6]!.body.toString()).errors[0].code, 'BLOB_UNKNOWN');
      assert.equal(sha256(got[7]!.body), image.layer);
    } finally {
      socket.destroy();
    }
  });

  test('a queued blob GET opens its file only when its turn comes', BOUNDED, async () => {
    const count = 12;
    const socket = await connect(registry);
    socket.pause();
    try {
      socket.write(request('GET', `/v2/pipe/big/blobs/${bigDigest}`).toString().repeat(count));
      // Nothing is read: the first answer fills the socket's buffers and waits. Give the server time to
      // (wrongly) start the others.
      await delay(1000);
      const open = openBlobFiles(registry);
      assert.ok(open <= 1, `${open} blob files open for one connection`);
      // Then every answer comes, whole and in order.
      const responses = new ResponseReader(socket);
      socket.resume();
      for (let i = 0; i < count; i++) {
        const response = await responses.next();
        assert.equal(response.status, 200);
        assert.equal(response.body.length, big.length, `answer ${i}`);
        assert.equal(sha256(response.body), bigDigest, `answer ${i}`);
      }
    } finally {
      socket.destroy();
    }
  });

  test('a client sending requests without reading the answers is not read on', BOUNDED, async () => {
    // Requests waiting for their turn write nothing, so Node's own brake (it stops reading a connection
    // whose unsent answers reach 64 KiB) needs them counted: without that, ~6 MB of these were parsed
    // faster than answered and the server ended at its heap limit.
    const socket = await connect(registry);
    socket.pause();
    socket.on('error', () => {});
    const requests = Buffer.from('GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(10_000));
    let written = 0;
    const until = performance.now() + 2000;
    try {
      while (performance.now() < until && !socket.destroyed) {
        written += requests.length;
        if (!socket.write(requests)) {
          await new Promise((resolve) => {
            socket.once('drain', resolve);
            setTimeout(resolve, until - performance.now()).unref();
          });
        }
      }
      assert.equal(registry.proc.exitCode, null, registry.output().slice(-2000));
      const res = await fetch(`${registry.url}/v2/`);
      assert.equal(res.status, 200);
      // The kernel's buffers take a few MB; the server stopped reading the rest.
      assert.ok(written < 64 * MiB, `${written} bytes of requests taken`);
    } finally {
      socket.destroy();
    }
  });

  test('a request still queued when its client leaves is not carried out', BOUNDED, async () => {
    const image = await pushImage(registry.url, 'pipe/left', 'base');
    const socket = await connect(registry);
    socket.pause();
    socket.write(
      Buffer.concat([
        Buffer.from(request('GET', `/v2/pipe/big/blobs/${bigDigest}`)),
        Buffer.from(
          request(
            'PUT',
            '/v2/pipe/left/manifests/late',
            image.bytes,
            'application/vnd.oci.image.manifest.v1+json',
          ),
        ),
      ]),
    );
    // The first answer (nothing read) does not fit the socket's buffers, so the PUT waits.
    await delay(1000);
    socket.destroy();
    await delay(500);
    const res = await fetch(`${registry.url}/v2/pipe/left/manifests/late`, { method: 'HEAD' });
    assert.equal(res.status, 404);
    assert.equal(openBlobFiles(registry), 0);
  });

  /** An upload session's path, for a PATCH written by hand. */
  const uploadPath = async (repo: string): Promise<string> => {
    const res = await fetch(`${registry.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(res.status, 202);
    return new URL(res.headers.get('location')!, registry.url).pathname;
  };

  test('a queued request whose body breaks the chunk rule is answered 400 in its turn', BOUNDED, async () => {
    const path = await uploadPath('pipe/refused');
    const socket = await connect(registry);
    socket.pause();
    // Listening from the start (paused, so nothing is read yet): a connection closed meanwhile fails the
    // test at once.
    const responses = new ResponseReader(socket);
    try {
      // 1500 chunks of 1 byte: refused past the first 1024 (incoming.ts), while the download before it
      // waits for its client. Before, the refusal destroyed the request and its connection: the download
      // was cut and the 400 never sent.
      socket.write(
        `GET /v2/pipe/big/blobs/${bigDigest} HTTP/1.1\r\nHost: x\r\n\r\n` +
          `PATCH ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n` +
          `Transfer-Encoding: chunked\r\n\r\n${'1\r\na\r\n'.repeat(1500)}0\r\n\r\n`,
      );
      await delay(1000);
      socket.resume();
      const download = await responses.next();
      assert.equal(download.status, 200);
      assert.equal(sha256(download.body), bigDigest);
      const refused = await responses.next();
      assert.equal(refused.status, 400);
      assert.equal(refused.headers.get('connection'), 'close');
      assert.match(JSON.parse(refused.body.toString()).errors[0].message, /chunks average under/);
    } finally {
      socket.destroy();
    }
  });

  test(
    "a download pipelined behind an upload is not cut by the upload's body-idle limit",
    BOUNDED,
    async () => {
      const path = await uploadPath('pipe/idle');
      const socket = await connect(registry);
      socket.pause();
      try {
        socket.write(
          `PATCH ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n` +
            `Content-Length: 5\r\n\r\nhello` +
            `GET /v2/pipe/big/blobs/${bigDigest} HTTP/1.1\r\nHost: x\r\n\r\n`,
        );
        // Nothing read for longer than the body-idle limit, well within the send-idle one (60 s). Before,
        // the idle timer the PATCH's body had set still ran for the download, and cut it.
        await delay(BODY_IDLE_S * 1000 + 2500);
        const responses = new ResponseReader(socket);
        socket.resume();
        assert.equal((await responses.next()).status, 202);
        const download = await responses.next();
        assert.equal(download.status, 200);
        assert.equal(sha256(download.body), bigDigest);
      } finally {
        socket.destroy();
      }
    },
  );

  test('a connection may have 32 requests waiting behind the one in progress', BOUNDED, async () => {
    const socket = await connect(registry);
    socket.pause();
    const responses = new ResponseReader(socket);
    try {
      socket.write(
        `GET /v2/pipe/big/blobs/${bigDigest} HTTP/1.1\r\nHost: x\r\n\r\n${'GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(32)}`,
      );
      await delay(500);
      socket.resume();
      assert.equal(sha256((await responses.next()).body), bigDigest);
      for (let i = 0; i < 32; i++) assert.equal((await responses.next()).status, 200);
    } finally {
      socket.destroy();
    }
  });

  test(
    'connections with more waiting are closed, and 30 of them do not end the server',
    BOUNDED,
    async () => {
      // One socket read (64 KiB) of `GET /v2/` is 2184 requests, all parsed before Node's brake can act,
      // each ~3 KB of heap while it waits; behind a download nobody reads they used to wait until the
      // send-idle limit, and 20 such connections ended the server at its 128 MB heap.
      const read = 'GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(2184);
      const sockets: net.Socket[] = [];
      try {
        for (let i = 0; i < 30; i++) {
          const socket = await connect(registry);
          socket.pause();
          socket.on('error', () => {});
          sockets.push(socket);
          socket.write(request('GET', `/v2/pipe/big/blobs/${bigDigest}`));
          await delay(30);
          socket.write(read);
        }
        await delay(1000);
        const ended = `the server ended (${registry.proc.signalCode ?? registry.proc.exitCode})`;
        assert.equal(registry.proc.signalCode, null, ended);
        assert.equal(registry.proc.exitCode, null, ended);
        assert.equal((await fetch(`${registry.url}/v2/`)).status, 200);
        assert.match(registry.output(), /connection closed: more than 32 pipelined requests waiting/);
      } finally {
        for (const socket of sockets) socket.destroy();
      }
    },
  );

  test('a request the parser refuses is answered after the answers owed before it', BOUNDED, async () => {
    // The download is in progress (its client not reading yet) when the bad request arrives: answered at
    // once, the 400 landed inside the blob's body.
    const socket = await connect(registry);
    socket.pause();
    socket.on('error', () => {});
    const responses = new ResponseReader(socket);
    try {
      socket.write(`${request('GET', `/v2/pipe/big/blobs/${bigDigest}`)}${request('GET', '/v2/')}`);
      await delay(300);
      socket.write('NOT HTTP AT ALL\r\n\r\n');
      await delay(300);
      socket.resume();
      const download = await responses.next();
      assert.equal(download.status, 200);
      assert.equal(sha256(download.body), bigDigest);
      assert.equal((await responses.next()).status, 200);
      const refused = await responses.next();
      assert.equal(refused.status, 400);
      assert.equal(JSON.parse(refused.body.toString()).errors[0].code, 'UNSUPPORTED');
      assert.equal(refused.headers.get('connection'), 'close');
    } finally {
      socket.destroy();
    }
  });
});

describe('HTTP/1.1 pipelining, stopping', () => {
  test(
    'a stopping server answers the request in progress and not those pipelined behind it',
    BOUNDED,
    async () => {
      const data = await tempDataDir();
      const registry = await spawnTether(data.dir, ['--log-level', 'warn']);
      try {
        const blob = randomBytes(8 * MiB);
        const digest = await pushBlob(registry.url, 'pipe/stop', blob);
        const socket = await connect(registry);
        socket.pause();
        socket.on('error', () => {});
        const closed = new Promise((resolve) => socket.once('close', resolve));
        const responses = new ResponseReader(socket);
        socket.write(request('GET', `/v2/pipe/stop/blobs/${digest}`).toString().repeat(3));
        // The first download is in progress (its client not reading yet) when the server is told to stop.
        await delay(300);
        const stopped = registry.stop();
        await delay(300);
        socket.resume();
        const first = await responses.next();
        assert.equal(first.status, 200);
        assert.equal(sha256(first.body), digest);
        await closed;
        await assert.rejects(responses.next(), /connection closed before the response was complete/);
        assert.equal(await stopped, 0);
      } finally {
        if (registry.proc.exitCode === null) await registry.stop();
        await data.cleanup();
      }
    },
  );
});
