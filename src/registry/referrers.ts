import { createHash } from 'node:crypto';
import type { Digest } from '../oci/digest.ts';
import { OciError } from '../oci/errors.ts';
import { MediaType } from '../oci/mediatypes.ts';
import type { RegistryContext } from './context.ts';

/** Referrer pages stay under the spec's 4 MiB manifest guidance whatever the annotations weigh. */
export const REFERRERS_PAGE_MAX_BYTES = 4 * 1024 * 1024;

export interface ReferrersPage {
  /** The serialized OCI image index, exactly as sent. */
  body: Buffer;
  /** Cursor for the next page when more may follow. */
  next?: string;
}

export interface ReferrersRequest {
  repo: string;
  subject: Digest;
  /** OR-ed artifact types. */
  artifactTypes: string[];
  /** AND-ed annotation key/value pairs (Tether extension: `?annotation=KEY=VALUE`). */
  annotations: [string, string][];
  after?: string;
  limit: number;
}

/**
 * A strong ETag for the whole filtered referrer set as paged by this request. It comes from a version
 * token replaced in the same transaction as any change to the set (a referrer pushed or deleted), so
 * checking it costs one primary-key read.
 */
export async function referrersETag(ctx: RegistryContext, request: ReferrersRequest): Promise<string> {
  const version = await ctx.meta.referrersVersion(request.repo, [request.subject.value]);
  const shape = JSON.stringify([
    version,
    request.artifactTypes,
    request.annotations,
    request.after ?? '',
    request.limit,
  ]);
  return `"${createHash('sha256').update(shape).digest('hex').slice(0, 40)}"`;
}

/**
 * One page of a subject's referrers as an image index. The filter runs in the index scan, so a page is
 * full whenever more matching referrers exist; the cursor is the last digest sent (keyset pagination).
 *
 * A referrer is a manifest of the repository whose `subject.digest` is the subject (DS §4). Manifests
 * listed in an index under the subject's fallback tag add nothing: one whose subject is this digest is
 * here already, and one with no subject or another one is no referrer of it, whoever listed it (DS §6.1
 * takes listed manifests that "have a valid subject"; every manifest pushed with one is indexed).
 */
export async function listReferrers(ctx: RegistryContext, request: ReferrersRequest): Promise<ReferrersPage> {
  const rows = await ctx.meta.listReferrers(request.repo, request.subject.value, {
    artifactTypes: request.artifactTypes,
    annotations: request.annotations,
    limit: request.limit + 1,
    ...(request.after ? { after: request.after } : {}),
  });
  const head = `{"schemaVersion":2,"mediaType":"${MediaType.ociIndex}","manifests":[`;
  const tail = ']}';
  const parts: string[] = [];
  let bytes = head.length + tail.length;
  let sent = 0;
  for (const row of rows.slice(0, request.limit)) {
    const json = row.descriptor;
    const cost = Buffer.byteLength(json) + (parts.length > 0 ? 1 : 0);
    if (parts.length > 0 && bytes + cost > REFERRERS_PAGE_MAX_BYTES) break;
    parts.push(json);
    bytes += cost;
    sent++;
  }
  const body = Buffer.from(head + parts.join(',') + tail);
  const more = rows.length > sent;
  return more && sent > 0 ? { body, next: rows[sent - 1]!.digest } : { body };
}

/** Rows asked of the store at a time while an index of every referrer is built. */
const WHOLE_INDEX_BATCH = 1000;

/**
 * A subject's referrers do not fit in one index of the allowed size: answered instead of a partial
 * index, which a tag-only client could not tell from the whole (and would write back, dropping the rest).
 * 409: the request is fine, the state of the repository is what prevents the answer; a 404 would make a
 * tag writer start a fresh index, and 5xx answers are retried.
 */
export class ReferrersIndexTooLarge extends OciError {
  constructor(repo: string, subject: string, limit: number) {
    super(
      409,
      'UNSUPPORTED',
      `the referrers of ${subject} do not fit in one fallback index of at most ${limit} bytes ` +
        `(limits.manifestMaxBytes); list them with GET /v2/${repo}/referrers/${subject}, which pages`,
      { subject, limit },
    );
  }
}

/**
 * Every referrer of `subject` (none when undefined) as one OCI image index, in digest order, with
 * `members` (serialized JSON members, each starting with a comma) after `manifests`. Throws
 * ReferrersIndexTooLarge rather than cut the list when the index would exceed `maxBytes`.
 */
export async function wholeReferrersIndex(
  ctx: RegistryContext,
  repo: string,
  subject: Digest | undefined,
  members: string,
  maxBytes: number,
): Promise<{ body: Buffer; entries: number }> {
  const head = `{"schemaVersion":2,"mediaType":"${MediaType.ociIndex}","manifests":[`;
  const tail = `]${members}}`;
  const parts: string[] = [];
  let bytes = Buffer.byteLength(head) + Buffer.byteLength(tail);
  let after: string | undefined;
  while (subject) {
    const rows = await ctx.meta.listReferrers(repo, subject.value, {
      limit: WHOLE_INDEX_BATCH,
      ...(after ? { after } : {}),
    });
    for (const row of rows) {
      bytes += Buffer.byteLength(row.descriptor) + (parts.length > 0 ? 1 : 0);
      if (bytes > maxBytes) throw new ReferrersIndexTooLarge(repo, subject.value, maxBytes);
      parts.push(row.descriptor);
    }
    if (rows.length < WHOLE_INDEX_BATCH) break;
    after = rows.at(-1)!.digest;
  }
  return { body: Buffer.from(head + parts.join(',') + tail), entries: parts.length };
}
