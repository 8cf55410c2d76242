import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { BodySink } from '../../src/client/body-sink.ts';
import { pourBody, send } from '../../src/client/transport.ts';

/** Response bodies from `send`: a web body read lazily, or poured into a sink with no adapters. */
describe('client transport bodies', () => {
  const payload = randomBytes(3 * 1024 * 1024 + 17);
  let server: http.Server;
  let base: string;
  const closedEarly: boolean[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      res.on('close', () => closedEarly.push(!res.writableFinished));
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
    test(`pourBody lends every byte of ${how} whose web body was never read`, async () => {
      const res = await send(new URL('/blob', base), { method: 'GET', download });
      const sink = collector();
      await pourBody(res, sink);
      assert.ok(sink.bytes().equals(payload));
    });

    test(`the web body of ${how} still reads every byte, through the usual Response methods`, async () => {
      const res = await send(new URL('/blob', base), { method: 'GET', download });
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(payload));
    });

    test(`${how} partly read through the web stream continues, without a gap, through pourBody`, async () => {
      const res = await send(new URL('/blob', base), { method: 'GET', download });
      const reader = res.body!.getReader();
      const first = await reader.read();
      assert.ok(!first.done && first.value.length > 0);
      reader.releaseLock();
      const sink = collector();
      await pourBody(res, sink);
      assert.ok(Buffer.concat([first.value, sink.bytes()]).equals(payload));
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
      await pourBody(res, sink);
      assert.ok(sink.bytes().equals(payload));
      assert.deepEqual(seen, ['Bearer t', undefined]);
    } finally {
      front.closeAllConnections();
      storage.closeAllConnections();
      await Promise.all([front, storage].map((s) => new Promise((r) => s.close(r))));
    }
  });

  for (const download of [false, true]) {
    test(`cancelling a body nobody read closes the connection (download: ${download})`, async () => {
      const before = closedEarly.length;
      const res = await send(new URL('/endless', base), { method: 'GET', download });
      await res.body!.cancel();
      for (let i = 0; i < 100 && closedEarly.length === before; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(closedEarly.slice(before), [true]);
    });
  }
});
