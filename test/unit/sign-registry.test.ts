import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { type ContentTarget, RegistryTarget } from '../../src/client/target.ts';
import { digestOf } from '../../src/oci/digest.ts';
import { verifyImage } from '../../src/sign/registry.ts';
import { parseTrustPolicy } from '../../src/sign/trust-policy.ts';

const SCOPE = 'registry.example/app';
const image = {
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: digestOf('sha256', Buffer.from('an image')),
  size: 8,
};

/**
 * A target that resolves `image`, lists `manifests` (by digest) as its signatures, serves them and any
 * blob (as `{}`), and records every call: what verifyImage touches. Anything else fails.
 */
function signatureTarget(
  manifests: Record<string, unknown>[],
  kind: 'registry' | 'layout' = 'registry',
): { target: ContentTarget; calls: string[] } {
  const calls: string[] = [];
  const stored = manifests.map((m) => {
    const bytes = Buffer.from(JSON.stringify(m));
    return {
      bytes,
      json: m,
      descriptor: { mediaType: MANIFEST, digest: digestOf('sha256', bytes), size: bytes.length },
    };
  });
  const target = {
    name: 'oci:fake',
    resolve: async () => {
      calls.push('resolve');
      return image;
    },
    referrers: async () => {
      calls.push('referrers');
      return stored.map((m) => m.descriptor);
    },
    fetchManifest: async (digest: string) => {
      calls.push(`fetchManifest ${stored.findIndex((m) => m.descriptor.digest === digest)}`);
      return stored.find((m) => m.descriptor.digest === digest)!;
    },
    // Shadows RegistryTarget's own reader, so that blobs come from openBlob.
    readBlob: undefined,
    openBlob: async () => {
      calls.push('openBlob');
      return Readable.from([Buffer.from('{}')]);
    },
  } as unknown as ContentTarget;
  // verifyImage tells a registry from a layout by class, as notation's rules differ between them.
  if (kind === 'registry') Object.setPrototypeOf(target, RegistryTarget.prototype);
  return { target, calls };
}

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const EMPTY = {
  mediaType: 'application/vnd.cncf.notary.signature',
  digest: digestOf('sha256', Buffer.from('{}')),
  size: 2,
};
const ENVELOPE = {
  mediaType: 'application/jose+json',
  digest: digestOf('sha256', Buffer.from('{}')),
  size: 2,
};
const signatureManifest = (over: Record<string, unknown> = {}) => ({
  schemaVersion: 2,
  mediaType: MANIFEST,
  config: EMPTY,
  layers: [ENVELOPE],
  subject: image,
  ...over,
});

/** A target that resolves `image` and fails (and records) any other call: what verifyImage touches. */
function recordingTarget(): { target: ContentTarget; calls: string[] } {
  const calls: string[] = [];
  const target = new Proxy({ name: 'oci:fake' } as unknown as ContentTarget, {
    get(base, prop) {
      if (prop === 'name' || typeof prop === 'symbol' || prop === 'then') return Reflect.get(base, prop);
      return async () => {
        calls.push(String(prop));
        if (prop === 'resolve') return image;
        throw new Error(`${String(prop)} must not be called`);
      };
    },
  });
  return { target, calls };
}

const policy = (level: string) =>
  parseTrustPolicy({
    version: '1.0',
    trustPolicies: [
      {
        name: level,
        registryScopes: [SCOPE],
        signatureVerification: { level },
        ...(level === 'skip' ? {} : { trustStores: ['ca:x'], trustedIdentities: ['*'] }),
      },
    ],
  });

describe('verifyImage at level skip (audit F8)', () => {
  test('passes without listing or fetching signatures, as notation does', async () => {
    const { target, calls } = recordingTarget();
    const result = await verifyImage(target, 'v1', {
      policy: policy('skip'),
      trustStoreDir: '/nonexistent',
      scope: SCOPE,
    });
    assert.equal(result.ok, true);
    assert.match(result.reason!, /trust policy "skip" skips verification/);
    assert.deepEqual(result.signatures, []);
    assert.deepEqual(calls, ['resolve']);
  });
  test('any other level lists the signatures', async () => {
    const { target, calls } = recordingTarget();
    await assert.rejects(
      verifyImage(target, 'v1', { policy: policy('audit'), trustStoreDir: '/nonexistent', scope: SCOPE }),
      /referrers must not be called/,
    );
    assert.deepEqual(calls, ['resolve', 'referrers']);
  });
  test('a reference no statement covers fails before anything is listed', async () => {
    const { target, calls } = recordingTarget();
    await assert.rejects(
      verifyImage(target, 'v1', { policy: policy('skip'), trustStoreDir: '/x', scope: 'other.example/app' }),
      /no applicable oci trust policy statement/,
    );
    assert.deepEqual(calls, ['resolve']);
  });
});

