import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http, { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { nodeBody, send } from '../../src/client/transport.ts';

/** Response bodies from `send`: a web body read lazily, or the Node stream behind it with no adapters. */
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

  async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(Buffer.from(chunk));
    return Buffer.concat(chunks);
  }

  test('nodeBody hands over the node:http stream itself when the web body was never read', async () => {
    const res = await send(new URL('/blob', base), { method: 'GET' });
    const body = nodeBody(res);
    assert.ok(body instanceof IncomingMessage);
    assert.ok((await collect(body)).equals(payload));
  });

  test('the web body still reads every byte, through the usual Response methods', async () => {
    const res = await send(new URL('/blob', base), { method: 'GET' });
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(payload));
  });

  test('a body partly read through the web stream continues, without a gap, through nodeBody', async () => {
    const res = await send(new URL('/blob', base), { method: 'GET' });
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.ok(!first.done && first.value.length > 0);
    reader.releaseLock();
    const body = nodeBody(res);
    assert.ok(!(body instanceof IncomingMessage));
    const rest = await collect(body);
    assert.ok(Buffer.concat([first.value, rest]).equals(payload));
  });

  test('cancelling a body nobody read closes the connection instead of downloading it', async () => {
    const before = closedEarly.length;
    const res = await send(new URL('/endless', base), { method: 'GET' });
    await res.body!.cancel();
    for (let i = 0; i < 100 && closedEarly.length === before; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(closedEarly.slice(before), [true]);
  });
});
