/**
 * OCI image layouts in every client command (notes/audit-cli.md, gap G3; nits N8, N10) and the note a
 * pull gives when layers have no file name (gap G6): the real `tether` program, against a real
 * registry on port 0 where a registry is involved, with its own HOME.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { generateCertificateChain } from '../../src/sign/certs.ts';
import { addToTrustStore } from '../../src/sign/trust-store.ts';
import { cliOutput, runCliAt } from '../helpers/cli.ts';
import { pushSmallImage } from '../helpers/interop.ts';
import { sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';
import { strictTrustPolicy } from '../helpers/trust-policy.ts';

const REF_NAME = 'org.opencontainers.image.ref.name';

let home: string;
let removeHome: () => Promise<void>;
let reg: RunningRegistry;

const tether = (...args: string[]) => runCliAt(home, args);
/** Runs tether, expecting success; answers its stdout. */
const ok = (...args: string[]) => cliOutput(home, args);

async function index(dir: string): Promise<{ digest: string; annotations?: Record<string, string> }[]> {
  return JSON.parse(await readFile(join(home, dir, 'index.json'), 'utf8')).manifests;
}

before(async () => {
  ({ dir: home, cleanup: removeHome } = await tempDataDir());
  reg = await startRegistry();
  await writeFile(join(home, 'a.txt'), 'file a\n');
  await writeFile(join(home, 'b.txt'), 'file b\n');
});

after(async () => {
  await reg.close();
  await removeHome();
});