describe('verifyImage: a signature notation cannot retrieve fails the verification, as in notation', () => {
  const verify = (target: ContentTarget) =>
    verifyImage(target, 'v1', { policy: policy('strict'), trustStoreDir: '/nonexistent', scope: SCOPE });

  test('two layers: the verification ends there, the next signature is never fetched', async () => {
    const { target, calls } = signatureTarget([
      signatureManifest({ layers: [ENVELOPE, ENVELOPE] }),
      signatureManifest(),
    ]);
    const r = await verify(target);
    assert.equal(r.ok, false);
    assert.match(
      r.reason!,
      /^unable to retrieve the signature sha256:\w+: a signature manifest has exactly one layer, this has 2$/,
    );
    assert.deepEqual(calls, ['resolve', 'referrers', 'fetchManifest 0']);
    assert.equal(r.signatures[0]?.unretrievable, true);
  });
  test('an image manifest read by Go: "blobs" is no layer list, a "Layers" key has two readings', async () => {
    for (const [manifest, reason] of [
      [{ ...signatureManifest(), layers: undefined, blobs: [ENVELOPE] }, /exactly one layer, this has 0/],
      [
        { ...signatureManifest(), Layers: [] },
        /"Layers", which differs from the field "layers" only in case/,
      ],
    ] as const) {
      const { target } = signatureTarget([manifest, signatureManifest()]);
      const r = await verify(target);
      assert.equal(r.ok, false);
      assert.match(r.reason!, reason);
    }
  });
  test("a manifest only Tether's rules refuse is skipped, and the next one is tried", async () => {
    const { target, calls } = signatureTarget([
      signatureManifest({ artifactType: 'application/vnd.cncf.notary.signature' }),
      signatureManifest({ subject: { ...image, digest: digestOf('sha256', Buffer.from('another')) } }),
      signatureManifest(),
    ]);
    const r = await verify(target);
    assert.match(r.signatures[0]!.skipped!, /neither artifactType nor config shape/);
    assert.match(r.signatures[1]!.skipped!, /its subject is not/);
    assert.ok(r.signatures[2]?.result, 'the third signature is evaluated');
    assert.ok(calls.includes('fetchManifest 2'));
  });
});

describe('verifyImage in an OCI layout: what notation v1.3.2 lists as signatures there', () => {
  const verify = (target: ContentTarget, maxSignatures?: number) =>
    verifyImage(target, 'v1', {
      policy: policy('strict'),
      trustStoreDir: '/nonexistent',
      scope: SCOPE,
      ...(maxSignatures ? { maxSignatures } : {}),
    });

  test("the spec's artifactType shape (empty config) is no signature there: none is associated", async () => {
    const shapeA = signatureManifest({
      artifactType: 'application/vnd.cncf.notary.signature',
      config: { ...EMPTY, mediaType: 'application/vnd.oci.empty.v1+json' },
    });
    const layout = await verify(signatureTarget([shapeA], 'layout').target);
    assert.equal(layout.ok, false);
    assert.match(layout.reason!, /^no signature is associated with/);
    assert.match(
      layout.signatures[0]!.skipped!,
      /does not take it for a signature in an OCI layout: its config media type is "application\/vnd\.oci\.empty\.v1\+json"/,
    );
    // On a registry it is evaluated (and fails here only because its envelope is `{}`).
    const registry = await verify(signatureTarget([shapeA], 'registry').target);
    assert.ok(registry.signatures[0]?.result);
  });
  test('a subject that is not the exact descriptor of the image is no signature there', async () => {
    for (const subject of [
      { ...image, size: 9 },
      { ...image, mediaType: 'application/vnd.oci.image.index.v1+json' },
    ]) {
      const r = await verify(signatureTarget([signatureManifest({ subject })], 'layout').target);
      assert.match(r.reason!, /^no signature is associated with/);
    }
  });
  test('unlisted manifests do not count towards --max-signatures', async () => {
    const shapeA = signatureManifest({
      config: { ...EMPTY, mediaType: 'application/vnd.oci.empty.v1+json' },
    });
    const r = await verify(signatureTarget([shapeA, shapeA, signatureManifest()], 'layout').target, 1);
    assert.equal(r.signatures.length, 3);
    assert.ok(r.signatures[2]?.result, 'the one real signature is evaluated');
  });
});
