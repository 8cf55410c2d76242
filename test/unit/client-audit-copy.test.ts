import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/client/client.ts';
import { CopyError, copyGraph } from '../../src/client/copy.ts';
import { LayoutTarget, RegistryTarget } from '../../src/client/target.ts';
import { ContentMismatchError } from '../../src/client/verify-stream.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { pushBlob, pushManifest, sha256 } from '../helpers/oci.ts';
import { startProxy } from '../helpers/proxy.ts';

const anonymous = { credentials: async () => undefined };
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const CONFIG = 'application/vnd.oci.image.config.v1+json';
const LAYER = 'application/vnd.oci.image.layer.v1.tar';
const MiB = 1024 * 1024;
const TITLE = 'org.opencontainers.image.title';
// Without the fixes a failed copy never settled; a bounded test fails instead of hanging the run.
const BOUNDED = { timeout: 20_000 };

/** Pushes an image of one layer; its config says `platform` (or it is an artifact with an empty config). */
async function pushImage(
  base: string,
  repo: string,
  tag: string,
  layer: Buffer,
  platform?: { os: string; architecture: string; variant?: string },
) {
  const configBytes = platform ? JSON.stringify({ ...platform, rootfs: { type: 'layers' } }) : '{}';
  const config = {
    mediaType: platform ? CONFIG : 'application/vnd.oci.empty.v1+json',
    digest: await pushBlob(base, repo, configBytes),
    size: Buffer.byteLength(configBytes),
  };
  const layerDigest = await pushBlob(base, repo, layer);
  const manifest = {
    schemaVersion: 2,
    mediaType: MANIFEST,
    ...(platform ? {} : { artifactType: 'application/x.test' }),
    config,
    layers: [{ mediaType: LAYER, digest: layerDigest, size: layer.length }],
  };
  const pushed = await pushManifest(base, repo, tag, manifest);
  assert.equal(pushed.response.status, 201);
  return { digest: pushed.digest, size: pushed.bytes.length, layer: layerDigest };
}

async function status(url: string): Promise<number> {
  const res = await fetch(url, { method: 'HEAD' });
  return res.status;
}