describe('every client command takes oci:DIR (gap G3)', () => {
  test('push, resolve, manifest get, pull, attach, tag, repo tags', async () => {
    const digest = (
      await ok('push', 'oci:l1:v1', 'a.txt:text/plain', '--artifact-type', 'application/x.t')
    ).trim();
    assert.equal((await ok('resolve', 'oci:l1:v1')).trim(), digest);
    assert.equal((await ok('resolve', 'ocidir://l1:v1')).trim(), digest);
    const manifest = await ok('manifest', 'get', `oci:l1@${digest}`);
    assert.equal(sha256(manifest), digest);
    assert.equal(JSON.parse(manifest).artifactType, 'application/x.t');

    await ok('pull', 'oci:l1:v1', '-o', 'out1');
    assert.equal(await readFile(join(home, 'out1', 'a.txt'), 'utf8'), 'file a\n');

    const referrer = (
      await ok('attach', 'oci:l1:v1', 'b.txt', '--artifact-type', 'application/x.sig', '--annotation', 'k=v')
    ).trim();
    const listed = await index('l1');
    assert.ok(
      listed.some((d) => d.digest === referrer && !d.annotations?.[REF_NAME]),
      'listed untagged',
    );
    const tree = JSON.parse(await ok('discover', 'oci:l1:v1', '--format', 'json'));
    assert.deepEqual(
      tree.referrers.map((r: { digest: string; annotations: object }) => [r.digest, r.annotations]),
      [[referrer, { k: 'v' }]],
    );

    const tagged = await tether('tag', 'oci:l1:v1', 't2', 't3');
    assert.equal(tagged.code, 0, tagged.stderr);
    assert.match(tagged.stderr, /tagged oci:l1:t3 -> sha256:/);
    assert.deepEqual((await ok('repo', 'tags', 'oci:l1')).trim().split('\n'), ['t2', 't3', 'v1']);
    assert.deepEqual(JSON.parse(await ok('repo', 'tags', 'oci:l1', '--format', 'json')), ['t2', 't3', 'v1']);
  });

  test('blob put, get, delete; manifest put (digest checked first) and delete', async () => {
    const blob = (await ok('blob', 'put', 'oci:l2', 'a.txt')).trim();
    assert.equal(blob, sha256('file a\n'));
    assert.equal(await ok('blob', 'get', `oci:l2@${blob}`), 'file a\n');
    await ok('blob', 'get', `oci:l2@${blob}`, '-o', 'blob.out');
    assert.equal(await readFile(join(home, 'blob.out'), 'utf8'), 'file a\n');

    await writeFile(join(home, 'empty.json'), '{}');
    await ok('blob', 'put', 'oci:l2', 'empty.json');
    const bytes = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 },
      layers: [{ mediaType: 'text/plain', digest: blob, size: 7 }],
    });
    await writeFile(join(home, 'm.json'), bytes);
    const wrong = await tether('manifest', 'put', `oci:l2@${sha256('other')}`, 'm.json');
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /m\.json hashes to sha256:\w+, not to sha256:/);
    assert.equal((await index('l2')).length, 0, 'nothing stored');
    assert.equal((await ok('manifest', 'put', 'oci:l2:m1', 'm.json')).trim(), sha256(bytes));
    assert.equal((await ok('resolve', 'oci:l2:m1')).trim(), sha256(bytes));

    const refused = await tether('blob', 'delete', `oci:l2@${sha256(bytes)}`);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is a manifest listed in .*index\.json/);
    assert.equal((await ok('manifest', 'delete', 'oci:l2:m1')).trim(), sha256(bytes));
    assert.deepEqual(await index('l2'), []);
    assert.equal((await tether('resolve', `oci:l2@${sha256(bytes)}`)).code, 1);
    await ok('blob', 'delete', `oci:l2@${blob}`);
    const gone = await tether('blob', 'get', `oci:l2@${blob}`);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /is not in the layout/);
  });

  test('usage: repo ls refuses a layout and says what to use; a bare name asks for a host or oci:', async () => {
    await ok('push', 'oci:l3:v1', 'a.txt', '--artifact-type', 'application/x.t');
    const ls = await tether('repo', 'ls', 'oci:l3');
    assert.equal(ls.code, 2);
    assert.match(ls.stderr, /an OCI layout holds one: list its tags with "tether repo tags oci:l3"/);
    const bare = await tether('resolve', 'l3:v1');
    assert.equal(bare.code, 2);
    assert.match(bare.stderr, /needs a registry host .* or, for an OCI image layout, the oci: prefix/);
    const missing = await tether('attach', 'oci:nowhere:v1', 'a.txt', '--artifact-type', 'application/x.t');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nowhere is not an OCI image layout/);
    assert.deepEqual(await readdir(home).then((names) => names.includes('nowhere')), false);
  });

  test('credential and TLS flags are refused when every REF is a layout, and taken when one is a registry', async () => {
    await ok('push', 'oci:l5:v1', 'a.txt', '--artifact-type', 'application/x.t');
    for (const [args, message] of [
      [
        ['resolve', 'oci:l5:v1', '--insecure'],
        /^tether: --insecure: oci:l5 is an OCI layout, not a registry\n$/,
      ],
      [['repo', 'tags', 'oci:l5', '-u', 'alice', '--password-stdin'], /^tether: -u: oci:l5 is an OCI layout/],
      [
        [
          'push',
          'oci:l6:v1',
          'a.txt',
          '--artifact-type',
          'application/x.t',
          '--subject',
          'oci:l5:v1',
          '--ca-file',
          'none.pem',
        ],
        /^tether: --ca-file: oci:l6 and oci:l5 are OCI layouts, not registries\n$/,
      ],
      [['cp', 'oci:l5:v1', 'oci:l6:v1', '-p', 'secret'], /^tether: -p: oci:l5 and oci:l6 are OCI layouts/],
    ] as const) {
      const r = await tether(...args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    }
    assert.deepEqual(await readdir(home).then((names) => names.includes('l6')), false);
    // A layout copied to a registry: the flags are for the registry (--insecure says so, once).
    const copied = await tether('cp', '-q', 'oci:l5:v1', `${reg.host}/from-layout:v1`, '--insecure');
    assert.equal(copied.code, 0, copied.stderr);
    assert.match(copied.stderr, /^tether: warning: --insecure: TLS certificates are not verified/);
    assert.equal(
      (await ok('resolve', `${reg.host}/from-layout:v1`)).trim(),
      (await ok('resolve', 'oci:l5:v1')).trim(),
    );
  });

  test('sign and verify a layout: the trust policy scope comes from --scope, required there and refused for a registry', async () => {
    await ok('push', 'oci:l4:v1', 'a.txt', '--artifact-type', 'application/x.t');
    const chain = generateCertificateChain({ keyType: 'ec-p256' });
    await writeFile(join(home, 'leaf.key'), chain.leafPrivateKey);
    await writeFile(join(home, 'chain.pem'), chain.chain);
    const store = join(home, 'truststore');
    await addToTrustStore(store, 'ca', 'layouts', { 'root.pem': chain.rootCertificate });
    const policy = join(home, 'trustpolicy.json');
    await writeFile(
      policy,
      strictTrustPolicy({
        name: 'layouts',
        registryScopes: ['local/demo'],
        trustStores: ['ca:layouts'],
        trustedIdentities: ['*'],
      }),
    );
    const signature = (
      await ok('sign', '-q', 'oci:l4:v1', '--key', 'leaf.key', '--cert', 'chain.pem')
    ).trim();
    const trust = ['--trust-policy', policy, '--trust-store', store];
    const verified = await ok('verify', 'oci:l4:v1', '--scope', 'local/demo', ...trust);
    assert.match(verified, new RegExp(`^verified local/demo@sha256:\\w+ by signature ${signature}`));

    const noScope = await tether('verify', 'oci:l4:v1', ...trust);
    assert.equal(noScope.code, 2);
    assert.match(noScope.stderr, /OCI layout: name the trust policy scope .* --scope/);
    const otherScope = await tether('verify', 'oci:l4:v1', '--scope', 'other/repo', ...trust);
    assert.equal(otherScope.code, 1);
    assert.match(otherScope.stderr, /no applicable oci trust policy/);
    const registry = await tether('verify', `${reg.host}/x:v1`, '--scope', 'local/demo', ...trust);
    assert.equal(registry.code, 2);
    assert.match(registry.stderr, /--scope is for OCI layouts/);
  });
});

