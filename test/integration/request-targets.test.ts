import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { pushImage } from '../helpers/oci.ts';

interface Raw {
  status: number;
  headers: string;
  body: string;
}

/** Sends `request` as written (no client normalises its target or headers) and reads until the close. */
function raw(host: string, request: string): Promise<Raw> {
  const [hostname, port] = host.split(':');
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname!);
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => {
      text += d;
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const end = text.indexOf('\r\n\r\n');
      resolve({
        status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0),
        headers: text.slice(0, end),
        body: text.slice(end + 4),
      });
    });
    socket.write(request);
  });
}

const get = (target: string, headers = 'Host: registry.test\r\n') =>
  `GET ${target} HTTP/1.1\r\n${headers}Connection: close\r\n\r\n`;

describe('request targets are routed as sent, never normalised', () => {
  let reg: RunningRegistry;
  before(async () => {
    reg = await startRegistry();
    await pushImage(reg.url, 'public/app', 'latest');
    await pushImage(reg.url, 'private/app', 'latest');
  });
  after(() => reg.close());

  test('targets a path-prefix proxy would read differently are refused with 400 JSON (audit-sec #7)', async () => {
    for (const target of [
      '//evil.example/v2/public/app/manifests/latest',
      '//evil.example:99/v2/_catalog',
      '/x/../v2/',
      '/v2/./_catalog',
      '/v2/private/%2e%2e/public/app/manifests/latest',
      '/v2/private/%2E%2E/public/app/manifests/latest',
      '/v2/private%2fapp/manifests/latest',
      '/v2/public/app/..%5cprivate/manifests/latest',
      '/v2/a\\..\\..\\b/manifests/x',
      '/v2/public//app/manifests/latest',
      '/v2/public/app/manifests/latest/.',
    ]) {
      const reply = await raw(reg.host, get(target));
      assert.equal(reply.status, 400, target);
      assert.match(reply.headers, /content-type: application\/json/i, target);
      assert.equal(JSON.parse(reply.body).errors[0].code, 'UNSUPPORTED', target);
    }
  });

  test('ordinary targets, the absolute form and an encoded colon still route', async () => {
    assert.equal((await raw(reg.host, get('/v2/'))).status, 200);
    assert.equal((await raw(reg.host, get('/v2/public/app/manifests/latest'))).status, 200);
    assert.equal((await raw(reg.host, get(`http://${reg.host}/v2/public/app/tags/list?n=5`))).status, 200);
    const digest = (await fetch(`${reg.url}/v2/public/app/manifests/latest`)).headers.get(
      'docker-content-digest',
    )!;
    const encoded = `/v2/public/app/manifests/${digest.replace(':', '%3A')}`;
    assert.equal((await raw(reg.host, get(encoded))).status, 200);
  });

  test('Host: missing or twice is 400 with error JSON; HTTP/1.0 needs none (audit-sec #10)', async () => {
    for (const headers of ['', 'Host: a\r\nHost: b\r\n', 'host: a\r\nHOST: a\r\n']) {
      const reply = await raw(reg.host, get('/v2/', headers));
      assert.equal(reply.status, 400, JSON.stringify(headers));
      assert.match(reply.headers, /content-length: \d+/i);
      assert.doesNotMatch(reply.headers, /transfer-encoding/i);
      assert.equal(JSON.parse(reply.body).errors[0].code, 'UNSUPPORTED');
    }
    const old = await raw(reg.host, 'GET /v2/ HTTP/1.0\r\n\r\n');
    assert.equal(old.status, 200);
  });
});
