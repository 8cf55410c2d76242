import { MediaType } from '../oci/mediatypes.ts';
import type { ReferrerRow } from '../storage/meta/types.ts';
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
  subject: string;
  artifactTypes: string[];
  after?: string;
  limit: number;
}

function descriptorJson(row: ReferrerRow): string {
  const descriptor: Record<string, unknown> = {
    mediaType: row.mediaType,
    digest: row.digest,
    size: row.size,
  };
  if (row.artifactType) descriptor.artifactType = row.artifactType;
  if (row.annotations) descriptor.annotations = row.annotations;
  return JSON.stringify(descriptor);
}

/**
 * One page of a subject's referrers as an image index. The filter runs in the index scan, so a page is
 * full whenever more matching referrers exist; the cursor is the last digest sent (keyset pagination).
 */
export async function listReferrers(ctx: RegistryContext, request: ReferrersRequest): Promise<ReferrersPage> {
  const rows = await ctx.meta.listReferrers(request.repo, request.subject, {
    artifactTypes: request.artifactTypes,
    limit: request.limit + 1,
    ...(request.after ? { after: request.after } : {}),
  });
  const head = `{"schemaVersion":2,"mediaType":"${MediaType.ociIndex}","manifests":[`;
  const tail = ']}';
  const parts: string[] = [];
  let bytes = head.length + tail.length;
  let sent = 0;
  for (const row of rows.slice(0, request.limit)) {
    const json = descriptorJson(row);
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