describe('copy: a source blob that fails its digest check', () => {
  let registry: RunningRegistry;
  let dir: string;
  before(async () => {
    registry = await startRegistry();
    dir = await mkdtemp(join(tmpdir(), 'tether-audit-copy-'));
  });
  after(async () => {
    await registry?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test(
    'registry to registry: the copy fails with the mismatch, in one PUT or in chunks, and tags nothing',
    BOUNDED,
    async () => {
      const cases = [
        { name: 'small, one PUT', bytes: 5000, chunked: false },
        { name: 'through the download reader, one PUT', bytes: 2 * MiB, chunked: false },
        { name: 'chunked', bytes: 5000, chunked: true },
      ];
      for (const [i, { name, bytes, chunked }] of cases.entries()) {
        const repo = `audit/corrupt${i}`;
        const { layer } = await pushImage(registry.url, repo, 'v1', randomBytes(bytes));
        // Same size, one byte flipped: only the hash can tell.
        const proxy = await startProxy(registry.host, {
          after(req, upstream) {
            if (req.method === 'GET' && req.url?.endsWith(`/blobs/${layer}`)) upstream.body[100]! ^= 0xff;
          },
        });
        try {
          const client = new RegistryClient({ ...anonymous, chunked });
          const src = new RegistryTarget(client, { host: proxy.host, repository: repo });
          const dst = new RegistryTarget(client, { host: registry.host, repository: `audit/copied${i}` });
          await assert.rejects(copyGraph(src, 'v1', dst, 'v1'), (err: Error) => {
            assert.ok(err instanceof ContentMismatchError, `${name}: ${err.stack}`);
            assert.match(err.message, new RegExp(`^blob ${layer}: content hashes to sha256:[0-9a-f]{64}$`));
            return true;
          });
          assert.equal(await status(`${registry.url}/v2/audit/copied${i}/manifests/v1`), 404, name);
          assert.equal(await status(`${registry.url}/v2/audit/copied${i}/blobs/${layer}`), 404, name);
        } finally {
          await proxy.close();
        }
      }
    },
  );

  test(
    'registry to layout or to files: a failure reports only once the other blobs under way are done',
    BOUNDED,
    async () => {
      const layer = randomBytes(5000);
      const repo = 'audit/slow-sibling';
      const image = await pushImage(registry.url, repo, 'v1', layer);
      const other = Buffer.from('a second file, slow to arrive');
      const otherDigest = await pushBlob(registry.url, repo, other);
      const files = {
        schemaVersion: 2,
        mediaType: MANIFEST,
        artifactType: 'application/x.test',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 },
        layers: [
          { mediaType: LAYER, digest: image.layer, size: layer.length, annotations: { [TITLE]: 'bad.bin' } },
          { mediaType: LAYER, digest: otherDigest, size: other.length, annotations: { [TITLE]: 'good.txt' } },
        ],
      };
      assert.equal((await pushManifest(registry.url, repo, 'files', files)).response.status, 201);
      // The bad layer fails at once; the other blobs' answers come later, while their files are open.
      const proxy = await startProxy(registry.host, {
        async after(req, upstream) {
          if (req.method !== 'GET' || !req.url?.includes('/blobs/')) return;
          if (req.url.endsWith(`/blobs/${image.layer}`)) upstream.body[100]! ^= 0xff;
          else await new Promise((r) => setTimeout(r, 300));
        },
      });
      try {
        const client = new RegistryClient(anonymous);
        const src = new RegistryTarget(client, { host: proxy.host, repository: repo });
        const layoutDir = join(dir, 'slow-sibling');
        const layout = await LayoutTarget.open(layoutDir, { create: true });
        await assert.rejects(copyGraph(src, 'v1', layout, 'v1'), ContentMismatchError);
        assert.deepEqual(
          (await readdir(join(layoutDir, 'blobs', 'sha256'))).filter((name) => name.startsWith('.tmp-')),
          [],
          'no temporary file, not even of the blob that was still arriving',
        );

        const out = join(dir, 'pulled');
        await assert.rejects(
          client.pullArtifact({ host: proxy.host, repository: repo, tag: 'files' }, out),
          ContentMismatchError,
        );
        assert.deepEqual(
          await readdir(out),
          ['good.txt'],
          'the file that verified is kept, the other leaves nothing',
        );
      } finally {
        await proxy.close();
      }
    },
  );

  test(
    'layout to layout: the copy fails naming the blob and its hash, and leaves no temporary file',
    BOUNDED,
    async () => {
      const client = new RegistryClient(anonymous);
      const good = Buffer.from('the true content of this layer\n');
      const { layer } = await pushImage(registry.url, 'audit/lay', 'v1', good);
      const first = await LayoutTarget.open(join(dir, 'first'), { create: true });
      await copyGraph(
        new RegistryTarget(client, { host: registry.host, repository: 'audit/lay' }),
        'v1',
        first,
        'v1',
      );
      const blobFile = first.layout.blobPath(layer);
      await writeFile(blobFile, (await readFile(blobFile, 'utf8')).replace('true', 'fake'));

      const secondDir = join(dir, 'second');
      const second = await LayoutTarget.open(secondDir, { create: true });
      await assert.rejects(copyGraph(first, 'v1', second, 'v1'), (err: Error) => {
        assert.ok(err instanceof ContentMismatchError, err.stack);
        assert.match(
          err.message,
          new RegExp(
            `^blob ${layer} in .*first: content hashes to ${sha256(good.toString().replace('true', 'fake'))}$`,
          ),
        );
        return true;
      });
      const blobs = await readdir(join(secondDir, 'blobs', 'sha256'));
      assert.deepEqual(
        blobs.filter((name) => name.startsWith('.tmp-')),
        [],
        'no temporary file left',
      );
      assert.equal(blobs.includes(layer.slice(7)), false);
      assert.deepEqual(JSON.parse(await readFile(join(secondDir, 'index.json'), 'utf8')).manifests, []);

      // Layout to registry fails too, and tags nothing.
      const dst = new RegistryTarget(client, { host: registry.host, repository: 'audit/from-layout' });
      await assert.rejects(copyGraph(first, 'v1', dst, 'v1'), ContentMismatchError);
      assert.equal(await status(`${registry.url}/v2/audit/from-layout/manifests/v1`), 404);
    },
  );
});

describe('copy --platform', () => {
  let registry: RunningRegistry;
  let client: RegistryClient;
  before(async () => {
    registry = await startRegistry();
    client = new RegistryClient(anonymous);
  });
  after(async () => {
    await registry?.close();
  });

  const target = (repository: string) => new RegistryTarget(client, { host: registry.host, repository });

  test('a single image is copied only when its config names the platform asked for', async () => {
    const amd64 = await pushImage(registry.url, 'plat/amd64', 'v1', randomBytes(100), {
      os: 'linux',
      architecture: 'amd64',
    });
    await assert.rejects(
      copyGraph(target('plat/amd64'), 'v1', target('plat/out-arm64'), 'v1', { platform: 'linux/arm64' }),
      (err: Error) => {
        assert.ok(err instanceof CopyError, err.stack);
        assert.match(
          err.message,
          /plat\/amd64@sha256:[0-9a-f]{64} is an image for linux\/amd64, not linux\/arm64/,
        );
        return true;
      },
    );
    assert.equal(await status(`${registry.url}/v2/plat/out-arm64/manifests/v1`), 404);
    const copied = await copyGraph(target('plat/amd64'), 'v1', target('plat/out-amd64'), 'v1', {
      platform: 'linux/amd64',
    });
    assert.equal(copied.root.digest, amd64.digest);

    // The variant is compared only when asked for, as within an index.
    await pushImage(registry.url, 'plat/arm64', 'v1', randomBytes(100), {
      os: 'linux',
      architecture: 'arm64',
      variant: 'v8',
    });
    await copyGraph(target('plat/arm64'), 'v1', target('plat/out-v8'), 'v1', { platform: 'linux/arm64' });
    await copyGraph(target('plat/arm64'), 'v1', target('plat/out-v8'), 'v2', { platform: 'linux/arm64/v8' });
    await assert.rejects(
      copyGraph(target('plat/arm64'), 'v1', target('plat/out-v7'), 'v1', { platform: 'linux/arm64/v7' }),
      /is an image for linux\/arm64\/v8, not linux\/arm64\/v7/,
    );

    // An artifact names no platform, so it cannot be the one asked for.
    await pushImage(registry.url, 'plat/artifact', 'v1', randomBytes(100));
    await assert.rejects(
      copyGraph(target('plat/artifact'), 'v1', target('plat/out-artifact'), 'v1', {
        platform: 'linux/amd64',
      }),
      /names no platform/,
    );
  });

  test('within an index, the same rules pick the child', async () => {
    const amd64 = await pushImage(registry.url, 'plat/multi', 'amd64', randomBytes(100), {
      os: 'linux',
      architecture: 'amd64',
    });
    const arm64 = await pushImage(registry.url, 'plat/multi', 'arm64', randomBytes(100), {
      os: 'linux',
      architecture: 'arm64',
      variant: 'v8',
    });
    const index = {
      schemaVersion: 2,
      mediaType: INDEX,
      manifests: [
        {
          mediaType: MANIFEST,
          digest: amd64.digest,
          size: amd64.size,
          platform: { os: 'linux', architecture: 'amd64' },
        },
        {
          mediaType: MANIFEST,
          digest: arm64.digest,
          size: arm64.size,
          platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
        },
      ],
    };
    assert.equal((await pushManifest(registry.url, 'plat/multi', 'v1', index, INDEX)).response.status, 201);
    const picked = await copyGraph(target('plat/multi'), 'v1', target('plat/multi-arm'), 'v1', {
      platform: 'linux/arm64',
    });
    assert.equal(picked.root.digest, arm64.digest);
    await assert.rejects(
      copyGraph(target('plat/multi'), 'v1', target('plat/multi-s390x'), 'v1', { platform: 'linux/s390x' }),
      /has no image for linux\/s390x/,
    );
  });
});
