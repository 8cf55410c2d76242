import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ContentTarget } from '../../src/client/target.ts';
import { digestOf } from '../../src/oci/digest.ts';
import { verifyImage } from '../../src/sign/registry.ts';
import { parseTrustPolicy } from '../../src/sign/trust-policy.ts';

const SCOPE = 'registry.example/app';
const image = {
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: digestOf('sha256', Buffer.from('an image')),
  size: 8,
};

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