describe('layout references read as registry ones do', () => {
  test('cp to oci:DIR:TAG@DIGEST checks the digest and sets the tag in DIR (nit N8)', async () => {
    const digest = (
      await ok('push', `${reg.host}/n8:v1`, 'a.txt', '--artifact-type', 'application/x.t')
    ).trim();
    await ok('cp', `${reg.host}/n8:v1`, `oci:n8:v2@${digest}`);
    assert.ok(!(await readdir(home)).includes('n8:v2'), 'no directory named after the tag');
    assert.deepEqual(
      (await index('n8')).map((d) => [d.digest, d.annotations?.[REF_NAME]]),
      [[digest, 'v2']],
    );
    const other = await tether('cp', `${reg.host}/n8:v1`, `oci:n8:v3@${sha256('other')}`);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /has another digest/);
  });

  test('a tag copied again with other content leaves the first manifest listed, untagged (nit N10)', async () => {
    const first = (
      await ok('push', `${reg.host}/n10:a`, 'a.txt', '--artifact-type', 'application/x.t')
    ).trim();
    const second = (
      await ok('push', `${reg.host}/n10:b`, 'b.txt', '--artifact-type', 'application/x.t')
    ).trim();
    await ok('cp', `${reg.host}/n10:a`, 'oci:n10:t');
    await ok('cp', `${reg.host}/n10:b`, 'oci:n10:t');
    assert.deepEqual(
      (await index('n10')).map((d) => [d.digest, d.annotations?.[REF_NAME]]),
      [
        [first, undefined],
        [second, 't'],
      ],
    );
    assert.equal((await ok('resolve', `oci:n10@${first}`)).trim(), first);
  });
});

describe('pull says what it skipped (gap G6)', () => {
  test('an image (layers without a title) writes nothing and says so, exit 0, from a registry or a layout', async () => {
    await pushSmallImage(reg.host, 'g6', 'v1');
    for (const ref of [`${reg.host}/g6:v1`, 'oci:g6:v1']) {
      if (ref.startsWith('oci:')) await ok('cp', `${reg.host}/g6:v1`, ref);
      const r = await tether('pull', ref, '-o', 'g6-out', '-q');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(
        r.stderr,
        `skipped 1 layer without a file name (no org.opencontainers.image.title annotation); to copy all of it, use: tether cp ${ref} oci:DIR\n`,
      );
      assert.ok(!(await readdir(home)).includes('g6-out'), 'no empty output directory');
    }
  });

  test('an index says it has no files; an artifact without files says nothing', async () => {
    const child = await pushSmallImage(reg.host, 'g6i', undefined);
    await writeFile(
      join(home, 'index.json.in'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...child }],
      }),
    );
    await ok('manifest', 'put', `${reg.host}/g6i:multi`, 'index.json.in');
    const r = await tether('pull', `${reg.host}/g6i:multi`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      `skipped the 1 manifest of the index ${reg.host}/g6i:multi (pull writes an artifact's files); to copy all of it, use: tether cp ${reg.host}/g6i:multi oci:DIR\n`,
    );

    await ok('push', `${reg.host}/g6e:v1`, '--artifact-type', 'application/x.empty');
    const empty = await tether('pull', `${reg.host}/g6e:v1`);
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(empty.stderr, '');
  });
});
