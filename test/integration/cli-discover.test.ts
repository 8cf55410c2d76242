/**
 * `tether discover` against notes/audit-cli.md: each referrer's annotations and the manifests of an
 * index with their own referrers (gap G5); a digest that is nowhere is "not found", an absent subject
 * with referrers is shown with a note (nit N7); `--verify` on a layout with `--scope`. The real CLI
 * against a real registry on port 0.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/client/client.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { generateCertificateChain } from '../../src/sign/certs.ts';
import { addToTrustStore } from '../../src/sign/trust-store.ts';
import { cliOutput, runCliAt } from '../helpers/cli.ts';
import { pushSmallImage } from '../helpers/interop.ts';
import { sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';
import { strictTrustPolicy } from '../helpers/trust-policy.ts';

const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

let home: string;
let removeHome: () => Promise<void>;
let reg: RunningRegistry;

const tether = (...args: string[]) => runCliAt(home, args);
/** Runs tether, expecting success; answers its stdout. */
const ok = (...args: string[]) => cliOutput(home, args);

interface Fixture {
  index: string;
  amd64: string;
  arm64: string;
  sbom: string;
  amd64Sig: string;
  sbomSig: string;
}

/** A two-platform index with an annotated SBOM (itself signed) on the index and a signature on amd64. */
async function multiPlatform(repo: string): Promise<Fixture> {
  const amd64 = await pushSmallImage(reg.host, repo, undefined, 'amd64');
  const arm64 = await pushSmallImage(reg.host, repo, undefined, 'arm64');
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: INDEX,
      manifests: [
        { mediaType: MANIFEST, ...amd64, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: MANIFEST, ...arm64, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ],
    }),
  );
  await new RegistryClient().putManifest({ host: reg.host, repository: repo }, 'v1', index, INDEX);
  const attach = async (at: string, type: string, ...annotations: string[]) =>
    (
      await ok(
        'attach',
        `${reg.host}/${repo}@${at}`,
        'file.txt',
        '--artifact-type',
        type,
        ...annotations.flatMap((a) => ['--annotation', a]),
      )
    ).trim();
  const sbom = await attach(
    sha256(index),
    'application/spdx+json',
    'org.example.tool=syft',
    'org.example.n=1',
  );
  return {
    index: sha256(index),
    amd64: amd64.digest,
    arm64: arm64.digest,
    sbom,
    amd64Sig: await attach(amd64.digest, 'application/vnd.example.sig'),
    sbomSig: await attach(sbom, 'application/vnd.example.sig'),
  };
}

before(async () => {
  ({ dir: home, cleanup: removeHome } = await tempDataDir());
  reg = await startRegistry();
  await writeFile(join(home, 'file.txt'), 'attached\n');
});

after(async () => {
  await reg.close();
  await removeHome();
});

describe('discover shows annotations and the manifests of an index (gap G5)', () => {
  test('tree: [annotations] under each referrer; each manifest of the index with its referrers', async () => {
    const f = await multiPlatform('g5');
    const tree = await ok('discover', `${reg.host}/g5:v1`);
    assert.equal(
      tree,
      [
        `${reg.host}/g5@${f.index}`,
        `├── [sbom] application/spdx+json  ${f.sbom}`,
        '│   ├── [annotations]',
        '│   │   ├── org.example.tool: syft',
        '│   │   └── org.example.n: 1',
        `│   └── application/vnd.example.sig  ${f.sbomSig}`,
        `├── [manifest linux/amd64] ${MANIFEST}  ${f.amd64}`,
        `│   └── application/vnd.example.sig  ${f.amd64Sig}`,
        `└── [manifest linux/arm64/v8] ${MANIFEST}  ${f.arm64}`,
        '',
      ].join('\n'),
    );
  });

  test('json: annotations on each referrer, an index node lists its manifests; table: their referrers too', async () => {
    const f = await multiPlatform('g5j');
    const json = JSON.parse(await ok('discover', `${reg.host}/g5j:v1`, '--format', 'json'));
    assert.equal(json.digest, f.index);
    // Every node leads with its reference, as oras's JSON: the root resolved, not the tag typed.
    const at = (digest: string) => `${reg.host}/g5j@${digest}`;
    assert.deepEqual(
      [json.reference, json.referrers[0].reference, json.referrers[0].referrers[0].reference],
      [at(f.index), at(f.sbom), at(f.sbomSig)],
    );
    assert.deepEqual(Object.keys(json.referrers[0])[0], 'reference');
    assert.equal(json.manifests[0].reference, at(f.amd64));
    assert.deepEqual(json.referrers[0].annotations, { 'org.example.tool': 'syft', 'org.example.n': '1' });
    assert.deepEqual(
      json.manifests.map((m: { digest: string; referrers: { digest: string }[] }) => [
        m.digest,
        m.referrers.map((r) => r.digest),
      ]),
      [
        [f.amd64, [f.amd64Sig]],
        [f.arm64, []],
      ],
    );
    const table = (await ok('discover', `${reg.host}/g5j:v1`, '--format', 'table')).trim().split('\n');
    const rows = table.slice(1).map((line) => line.split(/\s+/));
    assert.deepEqual(
      rows.map(([depth, digest, , , subject]) => [depth, digest, subject]),
      [
        ['1', f.sbom, f.index],
        ['2', f.sbomSig, f.sbom],
        ['1', f.amd64Sig, f.amd64],
      ],
    );
    // --artifact-type filters the index's own referrers and its manifests' alike; --depth counts
    // referrers, not manifests.
    const sigs = JSON.parse(
      await ok(
        'discover',
        `${reg.host}/g5j:v1`,
        '--artifact-type',
        'application/vnd.example.sig',
        '--format',
        'json',
      ),
    );
    assert.deepEqual(sigs.referrers, []);
    assert.deepEqual(
      sigs.manifests[0].referrers.map((r: { digest: string }) => r.digest),
      [f.amd64Sig],
    );
    const shallow = JSON.parse(
      await ok('discover', `${reg.host}/g5j:v1`, '--depth', '1', '--format', 'json'),
    );
    assert.deepEqual(shallow.referrers[0].referrers, []);
    assert.equal(shallow.manifests[0].referrers.length, 1);
  });
});

