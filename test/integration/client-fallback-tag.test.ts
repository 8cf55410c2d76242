import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/client/client.ts';
import { parseImageReference } from '../../src/client/reference.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { pushBlob, pushImage, pushManifest, sha256 } from '../helpers/oci.ts';

/**
 * The client's side of the referrers fallback tag (audit-ref findings 2, 3, 6 and 7), against a real
 * Tether. `tagOnly` serves pushed fallback tags as they are and synthesizes none, so a client in tag
 * mode sees exactly what clients wrote there, as on a registry without the referrers API.
 */
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const EMPTY = { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 };
const anonymous = { credentials: async () => undefined };

/** Pushes an artifact (by digest) of `artifactType`, referring to `subject` when given. */
async function pushArtifact(
  base: string,
  repo: string,
  artifactType: string,
  subject?: { digest: string; size: number },
) {
  await pushBlob(base, repo, '{}');
  const body = {
    schemaVersion: 2,
    mediaType: MANIFEST,
    artifactType,
    config: EMPTY,
    layers: [EMPTY],
    ...(subject ? { subject: { mediaType: MANIFEST, ...subject } } : {}),
  };
  const digest = sha256(JSON.stringify(body));
  const pushed = await pushManifest(base, repo, digest, body);
  assert.equal(pushed.response.status, 201, await pushed.response.clone().text());
  return { digest, size: pushed.bytes.length, artifactType };
}

async function fallbackEntries(base: string, repo: string, subject: string): Promise<string[]> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${subject.replace(':', '-')}`, {
    headers: { Accept: INDEX },
  });
  assert.equal(res.status, 200);
  return ((await res.json()) as { manifests: { digest: string }[] }).manifests.map((d) => d.digest).sort();
}

describe('client: fallback tag', () => {
  let reg: RunningRegistry;
  const tagMode = new RegistryClient({ referrersMode: 'tag', ...anonymous });

  before(async () => {
    reg = await startRegistry({
      settings: { 'referrers.mergeFallbackTags': false, 'referrers.serveFallbackTags': false },
    });
  });
  after(async () => {
    await reg?.close();
  });

  test('an index without mediaType under the tag is read, and attach keeps its entries (finding 2)', async () => {
    const image = await pushImage(reg.url, 'nomt', 'v1');
    const first = await pushArtifact(reg.url, 'nomt', 'application/vnd.first', {
      digest: image.digest,
      size: image.bytes.length,
    });
    // Another tool's index, without the optional top-level mediaType; the Content-Type says what it is.
    const index = { schemaVersion: 2, manifests: [{ mediaType: MANIFEST, ...first }] };
    const put = await pushManifest(reg.url, 'nomt', image.digest.replace(':', '-'), index, INDEX);
    assert.equal(put.response.status, 201);

    const subject = { ...parseImageReference(`${reg.host}/nomt`), digest: image.digest };
    assert.deepEqual(
      (await tagMode.referrers(subject)).map((d) => d.digest),
      [first.digest],
    );
    const second = await tagMode.attach(subject, 'application/spdx+json', [
      { mediaType: 'application/spdx+json', title: 'sbom.json', bytes: Buffer.from('{}') },
    ]);
    assert.deepEqual(
      await fallbackEntries(reg.url, 'nomt', image.digest),
      [first.digest, second.digest].sort(),
      "the other tool's entry is kept",
    );
  });
});
