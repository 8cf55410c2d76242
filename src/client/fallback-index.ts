import { tryParseDigest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { bareMediaType, MediaType } from '../oci/mediatypes.ts';

/**
 * What a referrers fallback tag (`<alg>-<hex>`) holds: an image index and its well-formed entries, or
 * something else, described for an error message.
 */
export type FallbackContent = { index: true; manifests: Descriptor[] } | { index: false; holds: string };

/** Manifest types that are positively not an OCI image index. */
const OTHER_MANIFESTS = new Set<string>([
  MediaType.ociManifest,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
  MediaType.dockerSchema1,
  MediaType.dockerSchema1Signed,
]);

/**
 * Reads a fallback tag's content: `bytes` as fetched, `contentType` the registry's Content-Type (or the
 * layout entry's media type). An index's `mediaType` field is a SHOULD (image-spec), not a MUST, so a
 * body without one is an index when it has a `manifests` array and neither the field nor the
 * Content-Type names another manifest type; oras and regctl read such an index too. Only an
 * explicitly different type, a body without `manifests`, or one that is not JSON is "not an index":
 * readers then see no referrers, and writers must stop rather than overwrite it (distribution-spec
 * §"Referrers Tag Schema", client step 2). Entries without a valid digest and a numeric size are
 * dropped.
 */
export function readFallbackIndex(bytes: Uint8Array, contentType: string | undefined): FallbackContent {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return { index: false, holds: 'content that is not JSON' };
  }
  if (!json || typeof json !== 'object' || Array.isArray(json))
    return { index: false, holds: 'JSON that is not a manifest' };
  const { mediaType, manifests } = json as { mediaType?: unknown; manifests?: unknown };
  const header = bareMediaType(contentType);
  if (mediaType !== undefined && mediaType !== MediaType.ociIndex)
    return { index: false, holds: describe(typeof mediaType === 'string' ? mediaType : undefined) };
  if (mediaType === undefined && header && OTHER_MANIFESTS.has(header))
    return { index: false, holds: describe(header) };
  if (!Array.isArray(manifests)) return { index: false, holds: 'a manifest without a manifests list' };
  return {
    index: true,
    manifests: (manifests as Descriptor[]).filter(
      (d) => typeof d?.digest === 'string' && tryParseDigest(d.digest) && typeof d.size === 'number',
    ),
  };
}

function describe(type: string | undefined): string {
  if (type === MediaType.ociManifest || type === MediaType.dockerManifest)
    return `an image manifest (${type})`;
  if (type === MediaType.dockerManifestList) return `a Docker manifest list (${type})`;
  return type ? `a manifest of type ${type}` : 'a manifest whose mediaType is not a string';
}
