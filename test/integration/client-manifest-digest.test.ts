/**
 * The client checks every manifest it fetches against the digest it asked for (a reference by digest) or
 * the digest the registry claims (`Docker-Content-Digest` for a tag): a registry, or anything between it
 * and the client, that serves other bytes is refused before anything is written, copied, tagged, deleted
 * or believed (audit-tests finding 2). A proxy in front of a real Tether bends the answers.
 */
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/client/client.ts';
import { ClientError } from '../../src/client/errors.ts';
import { parseImageReference } from '../../src/client/reference.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { certGenerateArgs, runCliAt } from '../helpers/cli.ts';
import { type PushedManifest, pushImage, pushManifest, sha256 } from '../helpers/oci.ts';
import { startProxy } from '../helpers/proxy.ts';
import { tempDataDir } from '../helpers/tether-process.ts';
import { strictTrustPolicy } from '../helpers/trust-policy.ts';

const anonymous = { credentials: async () => undefined };
const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** A pattern matching `text` as it is. */
const literally = (text: string) => new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

/** The digest a tag (or digest) names on the real registry now, or undefined. */
async function named(base: string, repo: string, reference: string): Promise<string | undefined> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${reference}`, {
    method: 'HEAD',
    headers: { Accept: `${MANIFEST}, ${INDEX}` },
  });
  return res.status === 200 ? (res.headers.get('docker-content-digest') ?? undefined) : undefined;
}

describe('client: a manifest that is not what was asked for is refused', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let reg: RunningRegistry;
  /** The manifest asked for, by tag `v1` and by digest. */
  let wanted: PushedManifest;
  /** Another manifest of the same repository: what the lying registry serves instead. */
  let other: PushedManifest;
  /** An index whose only child is `wanted`, tagged `idx`. */
  let index: PushedManifest;
  /** A proxy that answers `wanted`'s digest with `other`'s bytes (and their true digest). */
  let swapping: Awaited<ReturnType<typeof startProxy>>;
  /** A proxy that answers tag `v1` with changed bytes, still claiming `wanted`'s digest. */
  let claiming: Awaited<ReturnType<typeof startProxy>>;

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    reg = await startRegistry({ storage: { data: join(dir, 'data') } });
    wanted = await pushImage(reg.url, 'md/app', 'v1', 'wanted layer');
    other = await pushImage(reg.url, 'md/app', 'v2', 'other layer');
    const indexBody = {
      schemaVersion: 2,
      mediaType: INDEX,
      manifests: [{ mediaType: MANIFEST, digest: wanted.digest, size: wanted.bytes.length }],
    };
    index = await pushManifest(reg.url, 'md/app', 'idx', indexBody, INDEX);
    assert.equal(index.response.status, 201);
    swapping = await startProxy(reg.host, {
      after(req, upstream) {
        if (req.method !== 'GET' || !req.url?.endsWith(`/manifests/${wanted.digest}`)) return;
        upstream.body = other.bytes;
        upstream.headers['docker-content-digest'] = other.digest;
      },
    });
    claiming = await startProxy(reg.host, {
      after(req, upstream) {
        if (req.method !== 'GET' || !req.url?.endsWith('/manifests/v1')) return;
        assert.equal(upstream.headers['docker-content-digest'], wanted.digest);
        // Same manifest, one more space: other bytes, so another digest than the one claimed.
        upstream.body = Buffer.from(`${upstream.body.toString()} `);
      },
    });
  });
  after(async () => {
    await swapping?.close();
    await claiming?.close();
    await reg?.close();
    await cleanup?.();
  });

  /** What the client says when `host` serves bytes hashing to `got` for `reference`. */
  const mismatch = (host: string, reference: string, got: string, expected: string, repo = 'md/app') =>
    literally(`manifest ${host}/${repo}@${reference}: content digest ${got} does not match ${expected}`);

  test('getManifest and resolve by digest refuse the bytes of another manifest', async () => {
    const client = new RegistryClient(anonymous);
    const ref = { ...parseImageReference(`${swapping.host}/md/app`), digest: wanted.digest };
    const refused = mismatch(swapping.host, wanted.digest, other.digest, wanted.digest);
    await assert.rejects(client.getManifest(ref), (err: Error) => {
      assert.ok(err instanceof ClientError, String(err));
      assert.match(err.message, refused);
      return true;
    });
    await assert.rejects(client.resolve(ref), refused);
    // The honest registry behind it answers the same request: the proxy is what changed.
    const direct = await client.getManifest({ ...ref, host: reg.host });
    assert.deepEqual(direct.bytes, wanted.bytes);
  });

  test('getManifest by tag refuses bytes that do not hash to the Docker-Content-Digest', async () => {
    const client = new RegistryClient(anonymous);
    const ref = parseImageReference(`${claiming.host}/md/app:v1`);
    const changed = sha256(`${wanted.bytes.toString()} `);
    await assert.rejects(
      client.getManifest(ref),
      literally(
        `manifest ${claiming.host}/md/app:v1: content digest ${changed} does not match ${wanted.digest}`,
      ),
    );
  });

  test('the CLI refuses it in manifest get, resolve, tag, pull, cp, attach and manifest delete, and changes nothing', async () => {
    const at = `${swapping.host}/md/app@${wanted.digest}`;
    const refused = mismatch(swapping.host, wanted.digest, other.digest, wanted.digest);
    const expectRefused = async (args: string[]) => {
      const run = await runCliAt(dir, args);
      assert.equal(run.code, 1, `tether ${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, refused, `tether ${args.join(' ')}`);
      return run;
    };

    const get = await expectRefused(['manifest', 'get', at]);
    assert.equal(get.stdout, '', 'no manifest printed');
    assert.equal((await expectRefused(['resolve', at])).stdout, '');

    await expectRefused(['tag', at, 'moved']);
    assert.equal(await named(reg.url, 'md/app', 'moved'), undefined, 'no tag set');

    const out = join(dir, 'pulled');
    await expectRefused(['pull', at, '-o', out]);
    assert.deepEqual(await readdir(out).catch(() => []), [], 'nothing pulled');

    // By digest, and an index whose child is fetched by digest: nothing reaches the destination.
    await expectRefused(['cp', at, `${reg.host}/md/copy:v1`]);
    await expectRefused(['cp', `${swapping.host}/md/app:idx`, `${reg.host}/md/copy:idx`]);
    await expectRefused(['cp', '-r', `${swapping.host}/md/app:idx`, `${reg.host}/md/copy:idx-r`]);
    for (const reference of ['v1', 'idx', 'idx-r', wanted.digest, other.digest, index.digest])
      assert.equal(await named(reg.url, 'md/copy', reference), undefined, `md/copy ${reference}`);

    await writeFile(join(dir, 'sbom.json'), '{}');
    await runCliAt(dir, ['attach', at, 'sbom.json', '--artifact-type', 'application/spdx+json']).then(
      (run) => {
        assert.equal(run.code, 1, run.stderr);
        assert.match(run.stderr, refused);
      },
    );
    const referrers = await new RegistryClient(anonymous).referrers({
      ...parseImageReference(`${reg.host}/md/app`),
      digest: wanted.digest,
    });
    assert.deepEqual(referrers, [], 'nothing attached');

    // Deleting by digest must not delete what the registry served instead (the client deletes by the
    // digest of what it read).
    await expectRefused(['manifest', 'delete', at]);
    assert.equal(await named(reg.url, 'md/app', wanted.digest), wanted.digest);
    assert.equal(await named(reg.url, 'md/app', other.digest), other.digest);
    assert.equal(await named(reg.url, 'md/app', 'v2'), other.digest);
  });

  test('the CLI refuses a changed manifest under a tag in manifest get and cp', async () => {
    const changed = sha256(`${wanted.bytes.toString()} `);
    const refused = literally(
      `manifest ${claiming.host}/md/app:v1: content digest ${changed} does not match ${wanted.digest}`,
    );
    for (const args of [
      ['manifest', 'get', `${claiming.host}/md/app:v1`],
      ['cp', `${claiming.host}/md/app:v1`, `${reg.host}/md/copy2:v1`],
    ]) {
      const run = await runCliAt(dir, args);
      assert.equal(run.code, 1, `tether ${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, refused);
    }
    assert.equal(await named(reg.url, 'md/copy2', 'v1'), undefined);
  });

  test('verify refuses a signature manifest swapped for other bytes, and says why', async () => {
    const certs = join(dir, 'certs');
    const store = join(dir, 'truststore');
    const generated = await runCliAt(dir, certGenerateArgs(certs, 'md', { store }));
    assert.equal(generated.code, 0, generated.stderr);
    const image = await pushImage(reg.url, 'md/signed', 'v1', 'signed layer');
    const key = ['--key', join(certs, 'leaf.key'), '--cert', join(certs, 'chain.pem')];
    const signed = await runCliAt(dir, ['sign', '-q', `${reg.host}/md/signed:v1`, ...key]);
    assert.equal(signed.code, 0, signed.stderr);
    const signature = signed.stdout.trim();
    const policy = join(dir, 'trustpolicy.json');
    await writeFile(
      policy,
      strictTrustPolicy({
        name: 'md',
        registryScopes: ['*'],
        trustStores: ['ca:md'],
        trustedIdentities: ['*'],
      }),
    );
    const trust = ['--trust-policy', policy, '--trust-store', store];
    // Positive control: the same verification through an honest proxy passes.
    const honest = await startProxy(reg.host);
    const swapped = await startProxy(reg.host, {
      after(req, upstream) {
        if (req.method !== 'GET' || !req.url?.endsWith(`/manifests/${signature}`)) return;
        upstream.body = image.bytes;
        upstream.headers['docker-content-digest'] = image.digest;
      },
    });
    try {
      const ok = await runCliAt(dir, ['verify', `${honest.host}/md/signed:v1`, ...trust]);
      assert.equal(ok.code, 0, ok.stderr);
      const run = await runCliAt(dir, ['verify', `${swapped.host}/md/signed:v1`, ...trust]);
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        run.stdout + run.stderr,
        mismatch(swapped.host, signature, image.digest, signature, 'md/signed'),
      );
    } finally {
      await honest.close();
      await swapped.close();
    }
  });
});
