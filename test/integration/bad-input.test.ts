import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as rawRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { pushBlob, pushImage, pushManifest, sha256 } from '../helpers/oci.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function expectError(res: Response, status: number, code: string, where = '') {
  const text = await res.text();
  assert.equal(res.status, status, `${where} ${text}`);
  if (res.headers.get('content-length') !== '0') {
    const body = JSON.parse(text) as { errors: { code: string; message: string }[] };
    assert.equal(body.errors[0]!.code, code, where);
    assert.equal(typeof body.errors[0]!.message, 'string');
  }
  assert.equal(res.headers.get('content-type'), 'application/json');
}

/** Sends a path byte-for-byte (fetch would normalise `..` away). */
function rawGet(base: string, path: string): Promise<{ status: number; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = rawRequest({ host: url.hostname, port: url.port, path, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('bad input gets spec errors, never a 5xx, and never touches stored data', () => {
  let reg: RunningRegistry;
  let image: Awaited<ReturnType<typeof pushImage>>;
  before(async () => {
    reg = await startRegistry();
    image = await pushImage(reg.url, 'good/repo', 'v1', 'precious layer');
  });
  after(async () => {
    // After every abuse, the good content is intact.
    const m = await fetch(`${reg.url}/v2/good/repo/manifests/v1`);
    assert.equal(m.status, 200);
    assert.ok(Buffer.from(await m.arrayBuffer()).equals(image.bytes));
    assert.equal(
      await (await fetch(`${reg.url}/v2/good/repo/blobs/${image.layer}`)).text(),
      'precious layer',
    );
    await reg.close();
  });

  const put = (ref: string, body: string, type = OCI_MANIFEST, repo = 'good/repo') =>
    fetch(`${reg.url}/v2/${repo}/manifests/${ref}`, {
      method: 'PUT',
      body,
      headers: { 'Content-Type': type },
    });
  const manifestWith = (over: Record<string, unknown>) =>
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: image.config, size: 78 },
      layers: [],
      ...over,
    });

  test('malformed manifests: 400 MANIFEST_INVALID', async () => {
    const cases: [string, string][] = [
      ['not json', '{"schemaVersion":'],
      ['array', '[]'],
      ['schemaVersion 1', manifestWith({ schemaVersion: 1 })],
      ['layers not a list', manifestWith({ layers: {} })],
      ['negative size', manifestWith({ layers: [{ mediaType: 'a/b', digest: image.layer, size: -1 }] })],
      ['fractional size', manifestWith({ layers: [{ mediaType: 'a/b', digest: image.layer, size: 1.5 }] })],
      ['bad digest', manifestWith({ layers: [{ mediaType: 'a/b', digest: 'sha256:xyz', size: 1 }] })],
      [
        'bad media type',
        manifestWith({ layers: [{ mediaType: 'not a type', digest: image.layer, size: 1 }] }),
      ],
      ['annotations not strings', manifestWith({ annotations: { a: 1 } })],
      ['invalid UTF-8', '\u00ff'],
      // audit-sec #8: what Go clients read differently, or not at all.
      ['byte order mark', `\ufeff${manifestWith({})}`],
      ['layers twice', manifestWith({}).replace(/}$/, ',"layers":[]}')],
      ['size 78.0', manifestWith({}).replace('"size":78', '"size":78.0')],
      ['size 7.8e1', manifestWith({}).replace('"size":78', '"size":7.8e1')],
      // audit-sec #5: refused before JSON.parse spends seconds building it.
      ['deep nesting', `{"a":${'['.repeat(2_000_000)}${']'.repeat(2_000_000)}}`],
      ['a million objects', `{"a":[${'{},'.repeat(1_000_000)}{}]}`],
    ];
    for (const [label, body] of cases) {
      const bytes = label === 'invalid UTF-8' ? Buffer.from([0x7b, 0xff, 0x7d]) : body;
      const res = await fetch(`${reg.url}/v2/good/repo/manifests/bad`, {
        method: 'PUT',
        body: bytes,
        headers: { 'Content-Type': OCI_MANIFEST },
      });
      await expectError(res, 400, 'MANIFEST_INVALID', label);
    }
    await expectError(
      await put('bad', manifestWith({}), 'application/vnd.oci.image.index.v1+json'),
      400,
      'MANIFEST_INVALID',
      'type mismatch',
    );
    await expectError(
      await put(
        'bad',
        manifestWith({ mediaType: 'application/vnd.docker.distribution.manifest.v1+prettyjws' }),
        'application/vnd.docker.distribution.manifest.v1+prettyjws',
      ),
      400,
      'MANIFEST_INVALID',
      'schema1',
    );
  });

  test('missing references: 400 MANIFEST_BLOB_UNKNOWN naming each digest', async () => {
    const missing = sha256('never uploaded');
    const res = await put('bad', manifestWith({ layers: [{ mediaType: 'a/b', digest: missing, size: 14 }] }));
    const body = (await res.json()) as { errors: { code: string; detail: { digest: string } }[] };
    assert.equal(res.status, 400);
    assert.deepEqual(
      body.errors.map((e) => [e.code, e.detail.digest]),
      [['MANIFEST_BLOB_UNKNOWN', missing]],
    );
    // Many: the first 100 by digest, the rest counted in one more error (not a body of every digest).
    const layers = Array.from({ length: 250 }, (_, i) => ({
      mediaType: 'a/b',
      digest: sha256(`gone ${i}`),
      size: 1,
    }));
    const many = await put('bad', manifestWith({ layers }));
    assert.equal(many.status, 400);
    const errors = ((await many.json()) as { errors: { code: string; message: string; detail: object }[] })
      .errors;
    assert.equal(errors.length, 101);
    assert.ok(errors.every((e) => e.code === 'MANIFEST_BLOB_UNKNOWN'));
    assert.deepEqual(errors[100]!.detail, { unlisted: 150 });
    assert.match(errors[100]!.message, /and 150 more/);
  });

  test('oversized manifest: 413', async () => {
    const huge = manifestWith({ annotations: { big: 'x'.repeat(4 * 1024 * 1024 + 10) } });
    const res = await put('big', huge);
    assert.equal(res.status, 413);
  });

  test('invalid repository names: 400 NAME_INVALID; traversal attempts never escape', async () => {
    for (const name of ['UPPER/case', '-lead', 'trail-', 'x'.repeat(300)]) {
      await expectError(await fetch(`${reg.url}/v2/${name}/tags/list`), 400, 'NAME_INVALID', name);
    }
    // An empty segment or an encoded slash is refused before routing (request-targets.test.ts).
    for (const name of ['a//b', 'a%2F..%2Fb']) {
      await expectError(await fetch(`${reg.url}/v2/${name}/tags/list`), 400, 'UNSUPPORTED', name);
    }
    for (const path of [
      '/v2/a/../b/tags/list',
      '/v2/%2e%2e/etc/tags/list',
      '/v2/../../etc/passwd/blobs/sha256:00',
      '/v2/good/repo/blobs/..%2F..%2Fetc%2Fpasswd',
      '/v2/good/repo/blobs/sha256:..%2F..%2F..',
    ]) {
      const res = await rawGet(reg.url, path);
      assert.ok([400, 404].includes(res.status), `${path}: ${res.status}`);
      assert.doesNotMatch(res.body, /root:/);
    }
  });

  test('invalid digests: 400 DIGEST_INVALID on blobs and upload completion; a mount falls back to an upload', async () => {
    for (const digest of [
      'sha256:abc',
      'sha256:' + 'A'.repeat(64),
      'md5:' + 'a'.repeat(32),
      'sha512:' + 'a'.repeat(64),
    ]) {
      await expectError(
        await fetch(`${reg.url}/v2/good/repo/blobs/${digest}`),
        400,
        'DIGEST_INVALID',
        digest,
      );
      await expectError(
        await fetch(`${reg.url}/v2/good/repo/blobs/${digest}`, { method: 'DELETE' }),
        400,
        'DIGEST_INVALID',
        digest,
      );
      // A mount that cannot be done answers as a plain POST (spec; Distribution does the same).
      const mount = await fetch(`${reg.url}/v2/good/repo/blobs/uploads/?mount=${digest}&from=good/repo`, {
        method: 'POST',
      });
      assert.equal(mount.status, 202, digest);
      assert.match(mount.headers.get('location') ?? '', /^\/v2\/good\/repo\/blobs\/uploads\/[0-9a-f-]+$/);
    }
    const start = await fetch(`${reg.url}/v2/good/repo/blobs/uploads/`, { method: 'POST' });
    const location = start.headers.get('location')!;
    await expectError(
      await fetch(`${reg.url}${location}`, { method: 'PUT' }),
      400,
      'DIGEST_INVALID',
      'no digest',
    );
    await expectError(
      await fetch(`${reg.url}${location}?digest=sha256:nope`, { method: 'PUT' }),
      400,
      'DIGEST_INVALID',
      'bad digest',
    );
    await expectError(
      await fetch(`${reg.url}${location}?digest=${sha256('something else')}`, {
        method: 'PUT',
        body: 'data',
      }),
      400,
      'DIGEST_INVALID',
      'mismatch',
    );
    await expectError(
      await fetch(`${reg.url}/v2/good/repo/blobs/uploads/?digest-algorithm=md5`, { method: 'POST' }),
      400,
      'DIGEST_INVALID',
    );
  });

  test('chunk errors: malformed Content-Range 400, out of order 416 with the current Range', async () => {
    const start = await fetch(`${reg.url}/v2/good/repo/blobs/uploads/`, { method: 'POST' });
    const location = start.headers.get('location')!;
    await expectError(
      await fetch(`${reg.url}${location}`, {
        method: 'PATCH',
        body: 'abc',
        headers: { 'Content-Range': 'abc' },
      }),
      400,
      'BLOB_UPLOAD_INVALID',
    );
    const ooo = await fetch(`${reg.url}${location}`, {
      method: 'PATCH',
      body: 'abc',
      headers: { 'Content-Range': '5-7' },
    });
    assert.equal(ooo.status, 416);
    assert.equal(ooo.headers.get('range'), '0-0');
    const wrongLength = await fetch(`${reg.url}${location}`, {
      method: 'PATCH',
      body: 'abcd',
      headers: { 'Content-Range': '0-2' },
    });
    assert.equal(wrongLength.status, 400);
    const status = await fetch(`${reg.url}${location}`);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-0', 'nothing from the failed chunks was kept');
  });

  test('unknown sessions: 404 BLOB_UPLOAD_UNKNOWN, also for a session of another repository', async () => {
    const start = await fetch(`${reg.url}/v2/good/repo/blobs/uploads/`, { method: 'POST' });
    const id = start.headers.get('location')!.split('/').at(-1);
    await expectError(
      await fetch(`${reg.url}/v2/other/repo/blobs/uploads/${id}`),
      404,
      'BLOB_UPLOAD_UNKNOWN',
    );
    await expectError(
      await fetch(`${reg.url}/v2/good/repo/blobs/uploads/00000000-0000-0000-0000-000000000000`),
      404,
      'BLOB_UPLOAD_UNKNOWN',
    );
    await expectError(
      await fetch(`${reg.url}/v2/good/repo/blobs/uploads/not-a-uuid`, { method: 'PATCH', body: 'x' }),
      404,
      'BLOB_UPLOAD_UNKNOWN',
    );
  });

  test('ranges: exact 206 for every satisfiable form, 416 with bytes */size and an error body otherwise', async () => {
    const data = Buffer.from(Array.from({ length: 2048 }, (_, i) => i % 256));
    const digest = await pushBlob(reg.url, 'good/repo', data);
    const get = (range: string) =>
      fetch(`${reg.url}/v2/good/repo/blobs/${digest}`, { headers: { Range: range } });
    for (const [range, start, end] of [
      ['bytes=500-1499', 500, 1499],
      ['bytes=500-', 500, 2047],
      ['bytes=-500', 1548, 2047],
      ['bytes=2000-5000', 2000, 2047],
    ] as const) {
      const res = await get(range);
      assert.equal(res.status, 206, range);
      assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/2048`);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(data.subarray(start, end + 1)), range);
    }
    for (const range of ['bytes=5000-10000', 'bytes=2048-', 'bytes=-0', 'bytes=500-0']) {
      const res = await get(range);
      assert.equal(res.status, 416, range);
      assert.equal(res.headers.get('content-range'), 'bytes */2048');
      // An OCI error body like every other refusal, with its exact length.
      assert.equal(res.headers.get('content-type'), 'application/json', range);
      const body = (await res.json()) as { errors: { code: string }[] };
      assert.equal(body.errors[0]!.code, 'UNSUPPORTED', range);
    }
    assert.equal((await get('bytes=0-1,5-6')).status, 200, 'several ranges: the whole blob');
    // If-Range: the range holds only for this blob's own ETag; any other validator gets the whole blob.
    const ifRange = (validator: string) =>
      fetch(`${reg.url}/v2/good/repo/blobs/${digest}`, {
        headers: { Range: 'bytes=0-9', 'If-Range': validator },
      });
    assert.equal((await ifRange(`"${digest}"`)).status, 206);
    for (const validator of [`"${sha256('other')}"`, 'Wed, 21 Oct 2015 07:28:00 GMT']) {
      const res = await ifRange(validator);
      assert.equal(res.status, 200, validator);
      assert.equal((await res.arrayBuffer()).byteLength, 2048, validator);
    }
  });

  test('answers without a body: 204 and 304 carry no Content-Length, 304 no Content-Type', async () => {
    const start = await fetch(`${reg.url}/v2/good/repo/blobs/uploads/`, { method: 'POST' });
    const location = start.headers.get('location')!;
    for (const method of ['GET', 'HEAD']) {
      const status = await fetch(`${reg.url}${location}`, { method });
      assert.equal(status.status, 204, method);
      assert.equal(status.headers.get('range'), '0-0', method);
      assert.equal(status.headers.get('content-length'), null, method);
    }
    const manifest = await fetch(`${reg.url}/v2/good/repo/manifests/${image.digest}`, {
      headers: { 'If-None-Match': `"${image.digest}"` },
    });
    const blob = await fetch(`${reg.url}/v2/good/repo/blobs/${image.layer}`, {
      headers: { 'If-None-Match': `"${image.layer}"` },
    });
    const referrers = await fetch(`${reg.url}/v2/good/repo/referrers/${image.digest}`);
    const unchanged = await fetch(`${reg.url}/v2/good/repo/referrers/${image.digest}`, {
      headers: { 'If-None-Match': referrers.headers.get('etag')! },
    });
    for (const [what, res, etag] of [
      ['manifest', manifest, `"${image.digest}"`],
      ['blob', blob, `"${image.layer}"`],
      ['referrers', unchanged, referrers.headers.get('etag')],
    ] as const) {
      assert.equal(res.status, 304, what);
      assert.equal(res.headers.get('etag'), etag, what);
      assert.equal(res.headers.get('content-length'), null, what);
      assert.equal(res.headers.get('content-type'), null, what);
    }
    const cancel = await fetch(`${reg.url}${location}`, { method: 'DELETE' });
    assert.equal(cancel.status, 204);
    assert.equal(cancel.headers.get('content-length'), null);
  });

  test('an empty artifactType filters nothing; a manifest DELETE in an unknown repository is NAME_UNKNOWN', async () => {
    const res = await fetch(`${reg.url}/v2/good/repo/referrers/${image.digest}?artifactType=`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('oci-filters-applied'), null);
    await expectError(
      await fetch(`${reg.url}/v2/no/such/repo/manifests/${image.digest}`, { method: 'DELETE' }),
      404,
      'NAME_UNKNOWN',
    );
    await expectError(
      await fetch(`${reg.url}/v2/no/such/repo/manifests/latest`, { method: 'DELETE' }),
      404,
      'NAME_UNKNOWN',
    );
    await expectError(
      await fetch(`${reg.url}/v2/good/repo/manifests/${sha256('never pushed')}`, { method: 'DELETE' }),
      404,
      'MANIFEST_UNKNOWN',
    );
  });

  test('referrers filters: at most 16 of each kind (repeats count once), more is 400', async () => {
    const at = `${reg.url}/v2/good/repo/referrers/${image.digest}`;
    const annotations = (n: number) => Array.from({ length: n }, (_, i) => `annotation=k${i}%3Dv`).join('&');
    const types = (n: number) =>
      Array.from({ length: n }, (_, i) => `artifactType=application/x.t${i}`).join('&');
    assert.equal((await fetch(`${at}?${annotations(16)}`)).status, 200);
    assert.equal((await fetch(`${at}?${types(16)}&${types(16)}`)).status, 200, 'repeats count once');
    for (const query of [annotations(17), types(17), annotations(200)]) {
      const res = await fetch(`${at}?${query}`);
      await expectError(res, 400, 'UNSUPPORTED');
    }
    const res = await fetch(`${at}?${annotations(200)}`);
    assert.match(
      ((await res.json()) as { errors: { message: string }[] }).errors[0]!.message,
      /at most 16 annotation/,
    );
  });

  test('routing errors: 404 JSON for unknown endpoints, 405 with Allow for wrong methods', async () => {
    // Not NAME_UNKNOWN: the repository may well exist; the path does not.
    await expectError(await fetch(`${reg.url}/v2/good/repo/nothing-here`), 404, 'UNSUPPORTED');
    await expectError(await fetch(`${reg.url}/v2/good/repo/manifests/latest/`), 404, 'UNSUPPORTED');
    const res = await fetch(`${reg.url}/v2/good/repo/tags/list`, { method: 'DELETE' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'GET, HEAD');
  });

  test('tag list paging: n=abc 400, huge n clamped, n=0 empty without Link, last excludes itself', async () => {
    for (const tag of ['a', 'b', 'c'])
      await pushManifest(reg.url, 'paging', tag, manifestWith({}).replace(image.config, image.config));
    await pushBlob(reg.url, 'paging', '{}');
    await expectError(await fetch(`${reg.url}/v2/good/repo/tags/list?n=abc`), 400, 'UNSUPPORTED');
    for (const n of ['100000', '1000000000000', '9223372036854775807', '9'.repeat(40)]) {
      assert.equal((await fetch(`${reg.url}/v2/good/repo/tags/list?n=${n}`)).status, 200, `n=${n}`);
      assert.equal((await fetch(`${reg.url}/v2/_catalog?n=${n}`)).status, 200, `n=${n}`);
    }
    const zero = await fetch(`${reg.url}/v2/good/repo/tags/list?n=0`);
    assert.deepEqual(((await zero.json()) as { tags: string[] }).tags, []);
    assert.equal(zero.headers.get('link'), null);
  });

  test('sha512 everywhere: POST, PATCH+PUT and manifests by sha512 digest', async () => {
    const data = 'sha512 content';
    const digest = `sha512:${createHash('sha512').update(data).digest('hex')}`;
    assert.equal(
      (await fetch(`${reg.url}/v2/good/s512/blobs/uploads/?digest=${digest}`, { method: 'POST', body: data }))
        .status,
      201,
    );
    const start = await fetch(`${reg.url}/v2/good/s512/blobs/uploads/?digest-algorithm=sha512`, {
      method: 'POST',
    });
    const loc = start.headers.get('location')!;
    await fetch(`${reg.url}${loc}`, { method: 'PATCH', body: data });
    assert.equal((await fetch(`${reg.url}${loc}?digest=${digest}`, { method: 'PUT' })).status, 201);
    const body = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [],
    });
    const md = `sha512:${createHash('sha512').update(body).digest('hex')}`;
    const res = await put(md, body, 'application/vnd.oci.image.index.v1+json', 'good/s512');
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('docker-content-digest'), md);
  });

  test('headers: Docker media types as-is, no charset, exact HEAD, any Accept, 0-byte blobs', async () => {
    const cfg = await pushBlob(reg.url, 'good/docker', '{"os":"linux"}');
    const docker = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: cfg, size: 14 },
      layers: [],
    });
    assert.equal(
      (await put('d', docker, 'application/vnd.docker.distribution.manifest.v2+json', 'good/docker')).status,
      201,
    );
    for (const accept of [
      'application/json',
      '*/*',
      'text/html',
      'application/vnd.oci.image.index.v1+json',
    ]) {
      const res = await fetch(`${reg.url}/v2/good/docker/manifests/d`, { headers: { Accept: accept } });
      assert.equal(res.status, 200, accept);
      assert.equal(res.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json');
    }
    const head = await fetch(`${reg.url}/v2/good/docker/manifests/d`, { method: 'HEAD' });
    assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(docker)));
    assert.equal(head.headers.get('docker-content-digest'), sha256(docker));
    const empty = await pushBlob(reg.url, 'good/docker', '');
    const eh = await fetch(`${reg.url}/v2/good/docker/blobs/${empty}`);
    assert.equal(eh.status, 200);
    assert.equal(eh.headers.get('content-length'), '0');
    // Manifests without mediaType take it from Content-Type.
    const bare = JSON.stringify({
      schemaVersion: 2,
      config: { mediaType: 'a/b', digest: cfg, size: 14 },
      layers: [],
    });
    assert.equal((await put('bare', bare, OCI_MANIFEST, 'good/docker')).status, 201);
    assert.equal(
      (await fetch(`${reg.url}/v2/good/docker/manifests/bare`)).headers.get('content-type'),
      OCI_MANIFEST,
    );
  });
});

test('deletes can be disabled: 405 UNSUPPORTED for manifests, tags and blobs', async (t) => {
  const reg = await startRegistry({ settings: { 'delete.enabled': false } });
  t.after(() => reg.close());
  const image = await pushImage(reg.url, 'nodelete', 'v1');
  for (const path of [`manifests/${image.digest}`, 'manifests/v1', `blobs/${image.layer}`]) {
    await expectError(
      await fetch(`${reg.url}/v2/nodelete/${path}`, { method: 'DELETE' }),
      405,
      'UNSUPPORTED',
      path,
    );
  }
  assert.equal((await fetch(`${reg.url}/v2/nodelete/manifests/v1`)).status, 200);
});

describe('descriptor sizes must be the sizes the registry stores', () => {
  const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
  const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
  let reg: RunningRegistry;
  let image: Awaited<ReturnType<typeof pushImage>>;
  let configSize: number;
  before(async () => {
    reg = await startRegistry();
    image = await pushImage(reg.url, 'sizes', 'v1', 'ten bytes!');
    configSize = (JSON.parse(image.bytes.toString()) as { config: { size: number } }).config.size;
  });
  after(() => reg.close());

  type Refusal = { code: string; message: string; detail: Record<string, unknown> };
  const imageWith = (config: number, layers: { digest: string; size: number; [k: string]: unknown }[]) => ({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: image.config, size: config },
    layers: layers.map((l) => ({ mediaType: LAYER, ...l })),
  });

  /** PUTs `manifest` under `tag`, expects a 400 and returns its errors, having checked nothing was stored. */
  async function refused(manifest: object, tag: string, type = OCI_MANIFEST): Promise<Refusal[]> {
    const pushed = await pushManifest(reg.url, 'sizes', tag, manifest, type);
    const text = await pushed.response.text();
    assert.equal(pushed.response.status, 400, text);
    assert.equal(pushed.response.headers.get('content-type'), 'application/json');
    for (const reference of [tag, pushed.digest]) {
      const res = await fetch(`${reg.url}/v2/sizes/manifests/${reference}`, { headers: { Accept: type } });
      assert.equal(res.status, 404, `${reference} was stored`);
    }
    return (JSON.parse(text) as { errors: Refusal[] }).errors;
  }

  test('a layer of the wrong size: 400 MANIFEST_INVALID naming it, declared and stored size; nothing stored', async () => {
    const errors = await refused(imageWith(configSize, [{ digest: image.layer, size: 999 }]), 'wrong-layer');
    assert.deepEqual(
      errors.map((e) => [e.code, e.detail]),
      [['MANIFEST_INVALID', { digest: image.layer, declared: 999, stored: 10 }]],
    );
    assert.match(errors[0]!.message, /size does not match/);
  });

  test('a config of the wrong size is refused the same way', async () => {
    const errors = await refused(imageWith(configSize + 1, [{ digest: image.layer, size: 10 }]), 'wrong-cfg');
    assert.deepEqual(
      errors.map((e) => [e.code, e.detail]),
      [['MANIFEST_INVALID', { digest: image.config, declared: configSize + 1, stored: configSize }]],
    );
  });

  test('a layer listed twice is checked at each size it declares', async () => {
    const layers = [
      { digest: image.layer, size: 10 },
      { digest: image.layer, size: 11 },
    ];
    const errors = await refused(imageWith(configSize, layers), 'twice');
    assert.deepEqual(
      errors.map((e) => e.detail),
      [{ digest: image.layer, declared: 11, stored: 10 }],
    );
  });

  test('an index whose child manifest size is wrong: 400 MANIFEST_INVALID; the right size: 201', async () => {
    const index = (size: number) => ({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: image.digest, size }],
    });
    const errors = await refused(index(image.bytes.length + 7), 'wrong-child', OCI_INDEX);
    assert.deepEqual(
      errors.map((e) => [e.code, e.detail]),
      [
        [
          'MANIFEST_INVALID',
          { digest: image.digest, declared: image.bytes.length + 7, stored: image.bytes.length },
        ],
      ],
    );
    const right = await pushManifest(reg.url, 'sizes', 'index', index(image.bytes.length), OCI_INDEX);
    assert.equal(right.response.status, 201, await right.response.text());
    // A child that is a blob (BuildKit caches list blobs) is held to the blob's size.
    const blobChild = { mediaType: LAYER, digest: image.layer, size: 9 };
    const cache = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [blobChild] };
    const blobErrors = await refused(cache, 'wrong-blob-child', OCI_INDEX);
    assert.deepEqual(blobErrors[0]!.detail, { digest: image.layer, declared: 9, stored: 10 });
  });

  test('right sizes are stored: 201, and served as pushed', async () => {
    const manifest = {
      ...imageWith(configSize, [{ digest: image.layer, size: 10 }]),
      annotations: { fresh: 'yes' },
    };
    const pushed = await pushManifest(reg.url, 'sizes', 'right', manifest);
    assert.equal(pushed.response.status, 201, await pushed.response.text());
    const served = await fetch(`${reg.url}/v2/sizes/manifests/right`);
    assert.ok(Buffer.from(await served.arrayBuffer()).equals(pushed.bytes));
  });

  test('what is not checked for existence is not checked for size: foreign layers with urls, the subject', async () => {
    const foreign = {
      mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
      digest: sha256('never pushed, lives elsewhere'),
      size: 123456,
      urls: ['https://example.com/layer'],
    };
    const manifest = {
      ...imageWith(configSize, [{ digest: image.layer, size: 10 }, foreign]),
      subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.bytes.length + 1 },
    };
    const pushed = await pushManifest(reg.url, 'sizes', 'loose', manifest);
    assert.equal(pushed.response.status, 201, await pushed.response.text());
  });

  test('missing references win over wrong sizes: MANIFEST_BLOB_UNKNOWN, naming only the missing', async () => {
    const missing = sha256('not here');
    const layers = [
      { digest: image.layer, size: 999 },
      { digest: missing, size: 8 },
    ];
    const errors = await refused(imageWith(configSize, layers), 'both');
    assert.deepEqual(
      errors.map((e) => [e.code, e.detail]),
      [['MANIFEST_BLOB_UNKNOWN', { digest: missing }]],
    );
  });

  test('many wrong sizes: the first 100 named, the rest counted in one more error', async () => {
    const layers = [];
    for (let i = 0; i < 130; i++) {
      const data = `layer ${i}`;
      layers.push({ digest: await pushBlob(reg.url, 'sizes', data), size: data.length + 1 });
    }
    const errors = await refused(imageWith(configSize, layers), 'many');
    assert.equal(errors.length, 101);
    assert.ok(errors.every((e) => e.code === 'MANIFEST_INVALID'));
    assert.deepEqual(errors[0]!.detail, { digest: layers[0]!.digest, declared: 8, stored: 7 });
    assert.deepEqual(errors[100]!.detail, { unlisted: 30 });
    assert.match(errors[100]!.message, /and 30 more/);
  });
});

describe('descriptor data must be the content it references', () => {
  const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
  const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
  const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
  const CONFIG = 'application/vnd.oci.image.config.v1+json';
  // Its base64 has + and / and ends in ==, so the URL-safe and padding cases have something to change.
  const layerBytes = Buffer.from('{"architecture":"amd64","os":"linux"} ~~??>');
  const configBytes = Buffer.from('{}');
  let reg: RunningRegistry;
  let image: Awaited<ReturnType<typeof pushImage>>;
  let layer: { mediaType: string; digest: string; size: number };
  let config: { mediaType: string; digest: string; size: number };
  let kept: string;
  before(async () => {
    reg = await startRegistry();
    image = await pushImage(reg.url, 'inline', 'v1');
    layer = {
      mediaType: LAYER,
      digest: await pushBlob(reg.url, 'inline', layerBytes),
      size: layerBytes.length,
    };
    config = { mediaType: CONFIG, digest: await pushBlob(reg.url, 'inline', configBytes), size: 2 };
    // The tag every refused PUT aims at: it must still name this manifest afterwards.
    const pushed = await pushManifest(reg.url, 'inline', 'kept', imageWith({}, {}));
    assert.equal(pushed.response.status, 201, await pushed.response.text());
    kept = pushed.digest;
  });
  after(() => reg.close());

  const b64 = (bytes: Buffer) => bytes.toString('base64');
  function imageWith(configExtra: object, layerExtra: object, more: object = {}) {
    return {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { ...config, ...configExtra },
      layers: [{ ...layer, ...layerExtra }],
      ...more,
    };
  }

  type Refusal = { code: string; message: string; detail: Record<string, unknown> };
  /** PUTs `manifest` to the tag `kept`, expects 400 MANIFEST_INVALID; nothing stored, the tag unmoved. */
  async function refused(manifest: object, type = OCI_MANIFEST): Promise<Refusal[]> {
    const pushed = await pushManifest(reg.url, 'inline', 'kept', manifest, type);
    const text = await pushed.response.text();
    assert.equal(pushed.response.status, 400, text);
    assert.equal(pushed.response.headers.get('content-type'), 'application/json');
    const byDigest = await fetch(`${reg.url}/v2/inline/manifests/${pushed.digest}`, {
      headers: { Accept: type },
    });
    assert.equal(byDigest.status, 404, 'the refused manifest was stored');
    const tag = await fetch(`${reg.url}/v2/inline/manifests/kept`, { method: 'HEAD' });
    assert.equal(tag.headers.get('docker-content-digest'), kept, 'the tag moved');
    const errors = (JSON.parse(text) as { errors: Refusal[] }).errors;
    assert.ok(
      errors.every((e) => e.code === 'MANIFEST_INVALID'),
      text,
    );
    return errors;
  }
  const only = async (manifest: object, type = OCI_MANIFEST) => {
    const errors = await refused(manifest, type);
    assert.equal(errors.length, 1, JSON.stringify(errors));
    return errors[0]!;
  };

  test('good data on config, layer and subject: 201, and GET returns the bytes as pushed', async () => {
    const manifest = imageWith(
      { data: b64(configBytes) },
      { data: b64(layerBytes) },
      {
        subject: {
          mediaType: OCI_MANIFEST,
          digest: image.digest,
          size: image.bytes.length,
          data: b64(image.bytes),
        },
      },
    );
    const pushed = await pushManifest(reg.url, 'inline', 'good', manifest);
    assert.equal(pushed.response.status, 201, await pushed.response.text());
    for (const reference of ['good', pushed.digest]) {
      const served = await fetch(`${reg.url}/v2/inline/manifests/${reference}`, {
        headers: { Accept: OCI_MANIFEST },
      });
      assert.equal(served.status, 200);
      assert.ok(Buffer.from(await served.arrayBuffer()).equals(pushed.bytes), reference);
    }
    // An index child with its manifest inlined; empty data for an empty, absent subject; a sha512 subject.
    const empty = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: image.digest, size: image.bytes.length, data: b64(image.bytes) },
      ],
      subject: { mediaType: OCI_MANIFEST, digest: empty, size: 0, data: '' },
    };
    const indexPushed = await pushManifest(reg.url, 'inline', 'index', index, OCI_INDEX);
    assert.equal(indexPushed.response.status, 201, await indexPushed.response.text());
    const other = Buffer.from('a manifest held elsewhere');
    const sha512 = `sha512:${createHash('sha512').update(other).digest('hex')}`;
    const subject = { mediaType: OCI_MANIFEST, digest: sha512, size: other.length, data: b64(other) };
    const signed = await pushManifest(reg.url, 'inline', 'sha512', imageWith({}, {}, { subject }));
    assert.equal(signed.response.status, 201, await signed.response.text());
  });

  test('data of other content: refused naming the digest, the descriptor and the digest it has', async () => {
    const other = Buffer.alloc(layerBytes.length, 0x41);
    const error = await only(imageWith({}, { data: b64(other) }));
    assert.deepEqual(error.detail, {
      digest: layer.digest,
      descriptor: 'layers[0]',
      computed: sha256(other),
    });
    assert.match(error.message, /does not match the descriptor digest/);
  });

  test('data of another length than size: refused with declared and decoded', async () => {
    const error = await only(imageWith({ data: b64(Buffer.from('{} ')) }, {}));
    assert.deepEqual(error.detail, { digest: config.digest, descriptor: 'config', declared: 2, decoded: 3 });
    const shorter = await only(imageWith({}, { data: b64(layerBytes.subarray(1)) }));
    assert.deepEqual(shorter.detail, {
      digest: layer.digest,
      descriptor: 'layers[0]',
      declared: layerBytes.length,
      decoded: layerBytes.length - 1,
    });
  });

  test('not standard padded base64: URL-safe, unpadded, whitespace, stray bits; each refused saying why', async () => {
    const good = b64(layerBytes);
    for (const [data, why] of [
      [layerBytes.toString('base64url'), /URL-safe/],
      [good.replace(/=+$/, ''), /padded/],
      [`${good.slice(0, 20)}\n${good.slice(20)}`, /whitespace/],
      [`${good} `, /whitespace/],
    ] as const) {
      const error = await only(imageWith({}, { data }));
      assert.deepEqual(error.detail, { digest: layer.digest, descriptor: 'layers[0]' }, data);
      assert.match(error.message, /not standard padded base64/);
      assert.match(error.message, why, data);
    }
    const stray = await only(imageWith({ data: 'e31=' }, {}));
    assert.match(stray.message, /canonical/);
  });

  test('data that is not a string: refused naming its type', async () => {
    for (const [data, type] of [
      [2, 'number'],
      [null, 'null'],
      [['e30='], 'object'],
    ] as const) {
      const error = await only(imageWith({ data }, {}));
      assert.deepEqual(error.detail, { digest: config.digest, descriptor: 'config', type });
    }
  });

  test('checked wherever it is: absent subject, foreign layer, index child, Docker manifest', async () => {
    const absent = {
      mediaType: OCI_MANIFEST,
      digest: sha256('not here'),
      size: 8,
      data: b64(Buffer.from('not HERE')),
    };
    const subjectError = await only(imageWith({}, {}, { subject: absent }));
    assert.equal(subjectError.detail.descriptor, 'subject');
    const foreign = {
      mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
      digest: sha256('lives elsewhere'),
      size: 15,
      urls: ['https://example.com/layer'],
    };
    const withForeign = (data: string) => ({ ...imageWith({}, {}), layers: [layer, { ...foreign, data }] });
    const foreignError = await only(withForeign(b64(Buffer.from('lives elsewherE'))));
    assert.equal(foreignError.detail.descriptor, 'layers[1]');
    const foreignGood = await pushManifest(
      reg.url,
      'inline',
      'foreign',
      withForeign(b64(Buffer.from('lives elsewhere'))),
    );
    assert.equal(foreignGood.response.status, 201, await foreignGood.response.text());
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: image.digest, size: image.bytes.length, data: 'e30=' }],
    };
    const childError = await only(index, OCI_INDEX);
    assert.deepEqual(childError.detail, {
      digest: image.digest,
      descriptor: 'manifests[0]',
      declared: image.bytes.length,
      decoded: 2,
    });
    const docker = { ...imageWith({}, { data: 'e30' }), mediaType: DOCKER_MANIFEST };
    const dockerError = await only(docker, DOCKER_MANIFEST);
    assert.equal(dockerError.detail.descriptor, 'layers[0]');
  });

  test('bad data is refused before references are looked up; good data does not excuse a missing blob', async () => {
    const missing = Buffer.from('never pushed');
    const missingLayer = { mediaType: LAYER, digest: sha256(missing), size: missing.length };
    const bad = await only({ ...imageWith({}, {}), layers: [{ ...missingLayer, data: 'bm90IGl0' }] });
    assert.equal(bad.detail.digest, missingLayer.digest);
    const inlined = { ...imageWith({}, {}), layers: [{ ...missingLayer, data: b64(missing) }] };
    const pushed = await pushManifest(reg.url, 'inline', 'kept', inlined);
    assert.equal(pushed.response.status, 400);
    const errors = ((await pushed.response.json()) as { errors: Refusal[] }).errors;
    assert.deepEqual(
      errors.map((e) => [e.code, e.detail]),
      [['MANIFEST_BLOB_UNKNOWN', { digest: missingLayer.digest }]],
    );
  });

  test('many bad data members: the first 100 named, the rest counted in one more error', async () => {
    const layers = Array.from({ length: 130 }, () => ({ ...layer, data: 'e30=' }));
    const errors = await refused({ ...imageWith({}, {}), layers });
    assert.equal(errors.length, 101);
    assert.deepEqual(errors[0]!.detail, {
      digest: layer.digest,
      descriptor: 'layers[0]',
      declared: layerBytes.length,
      decoded: 2,
    });
    assert.equal(errors[99]!.detail.descriptor, 'layers[99]');
    assert.deepEqual(errors[100]!.detail, { unlisted: 30 });
    assert.match(errors[100]!.message, /and 30 more descriptors whose data/);
  });
});
