/**
 * Cross-checks with the real notation CLI, through an OCI image layout (notation's experimental
 * `--oci-layout`), so no registry is needed: notation verifies what we sign, we verify what notation signs.
 * test/interop/run.sh installs notation first; without it this file fails rather than skips.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { Descriptor } from '../../src/oci/manifest.ts';
import { type GeneratedChain, generateCertificateChain, KEY_TYPES } from '../../src/sign/certs.ts';
import { formatRfc3339, signJwsEnvelope } from '../../src/sign/jws.ts';
import { JWS_ENVELOPE_MEDIA_TYPE, NOTARY_SIGNATURE_ARTIFACT_TYPE } from '../../src/sign/media-types.ts';
import { parseTrustPolicy } from '../../src/sign/trust-policy.ts';
import { addToTrustStore } from '../../src/sign/trust-store.ts';
import { verifyNotarySignature } from '../../src/sign/verify.ts';
import { strictTrustPolicy } from '../helpers/trust-policy.ts';

const NOTATION = resolve(import.meta.dirname, '../../.tools/bin/notation');
if (!existsSync(NOTATION))
  throw new Error('notation is not installed in .tools/bin: run scripts/ensure-tools.sh notation');
const run = promisify(execFile);
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const SCOPE = 'local/demo';

const tmp = mkdtempSync(join(tmpdir(), 'tether-notation-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;

/** An OCI layout with one tagged image manifest, plus a notation config dir trusting `chain`'s root. */
async function workspace(
  chain: GeneratedChain,
  trustedIdentity = 'x509.subject: C=US, ST=WA, O=Tether Test',
) {
  const root = join(tmp, `w${++counter}`);
  const layout = join(root, 'layout');
  const blobs = join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (bytes: Buffer) => {
    const hex = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(blobs, hex), bytes);
    return { digest: `sha256:${hex}`, size: bytes.length };
  };
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const config = put(Buffer.from('{}'));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [],
    }),
  );
  const target: Descriptor = { mediaType: MANIFEST, ...put(manifest) };
  const index = {
    schemaVersion: 2,
    manifests: [{ ...target, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
  };
  writeFileSync(join(layout, 'index.json'), JSON.stringify(index));

  const configDir = join(root, 'config');
  await addToTrustStore(join(configDir, 'truststore'), 'ca', 'tether', { 'root.pem': chain.rootCertificate });
  writeFileSync(
    join(configDir, 'trustpolicy.json'),
    strictTrustPolicy({
      name: 'interop',
      registryScopes: [SCOPE],
      trustStores: ['ca:tether'],
      trustedIdentities: [trustedIdentity],
    }),
  );
  writeFileSync(join(root, 'leaf.key'), chain.leafPrivateKey);
  writeFileSync(join(root, 'chain.pem'), chain.chain);
  writeFileSync(
    join(configDir, 'signingkeys.json'),
    JSON.stringify({
      default: 'k',
      keys: [{ name: 'k', keyPath: join(root, 'leaf.key'), certPath: join(root, 'chain.pem') }],
    }),
  );

  /** Adds a Shape-L signature manifest (what notation v1.3.2 writes) carrying `envelope`. */
  const attach = (envelope: Buffer) => {
    const layer = put(envelope);
    const sig = put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MANIFEST,
          config: { mediaType: NOTARY_SIGNATURE_ARTIFACT_TYPE, ...config },
          layers: [{ mediaType: JWS_ENVELOPE_MEDIA_TYPE, ...layer }],
          subject: target,
          annotations: { 'org.opencontainers.image.created': formatRfc3339(new Date()) },
        }),
      ),
    );
    index.manifests.push({ mediaType: MANIFEST, ...sig } as (typeof index.manifests)[number]);
    writeFileSync(join(layout, 'index.json'), JSON.stringify(index));
  };

  const notation = (args: string[]) =>
    run(NOTATION, args, {
      env: {
        PATH: process.env.PATH,
        NOTATION_EXPERIMENTAL: '1',
        NOTATION_CONFIG: configDir,
        XDG_CONFIG_HOME: join(root, 'xdg'),
        HOME: join(root, 'home'),
      },
    });

  /** Envelopes of every signature manifest in the layout whose subject is the target. */
  const envelopes = () => {
    const idx = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    return idx.manifests
      .map((d) => JSON.parse(readFileSync(join(blobs, d.digest.slice(7)), 'utf8')))
      .filter(
        (m) => m.subject?.digest === target.digest && m.config?.mediaType === NOTARY_SIGNATURE_ARTIFACT_TYPE,
      )
      .map((m) => readFileSync(join(blobs, m.layers[0].digest.slice(7))));
  };

  return { target, attach, notation, envelopes, configDir, ref: `${layout}@${target.digest}` };
}

describe('notation interop (OCI layout)', () => {
  for (const keyType of KEY_TYPES) {
    test(`${keyType}: notation verifies our signature; we verify notation's`, async () => {
      const chain = generateCertificateChain({ keyType });
      const w = await workspace(chain);

      // Ours → notation.
      w.attach(
        signJwsEnvelope({
          target: w.target,
          privateKeyPem: chain.leafPrivateKey,
          certificateChainPem: chain.chain,
        }),
      );
      const { stdout } = await w.notation(['verify', '--oci-layout', w.ref, '--scope', SCOPE]);
      assert.match(stdout, /Successfully verified signature/);

      // notation → ours.
      await w.notation(['sign', '--oci-layout', w.ref, '--key', 'k', '--expiry', '24h', '-m', 'team=blue']);
      const all = w.envelopes();
      assert.equal(all.length, 2);
      const theirs = all.find((e) => !e.toString().includes('"io.cncf.notary.signingAgent":"tether"'))!;
      const r = await verifyNotarySignature({
        envelope: theirs,
        envelopeMediaType: JWS_ENVELOPE_MEDIA_TYPE,
        artifactReference: SCOPE,
        target: w.target,
        policy: parseTrustPolicy(readFileSync(join(w.configDir, 'trustpolicy.json'))),
        trustStoreDir: join(w.configDir, 'truststore'),
        userMetadata: { team: 'blue' },
      });
      assert.equal(r.ok, true, JSON.stringify(r.results));
      assert.match(r.envelope!.signingAgent!, /^notation-go\//);
      assert.ok(r.envelope!.expiry);
    });
  }

  test('notation rejects our signature when the trusted identity does not match (the check can fail)', async () => {
    const chain = generateCertificateChain({ keyType: 'ec-p256' });
    const w = await workspace(chain, 'x509.subject: C=US, ST=WA, O=Someone Else');
    w.attach(
      signJwsEnvelope({
        target: w.target,
        privateKeyPem: chain.leafPrivateKey,
        certificateChainPem: chain.chain,
      }),
    );
    await assert.rejects(
      w.notation(['verify', '-v', '--oci-layout', w.ref, '--scope', SCOPE]),
      (err: { stdout: string; stderr: string }) =>
        /does not match the X\.509 trusted identities/.test(err.stdout + err.stderr),
    );
  });
});
