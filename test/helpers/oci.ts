import { createHash } from 'node:crypto';

/** Small raw-HTTP helpers for tests: they speak the wire protocol directly, no client library. */

export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function pushBlob(base: string, repo: string, data: Uint8Array | string): Promise<string> {
  const digest = sha256(data);
  const res = await fetch(`${base}/v2/${repo}/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    body: typeof data === 'string' ? data : Buffer.from(data),
    headers: { 'Content-Type': 'application/octet-stream' },
  });
  if (res.status !== 201) throw new Error(`blob push failed: ${res.status} ${await res.text()}`);
  return digest;
}

export interface PushedManifest {
  digest: string;
  bytes: Buffer;
  response: Response;
}

export async function pushManifest(
  base: string,
  repo: string,
  reference: string,
  manifest: object | string,
  mediaType = 'application/vnd.oci.image.manifest.v1+json',
  headers: Record<string, string> = {},
): Promise<PushedManifest> {
  const bytes = Buffer.from(typeof manifest === 'string' ? manifest : JSON.stringify(manifest));
  const response = await fetch(`${base}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    body: bytes,
    headers: { 'Content-Type': mediaType, ...headers },
  });
  return { digest: sha256(bytes), bytes, response };
}

/** Pushes a config blob and one layer, then an image manifest referencing them, tagged `tag`. */
export async function pushImage(
  base: string,
  repo: string,
  tag: string,
  layer: string | Uint8Array = `layer-${Math.random()}`,
): Promise<PushedManifest & { config: string; layer: string }> {
  const configBytes = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: [] },
  });
  const config = await pushBlob(base, repo, configBytes);
  const layerDigest = await pushBlob(base, repo, layer);
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: config,
      size: Buffer.byteLength(configBytes),
    },
    layers: [
      {
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: layerDigest,
        size: typeof layer === 'string' ? Buffer.byteLength(layer) : layer.length,
      },
    ],
  };
  const pushed = await pushManifest(base, repo, tag, manifest);
  if (pushed.response.status !== 201) throw new Error(`manifest push failed: ${pushed.response.status}`);
  return { ...pushed, config, layer: layerDigest };
}

/**
 * Pushes a signature-like referrer of `subject` (an image manifest: empty config and layer,
 * artifactType `application/vnd.example.sig`) by its digest; the response is the caller's to check.
 */
export async function pushSignatureOf(
  base: string,
  repo: string,
  subject: { digest: string; bytes: Buffer },
): Promise<PushedManifest> {
  const empty = {
    mediaType: 'application/vnd.oci.empty.v1+json',
    digest: await pushBlob(base, repo, '{}'),
    size: 2,
  };
  const referrer = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: 'application/vnd.example.sig',
    config: empty,
    layers: [empty],
    subject: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: subject.digest,
      size: subject.bytes.length,
    },
  };
  return pushManifest(base, repo, sha256(JSON.stringify(referrer)), referrer);
}