describe('a subject that is not there (nit N7)', () => {
  test('a digest nothing holds or refers to is not found: exit 1, one line', async () => {
    await pushSmallImage(reg.host, 'n7', 'v1');
    for (const ref of [`${reg.host}/n7@${sha256('typo')}`, `${reg.host}/no-such-repo@${sha256('typo')}`]) {
      const r = await tether('discover', ref);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, `tether: ${ref}: not found (no such manifest, and nothing refers to it)\n`);
    }
  });

  test('an index whose manifest is an index that is not stored: shown as such, with its referrers', async () => {
    const amd64 = await pushSmallImage(reg.host, 'sparse', undefined, 'amd64');
    const client = new RegistryClient();
    const ref = { host: reg.host, repository: 'sparse' };
    // A nested index, deleted once the outer one was pushed (a registry may let it go, as this one
    // does; a layout copied in part lacks it the same way).
    const nestedBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: [] }));
    const nested = { mediaType: INDEX, digest: sha256(nestedBytes), size: nestedBytes.length };
    await client.putManifest(ref, nested.digest, nestedBytes, INDEX);
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: INDEX,
        manifests: [
          { mediaType: MANIFEST, ...amd64, platform: { os: 'linux', architecture: 'amd64' } },
          nested,
        ],
      }),
    );
    await client.putManifest(ref, 'v1', index, INDEX);
    await client.deleteManifest({ ...ref, digest: nested.digest });
    const sig = await client.pushArtifact(ref, {
      artifactType: 'application/vnd.example.sig',
      files: [],
      subject: nested,
    });
    const r = await tether('discover', `${reg.host}/sparse:v1`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        `${reg.host}/sparse@${sha256(index)}`,
        `├── [manifest linux/amd64] ${MANIFEST}  ${amd64.digest}`,
        `└── [manifest] ${INDEX}  ${nested.digest}  (not stored here)`,
        `    └── application/vnd.example.sig  ${sig.digest}`,
        '',
      ].join('\n'),
    );
    const json = JSON.parse(await ok('discover', `${reg.host}/sparse:v1`, '--format', 'json'));
    assert.deepEqual(json.manifests[1], {
      reference: `${reg.host}/sparse@${nested.digest}`,
      ...nested,
      absent: true,
      referrers: [{ ...json.manifests[1].referrers[0] }],
    });
    assert.equal(json.manifests[1].referrers[0].digest, sig.digest);
  });

  test('an absent subject with referrers: listed, with a note; the filter does not turn it into "not found"', async () => {
    const absent = { mediaType: MANIFEST, digest: sha256('never pushed'), size: 12 };
    const client = new RegistryClient();
    const ref = { host: reg.host, repository: 'n7r' };
    const referrer = await client.pushArtifact(ref, {
      artifactType: 'application/vnd.example.sig',
      files: [],
      subject: absent,
    });
    const at = `${reg.host}/n7r@${absent.digest}`;
    const r = await tether('discover', at);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${at}\n└── application/vnd.example.sig  ${referrer.digest}\n`);
    assert.equal(
      r.stderr,
      `note: ${absent.digest} itself is not in ${reg.host}/n7r; what refers to it there is listed\n`,
    );
    const json = JSON.parse(await ok('discover', at, '--format', 'json'));
    assert.deepEqual(
      Object.keys(json),
      ['reference', 'digest', 'referrers'],
      'no made-up media type or size',
    );
    const filtered = await tether('discover', at, '--artifact-type', 'application/x.other');
    assert.equal(filtered.code, 0, filtered.stderr);
    assert.equal(filtered.stdout, `${at}\n`);
  });
});

test('discover --verify on a layout takes the trust policy scope from --scope, and needs it', async () => {
  await ok('push', 'oci:dv:v1', 'file.txt', '--artifact-type', 'application/x.t');
  const chain = generateCertificateChain({ keyType: 'ec-p256' });
  await writeFile(join(home, 'leaf.key'), chain.leafPrivateKey);
  await writeFile(join(home, 'chain.pem'), chain.chain);
  const store = join(home, 'truststore');
  await addToTrustStore(store, 'ca', 'dv', { 'root.pem': chain.rootCertificate });
  const policy = join(home, 'trustpolicy.json');
  await writeFile(
    policy,
    strictTrustPolicy({
      name: 'dv',
      registryScopes: ['local/dv'],
      trustStores: ['ca:dv'],
      trustedIdentities: ['*'],
    }),
  );
  const signature = (await ok('sign', '-q', 'oci:dv:v1', '--key', 'leaf.key', '--cert', 'chain.pem')).trim();
  const trust = ['--trust-policy', policy, '--trust-store', store];
  const json = JSON.parse(
    await ok('discover', 'oci:dv:v1', '--verify', '--scope', 'local/dv', ...trust, '--format', 'json'),
  );
  assert.equal(json.referrers[0].digest, signature);
  assert.match(json.referrers[0].verification, /^verified \(policy "dv", signer .*\)$/);
  const unscoped = await tether('discover', 'oci:dv:v1', '--verify', ...trust);
  assert.equal(unscoped.code, 2);
  assert.match(unscoped.stderr, /--scope REGISTRY\/REPOSITORY/);
  const stray = await tether('discover', 'oci:dv:v1', '--scope', 'local/dv');
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /--scope goes with --verify/);
});
