import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { bufferSource, fileSource } from '../../src/client/blob-source.ts';
import { RegistryClient } from '../../src/client/client.ts';
import { copyGraph } from '../../src/client/copy.ts';
import { ClientError } from '../../src/client/errors.ts';
import { OciLayout } from '../../src/client/layout.ts';
import { Limiter } from '../../src/client/limiter.ts';
import { parseImageReference } from '../../src/client/reference.ts';
import { LayoutTarget, RegistryTarget } from '../../src/client/target.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { pushBlob, pushManifest, sha256 } from '../helpers/oci.ts';
import { startProxy } from '../helpers/proxy.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const MiB = 1024 * 1024;

function tether(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr });
    });
  });
}

const anonymous = { credentials: async () => undefined };

/** The client's transport, watched and bent on the wire by a proxy in front of a real Tether. */
describe('client transport', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let registry: RunningRegistry;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    registry = await startRegistry({ storage: { data: join(dir, 'data') } });
    env = { HOME: dir, DOCKER_CONFIG: join(dir, 'docker') };
  });
  after(async () => {
    await registry?.close();
    await cleanup?.();
  });

  test('small blobs go up in one PUT; large ones in PATCH chunks no smaller than OCI-Chunk-Min-Length', async () => {
    const proxy = await startProxy(registry.host, {
      after(req, upstream) {
        if (req.method === 'POST') upstream.headers['oci-chunk-min-length'] = String(2 * MiB);
      },
    });
    try {
      const small = randomBytes(1000);
      const client = new RegistryClient({ ...anonymous, chunkedThreshold: 4 * MiB, chunkSize: MiB });
      const ref = parseImageReference(`${proxy.host}/transport/chunks`);
      await client.uploadBlob(ref, bufferSource(small));
      assert.deepEqual(
        proxy.seen.filter((r) => r.method !== 'HEAD').map((r) => r.method),
        ['POST', 'PUT'],
      );
      proxy.resetCounters();
      const large = randomBytes(5 * MiB + 3);
      const source = bufferSource(large);
      assert.equal(await client.uploadBlob(ref, source), 'transferred');
      const patches = proxy.seen.filter((r) => r.method === 'PATCH');
      // The client asked for 1 MiB chunks; the registry's minimum of 2 MiB wins.
      assert.deepEqual(
        patches.map((p) => p.bodyBytes),
        [2 * MiB, 2 * MiB, MiB + 3],
      );
      assert.deepEqual(
        patches.map((p) => p.headers['content-range']),
        [`0-${2 * MiB - 1}`, `${2 * MiB}-${4 * MiB - 1}`, `${4 * MiB}-${5 * MiB + 2}`],
      );
      const put = proxy.seen.find((r) => r.method === 'PUT');
      assert.equal(put?.bodyBytes, 0);
      assert.ok(
        put?.url.includes(`digest=${encodeURIComponent(source.digest)}`) || put?.url.includes(source.digest),
      );
      assert.deepEqual(await client.getBlob(ref, source.digest), large);
      // And a second upload of the same blob is skipped after one HEAD.
      proxy.resetCounters();
      assert.equal(await client.uploadBlob(ref, source), 'exists');
      assert.deepEqual(
        proxy.seen.map((r) => r.method),
        ['HEAD'],
      );
    } finally {
      await proxy.close();
    }
  });

  test('a chunk answered with 503 resumes from the Range the session reports, with or without the bytes kept', async () => {
    for (const keptByRegistry of [true, false]) {
      let failed = false;
      const proxy = await startProxy(registry.host, {
        async before(req, res, body) {
          if (req.method !== 'PATCH' || failed || !req.headers['content-range']?.startsWith(`${MiB}-`))
            return false;
          failed = true;
          if (keptByRegistry) {
            // The registry stores the chunk but the answer is lost on the way back.
            const forwarded = await fetch(`http://${registry.host}${req.url}`, {
              method: 'PATCH',
              body,
              headers: {
                'Content-Type': 'application/octet-stream',
                'Content-Range': req.headers['content-range']!,
              },
            });
            assert.equal(forwarded.status, 202);
          }
          res.writeHead(503).end();
          return true;
        },
      });
      try {
        const client = new RegistryClient({ ...anonymous, chunked: true, chunkSize: MiB });
        const ref = parseImageReference(`${proxy.host}/transport/resume-${keptByRegistry}`);
        const bytes = randomBytes(3 * MiB + 17);
        const source = bufferSource(bytes);
        assert.equal(await client.uploadBlob(ref, source), 'transferred');
        assert.ok(failed, 'the fault was injected');
        assert.ok(
          proxy.seen.some((r) => r.method === 'GET' && r.url.includes('/blobs/uploads/')),
          'status asked',
        );
        const resent = proxy.seen.filter(
          (r) => r.method === 'PATCH' && r.headers['content-range']?.startsWith(`${MiB}-`),
        );
        assert.equal(
          resent.length,
          keptByRegistry ? 1 : 2,
          'the chunk is re-sent only when the registry lost it',
        );
        assert.deepEqual(await client.getBlob(ref, source.digest), bytes);
      } finally {
        await proxy.close();
      }
    }
  });

  test('a file goes up read straight from disk, in one PUT or in chunks, and progress hears every byte once', async () => {
    const proxy = await startProxy(registry.host);
    try {
      const bytes = randomBytes(3 * MiB + 11);
      const path = join(dir, 'upload-from-file.bin');
      await writeFile(path, bytes);
      const source = await fileSource(path);
      assert.equal(source.file?.path, path);
      let opened = false;
      const heard = new Map<string, number>();
      const client = new RegistryClient({
        ...anonymous,
        progress: { bytes: (d, n) => heard.set(d.digest, (heard.get(d.digest) ?? 0) + n) },
      });
      const ref = parseImageReference(`${proxy.host}/transport/from-file`);
      // The read stream is there for chunked uploads; a one-PUT upload of a file must not need it.
      const watched = {
        ...source,
        open: async () => {
          opened = true;
          return source.open();
        },
      };
      assert.equal(await client.uploadBlob(ref, watched), 'transferred');
      assert.equal(opened, false);
      const put = proxy.seen.find((r) => r.method === 'PUT');
      assert.equal(put?.bodyBytes, bytes.length);
      assert.deepEqual(await client.getBlob(ref, source.digest), bytes);
      // Through pushArtifact, which reports progress, the same upload counts each byte once.
      await client.pushArtifact(parseImageReference(`${proxy.host}/transport/from-file-artifact`), {
        artifactType: 'application/x-test',
        files: [{ mediaType: 'application/octet-stream', path, title: 'upload-from-file.bin' }],
      });
      assert.equal(heard.get(source.digest), bytes.length);

      // Chunked, a file is read straight into the chunk buffers: same bytes, same ranges, no stream.
      proxy.resetCounters();
      const chunked = new RegistryClient({ ...anonymous, chunked: true, chunkSize: MiB });
      const chunkedRef = parseImageReference(`${proxy.host}/transport/from-file-chunked`);
      assert.equal(await chunked.uploadBlob(chunkedRef, watched), 'transferred');
      assert.equal(opened, false);
      assert.deepEqual(
        proxy.seen.filter((r) => r.method === 'PATCH').map((r) => r.headers['content-range']),
        [`0-${MiB - 1}`, `${MiB}-${2 * MiB - 1}`, `${2 * MiB}-${3 * MiB - 1}`, `${3 * MiB}-${3 * MiB + 10}`],
      );
      assert.deepEqual(await chunked.getBlob(chunkedRef, source.digest), bytes);
      // An empty file: no PATCH at all, just the closing PUT.
      const emptyPath = join(dir, 'upload-empty.bin');
      await writeFile(emptyPath, Buffer.alloc(0));
      proxy.resetCounters();
      assert.equal(await chunked.uploadBlob(chunkedRef, await fileSource(emptyPath)), 'transferred');
      assert.deepEqual(
        proxy.seen.filter((r) => r.method === 'PATCH' || r.method === 'PUT').map((r) => r.method),
        ['PUT'],
      );
    } finally {
      await proxy.close();
    }
  });

  test('a chunked upload reads the next chunk from its source while the registry takes the current one', async () => {
    const bytes = randomBytes(4 * MiB + 5);
    let pulled = 0;
    let pulledWhileFirstHeld = -1;
    const proxy = await startProxy(registry.host, {
      async before(req) {
        if (req.method !== 'PATCH' || pulledWhileFirstHeld >= 0) return false;
        // Hold the first chunk's answer until the source has given the second chunk (or 2 s pass).
        for (let i = 0; i < 200 && pulled < 2 * MiB; i++) await new Promise((r) => setTimeout(r, 10));
        pulledWhileFirstHeld = pulled;
        return false;
      },
    });
    try {
      const client = new RegistryClient({ ...anonymous, chunked: true, chunkSize: MiB });
      const ref = parseImageReference(`${proxy.host}/transport/overlap`);
      const digest = sha256(bytes);
      const source = {
        digest,
        size: bytes.length,
        // One piece of read-ahead in the stream, so `pulled` tracks what the upload consumed.
        open: async () =>
          Readable.from(
            (async function* () {
              for (let at = 0; at < bytes.length; at += 256 * 1024) {
                const piece = bytes.subarray(at, at + 256 * 1024);
                pulled += piece.length;
                yield piece;
              }
            })(),
            { highWaterMark: 1 },
          ),
      };
      assert.equal(await client.uploadBlob(ref, source), 'transferred');
      assert.ok(
        pulledWhileFirstHeld >= 2 * MiB,
        `while the first PATCH was unanswered the source gave ${pulledWhileFirstHeld} bytes`,
      );
      // Never a third chunk while the first is unanswered (beyond the stream's own piece or two ahead).
      assert.ok(pulledWhileFirstHeld <= 2 * MiB + 512 * 1024, `read ${pulledWhileFirstHeld} bytes ahead`);
      assert.deepEqual(
        proxy.seen.filter((r) => r.method === 'PATCH').map((r) => r.headers['content-range']),
        [
          `0-${MiB - 1}`,
          `${MiB}-${2 * MiB - 1}`,
          `${2 * MiB}-${3 * MiB - 1}`,
          `${3 * MiB}-${4 * MiB - 1}`,
          `${4 * MiB}-${4 * MiB + 4}`,
        ],
      );
      assert.deepEqual(await client.getBlob(ref, digest), bytes);
    } finally {
      await proxy.close();
    }
  });

  test('content that does not match its digest or size fails the read, and `blob get -o` leaves no file', async () => {
    const good = Buffer.from('the true content of this blob');
    const digest = await pushBlob(registry.url, 'transport/verify', good);
    for (const damage of ['flip', 'truncate', 'extend'] as const) {
      const proxy = await startProxy(registry.host, {
        after(req, upstream) {
          if (req.method !== 'GET' || !req.url?.includes('/blobs/sha256:')) return;
          if (damage === 'flip')
            upstream.body = Buffer.from(upstream.body.toString().replace('true', 'fake'));
          if (damage === 'truncate') upstream.body = upstream.body.subarray(0, 10);
          if (damage === 'extend') upstream.body = Buffer.concat([upstream.body, Buffer.from('!')]);
        },
      });
      try {
        const client = new RegistryClient(anonymous);
        const ref = parseImageReference(`${proxy.host}/transport/verify`);
        await assert.rejects(client.getBlob(ref, digest), ClientError, damage);
        const out = join(dir, `blob-${damage}`);
        const cli = await tether(['blob', 'get', `${proxy.host}/transport/verify@${digest}`, '-o', out], env);
        assert.equal(cli.code, 1, cli.err);
        assert.match(cli.err, /^tether: blob sha256:/);
        await assert.rejects(access(out), { code: 'ENOENT' }, 'no file is left behind');
        await assert.rejects(access(`${out}.tether-partial`), { code: 'ENOENT' });
        // A layout trusts a registry read to check itself (no second hash), and still keeps nothing.
        const layout = await OciLayout.open(join(dir, `layout-${damage}`), { create: true });
        await assert.rejects(
          layout.writeBlob(digest, good.length, (sink) => client.readBlob(ref, digest, sink, good.length), {
            verified: true,
          }),
          ClientError,
        );
        assert.equal(await layout.hasBlob(digest), false);
        assert.deepEqual(await readdir(join(layout.blobPath(digest), '..')), [], 'no temporary file left');
      } finally {
        await proxy.close();
      }
    }
    // The same through the proxy's honest twin works, so the failures above were the damage.
    const fine = join(dir, 'blob-fine');
    const cli = await tether(['blob', 'get', `${registry.host}/transport/verify@${digest}`, '-o', fine], env);
    assert.equal(cli.code, 0, cli.err);
    assert.deepEqual(await readFile(fine), good);
  });

  test('GET retries 429 (honouring Retry-After) and 503, then succeeds', async () => {
    const digest = await pushBlob(registry.url, 'transport/retry', 'retry me');
    let refusals = 0;
    const proxy = await startProxy(registry.host, {
      before(req, res) {
        if (req.method !== 'GET' || refusals >= 2) return false;
        refusals++;
        res.writeHead(refusals === 1 ? 429 : 503, refusals === 1 ? { 'Retry-After': '1' } : {}).end();
        return true;
      },
    });
    try {
      const started = Date.now();
      const bytes = await new RegistryClient(anonymous).getBlob(
        parseImageReference(`${proxy.host}/transport/retry`),
        digest,
      );
      assert.equal(bytes.toString(), 'retry me');
      assert.equal(refusals, 2);
      assert.ok(Date.now() - started >= 900, 'Retry-After: 1 was waited out');
    } finally {
      await proxy.close();
    }
  });

  test('copy keeps to the per-host concurrency limit and still runs transfers in parallel', async () => {
    const repo = 'transport/wide';
    const layers = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const data = `layer ${i} ${'x'.repeat(i * 100)}`;
        return {
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: await pushBlob(registry.url, repo, data),
          size: data.length,
        };
      }),
    );
    const config = '{}';
    await pushBlob(registry.url, repo, config);
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: 2 },
      layers,
    };
    assert.equal((await pushManifest(registry.url, repo, 'v1', manifest)).response.status, 201);
    let active = 0;
    let peak = 0;
    const proxy = await startProxy(registry.host, {
      async before(req) {
        if (req.method === 'GET' && req.url?.includes('/blobs/')) {
          active++;
          peak = Math.max(peak, active);
          await new Promise((r) => setTimeout(r, 80));
          active--;
        }
        return false;
      },
    });
    try {
      const client = new RegistryClient({ ...anonymous, concurrency: 3 });
      const layout = await LayoutTarget.open(join(dir, 'wide-layout'), { create: true });
      const result = await copyGraph(
        new RegistryTarget(client, { host: proxy.host, repository: repo }),
        'v1',
        layout,
        'v1',
      );
      assert.equal(result.blobs.transferred, 11);
      assert.equal(peak, 3, `at most 3 blob reads at once, and 3 were used (peak ${peak})`);
      assert.equal((await layout.resolve('v1')).digest, sha256(JSON.stringify(manifest)));
    } finally {
      await proxy.close();
    }
  });

  test('the limiter never deadlocks transfers that need the same host twice', async () => {
    const limiter = new Limiter(2);
    const { acquireAll } = await import('../../src/client/limiter.ts');
    let running = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        const release = await acquireAll([limiter, limiter]);
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        release();
      }),
    );
    assert.equal(peak, 2);
  });

  test('a declined cross-repository mount falls back to an upload into the session the registry opened', async () => {
    const digest = await pushBlob(registry.url, 'transport/mount-src', 'mountable');
    const client = new RegistryClient(anonymous);
    const ref = parseImageReference(`${registry.host}/transport/mount-dst`);
    const source = bufferSource(Buffer.from('mountable'));
    assert.equal(source.digest, digest);
    assert.equal(await client.uploadBlob(ref, source, { mountFrom: 'transport/mount-src' }), 'mounted');
    // From a repository that does not have it, the registry opens a session instead (202).
    const other = bufferSource(Buffer.from('not in the source repository'));
    const second = parseImageReference(`${registry.host}/transport/mount-dst2`);
    assert.equal(await client.uploadBlob(second, other, { mountFrom: 'transport/mount-src' }), 'transferred');
    assert.ok(await client.blobExists(second, other.digest));
  });

  test('small blobs share kept-alive connections; large ones, or of unknown size, come through the download reader', async () => {
    const proxy = await startProxy(registry.host);
    try {
      const client = new RegistryClient(anonymous);
      const ref = parseImageReference(`${proxy.host}/transport/connections`);
      const small = Array.from({ length: 4 }, () => bufferSource(randomBytes(1000)));
      const large = bufferSource(randomBytes(MiB + 1));
      for (const blob of [...small, large]) await client.uploadBlob(ref, blob);
      proxy.resetCounters();
      const connected = proxy.connections();
      const sink = (into: Buffer[]) => ({ write: (chunk: Uint8Array) => void into.push(Buffer.from(chunk)) });
      for (const blob of small) {
        const into: Buffer[] = [];
        await client.readBlob(ref, blob.digest, sink(into), blob.size);
        assert.equal(Buffer.concat(into).length, blob.size);
        assert.equal((await client.getBlob(ref, blob.digest)).length, blob.size);
      }
      assert.equal(proxy.seen.length, 8);
      assert.ok(proxy.seen.every((r) => r.headers.connection !== 'close'));
      // The uploads' idle connection may serve them all; at most one new one.
      assert.ok(
        proxy.connections() - connected <= 1,
        'eight small GETs, one after another, on one connection',
      );

      proxy.resetCounters();
      const beforeLarge = proxy.connections();
      const into: Buffer[] = [];
      await client.readBlob(ref, large.digest, sink(into), large.size);
      await client.readBlob(ref, small[0]!.digest, sink(into));
      assert.equal(Buffer.concat(into).length, large.size + small[0]!.size);
      assert.deepEqual(
        proxy.seen.map((r) => r.headers.connection),
        ['close', 'close'],
      );
      assert.equal(proxy.connections() - beforeLarge, 2, 'each download has a connection of its own');
    } finally {
      await proxy.close();
    }
  });

  test('pull streams files through a temporary name and refuses titles that leave the directory', async () => {
    const client = new RegistryClient(anonymous);
    const ref = parseImageReference(`${registry.host}/transport/files:v1`);
    await writeFile(join(dir, 'one.txt'), 'one');
    await client.pushArtifact(ref, {
      artifactType: 'application/x.files',
      files: [
        { mediaType: 'text/plain', path: join(dir, 'one.txt'), title: 'one.txt' },
        { mediaType: 'text/plain', bytes: Buffer.from('two'), title: 'two.txt' },
      ],
      tag: 'v1',
    });
    const out = join(dir, 'pulled');
    const { files } = await client.pullArtifact(ref, out);
    assert.equal(files.length, 2);
    assert.equal(await readFile(join(out, 'one.txt'), 'utf8'), 'one');
    assert.equal(await readFile(join(out, 'two.txt'), 'utf8'), 'two');
    const evil = parseImageReference(`${registry.host}/transport/files:evil`);
    await client.pushArtifact(evil, {
      artifactType: 'application/x.files',
      files: [{ mediaType: 'text/plain', bytes: Buffer.from('x'), title: '../escape.txt' }],
      tag: 'evil',
    });
    await assert.rejects(client.pullArtifact(evil, out), /refusing to write a file named/);
    await assert.rejects(access(join(dir, 'escape.txt')), { code: 'ENOENT' });
  });
});
