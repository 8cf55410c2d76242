import { type Digest, digestOf, tryParseDigest } from '../oci/digest.ts';
import { errors, OciError } from '../oci/errors.ts';
import { parseManifest } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { isValidTag } from '../oci/reference.ts';
import { parseReferrersTag, referrersTagFor } from '../oci/referrers-tag.ts';
import { ifMatchAdmits, type StoredManifest, type TagPrecondition } from '../storage/meta/types.ts';
import type { RegistryContext } from './context.ts';
import { listReferrers } from './referrers.ts';

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
  const policy = ctx.policies.for(repo);
  const result = await ctx.meta.putManifest(record, tags, {
    ...(input.precondition
      ? { precondition: await effectivePrecondition(ctx, repo, tags[0], input.precondition) }
      : {}),
    requireSubject: policy.subjectPolicy === 'require',
  });
  if (result.status === 'subject-missing') {
    throw new OciError(
      400,
      'MANIFEST_BLOB_UNKNOWN',
      'subject does not exist in this repository (subjectPolicy: require); push the subject first',
      { digest: result.subject },
    );
  }
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
  const synthesized =
    reference.kind === 'tag'
      ? await servedFallbackIndex(ctx, repo, reference.tag)
      : await fallbackIndexByDigest(ctx, repo, reference.digest.value);
  if (synthesized) return synthesized;
  throw await unknownIn(ctx, repo, reference.kind === 'digest' ? reference.digest.value : reference.tag);
}

/** The 404 for a manifest that is not there: NAME_UNKNOWN when its repository is not there either. */
async function unknownIn(ctx: RegistryContext, repo: string, reference: string): Promise<OciError> {
  return (await ctx.meta.repositoryExists(repo))
    ? errors.manifestUnknown(reference)
    : errors.nameUnknown(repo);
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
    if (result === 'missing') throw await unknownIn(ctx, repo, reference.tag);
    if (result === 'precondition-failed') {
      throw new OciError(412, 'DENIED', 'precondition failed: the tag does not match If-Match', {
        tag: reference.tag,
      });
    }
    return;
  }
  // By digest the content is fixed: the manifest is the one named, and `*` admits it when it exists,
  // which the delete itself finds out.
  if (ifMatch && !ifMatchAdmits(ifMatch, reference.digest.value)) {
    throw new OciError(412, 'DENIED', 'precondition failed: If-Match does not name this manifest');
  }
  const cascade = ctx.policies.for(repo).onSubjectDelete === 'cascade';
  const deleted = await ctx.meta.deleteManifest(repo, reference.digest.value, { cascade });
  if (deleted.length === 0) throw await unknownIn(ctx, repo, reference.digest.value);
  if (cascade) {
    // The subject's fallback index would now list deleted manifests: it goes with them.
    await ctx.meta.deleteTag(repo, referrersTagFor(reference.digest));
  }
}

/**
 * The index a referrers-schema tag would hold, built from the referrers API, for a tag nobody pushed
 * (so tag-only clients see what API clients pushed). Undefined when disabled, not such a tag, or empty.
 */
async function synthesizeFallbackIndex(
  ctx: RegistryContext,
  repo: string,
  tag: string,
): Promise<{ subject: Digest; index: StoredManifest } | undefined> {
  const schema = ctx.options.serveFallbackTags ? parseReferrersTag(tag) : undefined;
  if (!schema) return undefined;
  const subjectValue = schema.complete
    ? schema.digestPrefix
    : (await ctx.meta.findSubjects(repo, schema.digestPrefix, 1))[0];
  const subject = subjectValue === undefined ? undefined : tryParseDigest(subjectValue);
  if (!subject) return undefined;
  const index = await referrersIndex(ctx, repo, subject);
  return index && { subject, index };
}

/** The subject's referrers as one OCI index; undefined when it has none. */
async function referrersIndex(
  ctx: RegistryContext,
  repo: string,
  subject: Digest,
): Promise<StoredManifest | undefined> {
  const page = await listReferrers(ctx, { repo, subject, artifactTypes: [], annotations: [], limit: 10_000 });
  if (!page.body.includes('"digest"')) return undefined;
  return {
    digest: digestOf('sha256', page.body),
    mediaType: MediaType.ociIndex,
    size: page.body.length,
    bytes: page.body,
  };
}

/**
 * A GET or HEAD of a referrers-schema tag nobody pushed. Its digest is noted, because clients resolve a
 * tag and then fetch what it resolved to by digest (containerd, `regctl`): that must answer too.
 */
async function servedFallbackIndex(
  ctx: RegistryContext,
  repo: string,
  tag: string,
): Promise<StoredManifest | undefined> {
  const synthesized = await synthesizeFallbackIndex(ctx, repo, tag);
  if (!synthesized) return undefined;
  await ctx.meta.noteServedFallbackIndex(repo, synthesized.subject.value, synthesized.index.digest);
  return synthesized.index;
}

/**
 * A served fallback index fetched by its digest: rebuilt, and answered while the referrer set is the
 * one it was built from. Once the set changes the old index is gone, as a replaced manifest would be
 * after garbage collection.
 */
async function fallbackIndexByDigest(
  ctx: RegistryContext,
  repo: string,
  digest: string,
): Promise<StoredManifest | undefined> {
  if (!ctx.options.serveFallbackTags) return undefined;
  const subjectValue = await ctx.meta.servedFallbackSubject(repo, digest);
  const subject = subjectValue === undefined ? undefined : tryParseDigest(subjectValue);
  if (!subject) return undefined;
  const index = await referrersIndex(ctx, repo, subject);
  return index?.digest === digest ? index : undefined;
}

/**
 * `If-Match` on a referrers-schema tag that only exists as a synthesized index: the client read our
 * synthesized answer and wants to replace it. Its ETag matches when the synthesized digest does; the
 * write then proceeds as "create the tag if still absent".
 */
async function effectivePrecondition(
  ctx: RegistryContext,
  repo: string,
  tag: string | undefined,
  precondition: TagPrecondition,
): Promise<TagPrecondition> {
  if (!precondition.ifMatch || tag === undefined || (await ctx.meta.getManifestByTag(repo, tag)))
    return precondition;
  const synthesized = await synthesizeFallbackIndex(ctx, repo, tag);
  if (synthesized && ifMatchAdmits(precondition.ifMatch, synthesized.index.digest))
    return { ifNoneMatchAny: true };
  return precondition;
}
