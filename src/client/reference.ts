import { tryParseDigest } from '../oci/digest.ts';
import { isValidRepositoryName, isValidTag } from '../oci/reference.ts';

/** `HOST[:PORT]/REPO[:TAG][@DIGEST]`: a registry reference as clients write it. */
export interface ImageReference {
  host: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export function parseImageReference(value: string): ImageReference {
  const slash = value.indexOf('/');
  if (slash <= 0) throw new Error(`"${value}" needs a registry host: HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]`);
  const host = value.slice(0, slash);
  let rest = value.slice(slash + 1);
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!tryParseDigest(digest)) throw new Error(`"${digest}" is not a valid sha256/sha512 digest`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) throw new Error(`"${tag}" is not a valid tag`);
  }
  if (!isValidRepositoryName(rest)) throw new Error(`"${rest}" is not a valid repository name`);
  return { host, repository: rest, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

export function formatReference(ref: ImageReference): string {
  return `${ref.host}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** Either side of a copy: a registry reference or an OCI image layout directory. */
export type Endpoint =
  | { kind: 'registry'; ref: ImageReference }
  | { kind: 'layout'; dir: string; tag?: string; digest?: string };

/**
 * `HOST/REPO[:TAG][@DIGEST]`, or a layout as `oci:DIR[:TAG][@DIGEST]` (skopeo's and Tether's spelling)
 * or `ocidir://DIR[:TAG][@DIGEST]` (regctl's). A layout reference reads as a registry one does: a
 * digest at the end, then a tag after the last `/` (so `oci:out:v1@sha256:…` is the directory `out`,
 * tag `v1`, and that digest; a colon in a directory name before the last `/` is not a tag).
 */
export function parseEndpoint(value: string): Endpoint {
  const prefix = layoutPrefix(value);
  if (!prefix) {
    if (value.indexOf('/') <= 0)
      throw new Error(
        `"${value}" needs a registry host (HOST[:PORT]/REPOSITORY[:TAG][@DIGEST]) or, for an OCI image layout, the oci: prefix (oci:DIR[:TAG][@DIGEST])`,
      );
    return { kind: 'registry', ref: parseImageReference(value) };
  }
  let dir = value.slice(prefix.length);
  let digest: string | undefined;
  let tag: string | undefined;
  const at = dir.lastIndexOf('@');
  if (at >= 0 && tryParseDigest(dir.slice(at + 1))) {
    digest = dir.slice(at + 1);
    dir = dir.slice(0, at);
  }
  const colon = dir.lastIndexOf(':');
  if (colon > dir.lastIndexOf('/') && colon > 0) {
    tag = dir.slice(colon + 1);
    dir = dir.slice(0, colon);
    if (!isValidTag(tag)) throw new Error(`"${tag}" is not a valid tag`);
  }
  if (!dir) throw new Error(`"${value}" names no layout directory: oci:DIR[:TAG|@DIGEST]`);
  return { kind: 'layout', dir, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** Whether `value` names an OCI image layout (`oci:DIR…` or `ocidir://DIR…`) rather than a registry. */
export function isLayoutReference(value: string): boolean {
  return layoutPrefix(value) !== undefined;
}

function layoutPrefix(value: string): 'oci:' | 'ocidir://' | undefined {
  return value.startsWith('oci:') ? 'oci:' : value.startsWith('ocidir://') ? 'ocidir://' : undefined;
}
