import { type Digest, type DigestAlgorithm, digestOf, tryParseDigest } from '../oci/digest.ts';
import { errors, OciError, type OciErrorCode } from '../oci/errors.ts';
import { checkInlineData, type InlineDataProblem, type InlinedDescriptor } from '../oci/inline-data.ts';
import { parseManifest } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { isValidTag } from '../oci/reference.ts';
import { parseReferrersTag, referrersTagFor } from '../oci/referrers-tag.ts';
import { ifMatchAdmits, type StoredManifest, type TagPrecondition } from '../storage/meta/types.ts';
import type { RegistryContext } from './context.ts';
import { ReferrersIndexTooLarge, wholeReferrersIndex } from './referrers.ts';

/** A manifest reference from the URL: exactly a digest or a tag, nothing else. */
export type ManifestReference = { kind: 'digest'; digest: Digest } | { kind: 'tag'; tag: string };

/**
 * The references a refused manifest PUT names one by one (missing, of the wrong size, or with `data`
 * that is not their content); the rest are counted in one more error. A 4 MiB manifest of 44 k unknown
 * layers got a 7.6 MB error answer listing every digest.
 */
const MAX_NAMED_REFERENCES = 100;

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
  // The manifest's own consistency: before any lookup, and whether or not the blobs exist.
  const badData = inlineDataProblems(parsed.inlined);
  if (badData.length > 0) {
    throw refusedReferences(
      'MANIFEST_INVALID',
      badData,
      describeDataProblem,
      (more) => `and ${more} more descriptors whose data is not their content, not listed`,
    );
  }

  const record = {
    repo,
    digest,
    mediaType: parsed.mediaType,
    size: body.length,
    bytes: body,
    blobs: parsed.blobs,
    children: parsed.children,
    ...(parsed.artifactType ? { artifactType: parsed.artifactType } : {}),
    ...(parsed.subject ? { subjectDigest: parsed.subject.digest } : {}),
    ...(parsed.annotations ? { annotations: parsed.annotations } : {}),
  };
  const policy = ctx.policies.for(repo);
  const precondition =
    input.precondition && (await effectivePrecondition(ctx, repo, tags[0], input.precondition));
  if (precondition && 'failedAgainst' in precondition) {
    throw new OciError(412, 'DENIED', 'precondition failed: the tag does not match If-Match/If-None-Match', {
      tag: tags[0],
      current: precondition.failedAgainst,
    });
  }
  const result = await ctx.meta.putManifest(record, tags, {
    ...(precondition ? { precondition } : {}),
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
    throw refusedReferences(
      'MANIFEST_BLOB_UNKNOWN',
      result.missing,
      (digest) => ({
        message: 'manifest references a blob or manifest unknown to this repository',
        detail: { digest },
      }),
      (more) => `and ${more} more references unknown to this repository, not listed`,
    );
  }
  if (result.status === 'size-mismatch') {
    throw refusedReferences(
      'MANIFEST_INVALID',
      result.mismatched,
      ({ digest, declared, stored }) => ({
        message: 'descriptor size does not match the size of the blob or manifest stored under its digest',
        detail: { digest, declared, stored },
      }),
      (more) => `and ${more} more descriptors whose size does not match, not listed`,
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

type BadData = InlinedDescriptor & { problem: InlineDataProblem };

/** Every descriptor whose `data` is not its content, each with why. */
function inlineDataProblems(inlined: readonly InlinedDescriptor[]): BadData[] {
  const bad: BadData[] = [];
  for (const descriptor of inlined) {
    const problem = checkInlineData(descriptor);
    if (problem) bad.push({ ...descriptor, problem });
  }
  return bad;
}

function describeDataProblem({ where, digest, size, problem }: BadData): {
  message: string;
  detail: unknown;
} {
  const at = { digest, descriptor: where };
  switch (problem.kind) {
    case 'type':
      return { message: 'descriptor data must be a base64 string', detail: { ...at, type: problem.type } };
    case 'encoding':
      return {
        message: `descriptor data is not standard padded base64 (RFC 4648 section 4): ${problem.reason}`,
        detail: at,
      };
    case 'size':
      return {
        message: 'descriptor data does not decode to as many bytes as the descriptor declares',
        detail: { ...at, declared: size, decoded: problem.decoded },
      };
    case 'digest':
      return {
        message: 'descriptor data does not match the descriptor digest',
        detail: { ...at, computed: problem.computed },
      };
  }
}

/**
 * A 400 with one error per refused reference, for the first `MAX_NAMED_REFERENCES`, and one more error
 * counting the rest (`detail.unlisted`).
 */
function refusedReferences<T>(
  code: OciErrorCode,
  refused: readonly T[],
  describe: (reference: T) => { message: string; detail: unknown },
  unlisted: (more: number) => string,
): OciError {
  const named = refused.slice(0, MAX_NAMED_REFERENCES);
  const more = refused.length - named.length;
  return OciError.many(400, [
    ...named.map((reference) => ({ code, ...describe(reference) })),
    ...(more > 0 ? [{ code, message: unlisted(more), detail: { unlisted: more } }] : []),
  ]);
}

export async function getManifest(
  ctx: RegistryContext,
  repo: string,
  reference: ManifestReference,
): Promise<StoredManifest> {
  if (reference.kind === 'digest') {
    const manifest = await ctx.meta.getManifest(repo, reference.digest.value);
    if (manifest) return manifest;
    const served = await fallbackIndexByDigest(ctx, repo, reference.digest.value);
    if (served) return served;
    throw await unknownIn(ctx, repo, reference.digest.value);
  }
  const stored = await ctx.meta.getManifestByTag(repo, reference.tag);
  // Any other tag is the stored manifest and nothing else: one query, as before.
  if (!parseReferrersTag(reference.tag)) {
    if (stored) return stored;
    throw await unknownIn(ctx, repo, reference.tag);
  }
  const view = await fallbackTagView(ctx, repo, reference.tag, stored);
  if (!view) throw await unknownIn(ctx, repo, reference.tag);
  // Clients resolve a tag and then fetch what it resolved to by digest (containerd, `regctl`): a built
  // index's digest is noted so that it answers too.
  if (view.builtFor !== undefined)
    await ctx.meta.noteServedFallbackIndex(repo, view.builtFor, view.index.digest);
  return view.index;
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
    const precondition = ifMatch && (await effectivePrecondition(ctx, repo, reference.tag, { ifMatch }));
    const result =
      precondition && 'failedAgainst' in precondition
        ? 'precondition-failed'
        : await ctx.meta.deleteTag(repo, reference.tag, precondition?.ifMatch);
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
  // With cascade the subject's fallback index would list deleted manifests: it goes with them, in the
  // same transaction (a crash in between would leave it serving them, and a retried DELETE, finding
  // no subject, could not finish the job).
  const deleted = await ctx.meta.deleteManifest(
    repo,
    reference.digest.value,
    cascade ? { cascade, dropTags: [referrersTagFor(reference.digest)] } : {},
  );
  if (deleted.length === 0) throw await unknownIn(ctx, repo, reference.digest.value);
}

/**
 * What GET or HEAD of a referrers-schema tag answers (docs/referrers.md, "One truth for old and new
 * clients"). The tag stands for the subject's referrers, as the API lists them:
 * - pushed, an OCI index that lists exactly those referrers (by digest): the stored index, byte-exact;
 * - pushed, an OCI index that lists anything else (a referrer pushed through the API since, one deleted
 *   since, a manifest that does not name the subject): an index of the referrers, built with the pushed
 *   index's own top-level fields (`annotations`, `artifactType`...); `mergeFallbackTags: false` serves
 *   the pushed index instead, whatever it lists;
 * - pushed, anything but an OCI index: the stored manifest (it is an ordinary tag);
 * - not pushed: an index of the referrers, or nothing when there are none (`serveFallbackTags`).
 * `builtFor` is set when the index was built rather than stored: the subject its digest is noted for.
 */
interface FallbackView {
  index: StoredManifest;
  builtFor?: string;
}

async function fallbackTagView(
  ctx: RegistryContext,
  repo: string,
  tag: string,
  stored: StoredManifest | undefined,
): Promise<FallbackView | undefined> {
  const schema = parseReferrersTag(tag);
  const joined = stored
    ? ctx.options.mergeFallbackTags && stored.mediaType === MediaType.ociIndex
    : ctx.options.serveFallbackTags;
  if (!schema || !joined) return stored && { index: stored };
  // A sha512 tag carries 64 of the 128 hex: the subject is the one whose referrers have that prefix.
  const subjectValue = schema.complete
    ? schema.digestPrefix
    : (await ctx.meta.findSubjects(repo, schema.digestPrefix, 1))[0];
  const subject = subjectValue === undefined ? undefined : tryParseDigest(subjectValue);
  if (stored && (await ctx.meta.listsExactlyTheReferrers(repo, stored.digest, subject?.value)))
    return { index: stored };
  if (!stored && !subject) return undefined;
  const index = await referrersIndex(ctx, repo, subject, stored ? ownFields(stored.bytes) : '');
  if (!stored && !index.hasEntries) return undefined;
  return { index: index.manifest, builtFor: subject?.value ?? schema.digestPrefix };
}

/** A pushed index's top-level fields other than schemaVersion, mediaType and manifests, as JSON members. */
function ownFields(bytes: Buffer): string {
  const index = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  let members = '';
  for (const [key, value] of Object.entries(index)) {
    if (key !== 'schemaVersion' && key !== 'mediaType' && key !== 'manifests')
      members += `,${JSON.stringify(key)}:${JSON.stringify(value)}`;
  }
  return members;
}

/**
 * The subject's referrers as one OCI index (none when `subject` is undefined), with `fields` appended:
 * all of them, or a 409 when they exceed the manifest size limit. The limit is the largest index a
 * client could write back under the tag here (and the spec's 4 MB guidance by default, which is what
 * clients size their manifest reads for: oras-go refuses larger ones).
 */
async function referrersIndex(
  ctx: RegistryContext,
  repo: string,
  subject: Digest | undefined,
  fields: string,
): Promise<{ manifest: StoredManifest; hasEntries: boolean }> {
  const { body, entries } = await wholeReferrersIndex(
    ctx,
    repo,
    subject,
    fields,
    ctx.options.manifestMaxBytes,
  );
  return {
    manifest: {
      digest: digestOf('sha256', body),
      mediaType: MediaType.ociIndex,
      size: body.length,
      bytes: body,
    },
    hasEntries: entries > 0,
  };
}

/**
 * A built fallback index fetched by its digest: rebuilt, and answered while it is still what the tag
 * shows. Once the referrer set (or the pushed index) changes, the old index is gone, as a replaced
 * manifest would be after garbage collection.
 */
async function fallbackIndexByDigest(
  ctx: RegistryContext,
  repo: string,
  digest: string,
): Promise<StoredManifest | undefined> {
  if (!ctx.options.serveFallbackTags && !ctx.options.mergeFallbackTags) return undefined;
  const subject = /^(sha256|sha512):([a-f0-9]{64,128})$/.exec(
    (await ctx.meta.servedFallbackSubject(repo, digest)) ?? '',
  );
  if (!subject) return undefined;
  const tag = referrersTagFor({ algorithm: subject[1] as DigestAlgorithm, hex: subject[2]! });
  const view = await viewUnlessTooLarge(ctx, repo, tag, await ctx.meta.getManifestByTag(repo, tag));
  return view?.builtFor !== undefined && view.index.digest === digest ? view.index : undefined;
}

/**
 * `If-Match` on a referrers-schema tag whose GET answers a built index: that index is the tag's current
 * representation, so `If-Match` is judged against its digest (a client read it and wants to replace it),
 * and the write then requires the tag to be where it was when the index was built: still pointing at the
 * same pushed index, or still absent. `failedAgainst` is the built digest when `If-Match` names another.
 */
async function effectivePrecondition(
  ctx: RegistryContext,
  repo: string,
  tag: string | undefined,
  precondition: TagPrecondition,
): Promise<TagPrecondition | { failedAgainst: string }> {
  if (!precondition.ifMatch || tag === undefined || !parseReferrersTag(tag)) return precondition;
  const stored = await ctx.meta.getManifestByTag(repo, tag);
  const view = await viewUnlessTooLarge(ctx, repo, tag, stored);
  if (view?.builtFor === undefined) return precondition;
  if (!ifMatchAdmits(precondition.ifMatch, view.index.digest)) return { failedAgainst: view.index.digest };
  return stored
    ? { ifMatch: [stored.digest], ...(precondition.ifNoneMatchAny ? { ifNoneMatchAny: true } : {}) }
    : { ifNoneMatchAny: true };
}

/**
 * The view of a tag for the paths that only compare digests with it: an index too large to build was
 * never served, so no digest can name it, and a stored one still can.
 */
async function viewUnlessTooLarge(
  ctx: RegistryContext,
  repo: string,
  tag: string,
  stored: StoredManifest | undefined,
): Promise<FallbackView | undefined> {
  try {
    return await fallbackTagView(ctx, repo, tag, stored);
  } catch (err) {
    if (err instanceof ReferrersIndexTooLarge) return stored && { index: stored };
    throw err;
  }
}
