import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { startRegistry } from '../../src/server/start.ts';
import { sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

/**
 * Regression: an error answer queued behind a streamed blob response on the same keep-alive connection
 * was mistaken for a client abort (its response had no socket attached yet) and never sent.
 */
test('error responses queued behind streamed blobs on one keep-alive connection are all answered', async (t) => {
  const { dir, cleanup } = await tempDataDir();
  const reg = await startRegistry({ storage: { data: dir } });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(async () => {
    agent.destroy();
    await reg.close();
    await cleanup();
  });
  const port = Number(reg.host.split(':')[1]);
  const request = (method: string, path: string, body?: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method,
          path,
          agent,
          headers: body === undefined ? {} : { 'Content-Length': Buffer.byteLength(body) },
        },
        (res) => {
          let data = '';
          res.setEncoding('utf8');
          res.on('data', (c) => {
            data += c;
          });
          res.on('end', () => resolve({ status: res.statusCode!, body: data }));
        },
      );
      req.on('error', reject);
      req.setTimeout(5000, () => req.destroy(new Error(`no answer to ${method} ${path}`)));
      req.end(body);
    });
  for (let i = 0; i < 60; i++) {
    const data = `blob-${i}-${'-'.repeat(i * 7)}`;
    const digest = sha256(data);
    assert.equal((await request('POST', `/v2/ka/blobs/uploads/?digest=${digest}`, data)).status, 201);
    assert.equal((await request('GET', `/v2/ka/blobs/${digest}`)).body, data);
    assert.equal((await request('DELETE', `/v2/ka/manifests/sha256:${'0'.repeat(64)}`)).status, 404);
    assert.equal((await request('PUT', '/v2/ka/manifests/sha256:bad', '{}')).status, 400);
  }
});
