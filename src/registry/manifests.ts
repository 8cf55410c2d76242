import { type Digest, digestOf, tryParseDigest } from '../oci/digest.ts';
import { errors, OciError } from '../oci/errors.ts';
import { parseManifest } from '../oci/manifest.ts';
import { isValidTag } from '../oci/reference.ts';
import type { StoredManifest, TagPrecondition } from '../storage/meta/types.ts';
import type { RegistryContext } from './context.ts';

/** A manifest reference from the URL: exactly a digest or a tag, nothing else. */
export type ManifestReference = { kind: 'digest'; digest: Digest } | { kind: 'tag'; tag: string };

/**
 * Parses `<reference>`. Anything with a colon must be a valid, supported digest (400 otherwise); anything
 * else must be a valid tag. `onInvalidTag` picks the answer for bad tags: reads answer 404 (nothing can
 * exist under an invalid name, and the conformance suite expects that), writes answer 400.
 */
export function parseReference(value: string, onInvalidTag: 'not-found' | 'invalid'): ManifestReference {
  if (value.includes(':')) {
    const digest = tryParseDigest(value);
    if (!digest)
      throw errors.digestInvalid('invalid or unsupported digest', { reference: value.slice(0, 200) });
    return { kind: 'digest', digest };
  }
  if (!isValidTag(value)) {
    if (onInvalidTag === 'not-found') throw errors.manifestUnknown(value.slice(0, 200));
    throw errors.manifestInvalid('invalid tag', { tag: value.slice(0, 200) });
  }
  return { kind: 'tag', tag: value };
}

export interface PutManifestInput {
  repo: string;
  reference: ManifestReference;
  body: Buffer;
  contentType: string | undefined;
  /** Extra tags from `?tag=` (distribution-spec main). */
  extraTags: string[];
  precondition?: TagPrecondition;
}

export interface PutManifestOutcome {
  digest: string;
  subject?: string;
  tags: string[];
}

export async function putManifest(
  ctx: RegistryContext,
  input: PutManifestInput,
): Promise<PutManifestOutcome> {
  const { repo, reference, body } = input;
  const algorithm = reference.kind === 'digest' ? reference.digest.algorithm : 'sha256';
  const digest = digestOf(algorithm, body);
  if (reference.kind === 'digest' && reference.digest.value !== digest) {
    throw errors.digestInvalid('manifest content does not match the digest in the URL', {
      expected: reference.digest.value,
      actual: digest,
    });
  }
  for (const tag of input.extraTags) {
    if (!isValidTag(tag)) throw errors.manifestInvalid('invalid tag in ?tag=', { tag: tag.slice(0, 200) });
  }
  const tags = [...new Set([...(reference.kind === 'tag' ? [reference.tag] : []), ...input.extraTags])];
  const parsed = parseManifest(body, input.contentType);

  const record = {
    repo,
    digest,
    mediaType: parsed.mediaType,
    size: body.length,
    bytes: body,
    blobs: parsed.blobs.map((d) => d.digest),
    children: parsed.children.map((d) => d.digest),
    ...(parsed.artifactType ? { artifactType: parsed.artifactType } : {}),
    ...(parsed.subject ? { subjectDigest: parsed.subject.digest } : {}),
    ...(parsed.annotations ? { annotations: parsed.annotations } : {}),
  };
  const result = await ctx.meta.putManifest(record, tags, input.precondition);
  if (result.status === 'missing') {
    throw OciError.many(
      400,
      result.missing.map((d) => ({
        code: 'MANIFEST_BLOB_UNKNOWN' as const,
        message: 'manifest references a blob or manifest unknown to this repository',
        detail: { digest: d },
      })),
    );
  }
  if (result.status === 'precondition-failed') {
    throw new OciError(412, 'DENIED', 'precondition failed: the tag does not match If-Match/If-None-Match', {
      tag: tags[0],
      current: result.current ?? null,
    });
  }
  return { digest, tags, ...(parsed.subject ? { subject: parsed.subject.digest } : {}) };
}

export async function getManifest(
  ctx: RegistryContext,
  repo: string,
  reference: ManifestReference,
): Promise<StoredManifest> {
  const manifest =
    reference.kind === 'digest'
      ? await ctx.meta.getManifest(repo, reference.digest.value)
      : await ctx.meta.getManifestByTag(repo, reference.tag);
  if (manifest) return manifest;
  if (!(await ctx.meta.repositoryExists(repo))) throw errors.nameUnknown(repo);
  throw errors.manifestUnknown(reference.kind === 'digest' ? reference.digest.value : reference.tag);
}

export async function deleteManifest(
  ctx: RegistryContext,
  repo: string,
  reference: ManifestReference,
  ifMatch?: string[],
): Promise<void> {
  if (!ctx.options.deleteEnabled) throw errors.unsupported('deletion is disabled on this registry');
  if (reference.kind === 'tag') {
    const result = await ctx.meta.deleteTag(repo, reference.tag, ifMatch);
    if (result === 'missing') throw errors.manifestUnknown(reference.tag);
    if (result === 'precondition-failed') {
      throw new OciError(412, 'DENIED', 'precondition failed: the tag does not match If-Match', {
        tag: reference.tag,
      });
    }
    return;
  }
  if (ifMatch && !ifMatch.includes(reference.digest.value)) {
    throw new OciError(412, 'DENIED', 'precondition failed: If-Match does not name this manifest');
  }
  if (!(await ctx.meta.deleteManifest(repo, reference.digest.value))) {
    throw errors.manifestUnknown(reference.digest.value);
  }
}
