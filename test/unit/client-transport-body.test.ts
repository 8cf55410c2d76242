import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { BodySink } from '../../src/client/body-sink.ts';
import { ClientError } from '../../src/client/errors.ts';
import { send } from '../../src/client/transport.ts';

/** Response bodies from `send`: read into memory once, poured into a sink, or discarded. */
describe('client transport bodies', () => {
  const payload = randomBytes(3 * 1024 * 1024 + 17);
  let server: http.Server;
  let base: string;
  const closedEarly: boolean[] = [];
  let connections = 0;

  before(async () => {
    server = http.createServer((req, res) => {
      res.on('close', () => closedEarly.push(!res.writableFinished));
      if (req.url === '/small') {
        res.writeHead(404, { 'Content-Type': 'application/json', 'Content-Length': '17' });
        res.end('{"errors":["no"]}');
        return;
      }
      if (req.url === '/endless') {
        // Far more than any socket buffer, so only a client that reads to the end lets it finish.
        res.writeHead(200, { 'Content-Length': String(64 * payload.length) });
        const more = () => {
          while (!res.destroyed && res.write(payload));
        };
        res.on('drain', more);
        more();
        return;
      }
      res.writeHead(200, { 'Content-Length': String(payload.length) });
      res.end(payload);
    });
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** A sink that keeps copies of what it is lent, counting the calls. */
  function collector(): BodySink & { bytes: () => Buffer; calls: number } {
    const chunks: Buffer[] = [];
    return {
      calls: 0,
      write(chunk) {
        this.calls++;
        chunks.push(Buffer.from(chunk));
      },
      bytes: () => Buffer.concat(chunks),
    };
  }

  for (const download of [false, true]) {
    const how = download ? 'a download' : 'a node:http response';
    test(`pour lends every byte of ${how}, once`, async () => {
      const res = await send(new URL('/blob', base), { method: 'GET', download });
      const sink = collector();
      await res.pour(sink);
      assert.ok(sink.bytes().equals(payload));
      await assert.rejects(res.bytes(), /already read/);
      await assert.rejects(res.pour(collector()), /already read/);
      await res.discard();
    });

    test(`bytes reads every byte of ${how} once; later reads answer the same bytes`, async () => {
      const res = await send(new URL('/blob', base), { method: 'GET', download });
      const first = await res.bytes();
      assert.ok(first.equals(payload));
      assert.equal(await res.bytes(), first);
      await res.discard();
      await assert.rejects(res.pour(collector()), /already read/);
    });

    test(`bytes refuses ${how} larger than its limit and closes the connection`, async () => {
      const before = closedEarly.length;
      const res = await send(new URL('/endless', base), { method: 'GET', download });
      await assert.rejects(
        res.bytes(1024 * 1024, 'the test body'),
        (err: unknown) =>
          err instanceof ClientError && /the test body is larger than 1048576 bytes/.test(err.message),
      );
      await closed(before);
    });
  }

  test("a download follows a redirect to another origin without the registry's credentials", async () => {
    const seen: (string | undefined)[] = [];
    const storage = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { 'Content-Length': String(payload.length) });
      res.end(payload);
    });
    await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
    const to = `http://127.0.0.1:${(storage.address() as AddressInfo).port}/signed?x=1`;
    const front = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(307, { Location: to, 'Content-Length': '0' });
      res.end();
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    try {
      const url = new URL(`http://127.0.0.1:${(front.address() as AddressInfo).port}/v2/r/blobs/x`);
      const res = await send(url, { method: 'GET', download: true, headers: { Authorization: 'Bearer t' } });
      assert.equal(res.status, 200);
      const sink = collector();
      await res.pour(sink);
      assert.ok(sink.bytes().equals(payload));
      assert.deepEqual(seen, ['Bearer t', undefined]);
    } finally {
      front.closeAllConnections();
      storage.closeAllConnections();
      await Promise.all([front, storage].map((s) => new Promise((r) => s.close(r))));
    }
  });

  /** Waits until the server saw one more response closed before it finished. */
  async function closed(before: number) {
    for (let i = 0; i < 100 && closedEarly.length === before; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(closedEarly.slice(before), [true]);
  }

  for (const download of [false, true]) {
    test(`discarding a long body nobody read closes the connection (download: ${download})`, async () => {
      const before = closedEarly.length;
      const res = await send(new URL('/endless', base), { method: 'GET', download });
      await res.discard();
      await closed(before);
    });
  }

  test('discarding a short body reads it, so its kept-alive connection serves the next request', async () => {
    const res = await send(new URL('/small', base), { method: 'GET' });
    assert.equal(res.status, 404);
    await res.discard();
    const before = connections;
    for (let i = 0; i < 3; i++) {
      const next = await send(new URL('/small', base), { method: 'GET' });
      assert.deepEqual(await next.json(), { errors: ['no'] });
    }
    assert.equal(connections, before);
  });
});
