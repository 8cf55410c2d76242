/**
 * How the client tells that a port speaks the other protocol (src/client/tls-port.ts), against raw
 * servers that answer as the ones it meets do: a TLS alert, Go's 400, a registry's own 400, a plain port
 * asked over HTTPS.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { answeredAsTlsPort, notTlsReason, plainRequestMetTls } from '../../src/client/tls-port.ts';
import { send } from '../../src/client/transport.ts';

const OWN_ERROR = '{"errors":[{"code":"UNSUPPORTED"}]}';

/** What each raw server writes back to the first bytes it gets, then it closes the connection. */
const ANSWERS: Record<string, Buffer | string> = {
  // A TLS alert (fatal, unexpected_message), as OpenSSL-based servers send to a plain request.
  alert: Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x0a]),
  go: 'HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n',
  registry: `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${OWN_ERROR.length}\r\nConnection: close\r\n\r\n${OWN_ERROR}`,
  hangUp: '',
};

const servers: net.Server[] = [];
const ports: Record<string, number> = {};

before(async () => {
  for (const [name, answer] of Object.entries(ANSWERS)) {
    const server = net.createServer((socket) => {
      socket.once('data', () => socket.end(answer));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    ports[name] = (server.address() as net.AddressInfo).port;
    servers.push(server);
  }
  const plain = http.createServer((_req, res) => res.end());
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  ports.plain = (plain.address() as net.AddressInfo).port;
  servers.push(plain);
});

after(() => {
  for (const server of servers) server.close();
});

const get = (scheme: string, name: string, method = 'GET') =>
  send(new URL(`${scheme}://127.0.0.1:${ports[name]}/v2/`), { method });

async function failure(request: Promise<unknown>): Promise<unknown> {
  try {
    await request;
  } catch (err) {
    return err;
  }
  assert.fail('the request did not fail');
}

test('a plain request that meets a TLS alert or a hang-up may have met TLS; a refused connection has not', async () => {
  assert.equal(plainRequestMetTls(await failure(get('http', 'alert'))), true);
  assert.equal(plainRequestMetTls(await failure(get('http', 'hangUp'))), true);
  const refused = await failure(send(new URL('http://127.0.0.1:1/v2/'), { method: 'GET' }));
  assert.equal(plainRequestMetTls(refused), false);
});

test("Go's 400 says HTTPS, in a GET's body or as a HEAD's empty answer; a registry's JSON 400 does not", async () => {
  assert.equal(await answeredAsTlsPort(await get('http', 'go')), true);
  assert.equal(await answeredAsTlsPort(await get('http', 'go', 'HEAD')), true);
  const own = await get('http', 'registry');
  assert.equal(await answeredAsTlsPort(own), false);
  assert.equal(own.status, 400);
  assert.equal(await answeredAsTlsPort(await get('http', 'plain')), false);
});

test('HTTPS answered in plain HTTP is "not TLS", with OpenSSL\'s words', async () => {
  assert.match(
    notTlsReason(await failure(get('https', 'plain'))) ?? '',
    /wrong version number|packet length/i,
  );
  assert.equal(notTlsReason(await failure(get('https', 'hangUp'))), undefined);
});
