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
