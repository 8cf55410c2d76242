import { parseDigest } from '../../oci/digest.ts';
import { errors } from '../../oci/errors.ts';
import { isValidMediaType, MediaType } from '../../oci/mediatypes.ts';
import { nextLink, notModified, parsePageSize, send, sendJson } from '../http.ts';
import type { RouteContext } from './types.ts';

/** Tags, repositories and referrers ask the store for pages of at most this many rows at a time. */
const STORE_BATCH = 10_000;

export async function base(ctx: RouteContext): Promise<void> {
  sendJson(ctx.res, 200, {});
}

function cursor(value: string | null): string | undefined {
  if (value === null || value === '') return undefined;
  if (value.length > 512) throw errors.badRequest('last is too long');
  return value;
}

/**
 * GET tags/list. Without `n` the whole list comes back in one response (what the conformance suites
 * and most clients expect); with `n` it is clamped and a `Link` header points at the next page.
 */
export async function listTags(ctx: RouteContext): Promise<void> {
  const { registry, name, query } = ctx;
  const requested = parsePageSize(query.get('n'), -1, STORE_BATCH);
  let after = cursor(query.get('last'));
  const tags: string[] = [];
  const headers: Record<string, string> = {};
  if (requested === -1) {
    for (;;) {
      const page = await registry.listTags(name, { limit: STORE_BATCH, ...(after ? { after } : {}) });
      tags.push(...page);
      if (page.length < STORE_BATCH) break;
      after = page.at(-1);
    }
  } else {
    const page = await registry.listTags(name, { limit: requested + 1, ...(after ? { after } : {}) });
    tags.push(...page.slice(0, requested));
    if (requested > 0 && page.length > requested) {
      headers.Link = nextLink(`/v2/${name}/tags/list`, { n: String(requested), last: tags.at(-1) });
    }
  }
  sendJson(ctx.res, 200, { name, tags }, headers);
}

export async function catalog(ctx: RouteContext): Promise<void> {
  const { registry, query } = ctx;
  const max = registry.options.pageSizeMax;
  const requested = parsePageSize(query.get('n'), max, max);
  const after = cursor(query.get('last'));
  const page = await registry.listRepositories(
    { limit: requested + 1, ...(after ? { after } : {}) },
    ctx.caller.canList,
  );
  const repositories = page.slice(0, requested);
  const headers: Record<string, string> = {};
  if (requested > 0 && page.length > requested) {
    headers.Link = nextLink('/v2/_catalog', { n: String(requested), last: repositories.at(-1) });
  }
  sendJson(ctx.res, 200, { repositories }, headers);
}

/**
 * The most filters of each kind one referrers request may carry. Each is checked against every
 * referrer in the scan, inside SQLite, on the event loop: 200 annotation filters over a referrer with
 * 287 k annotations held the whole server for 13.7 s. A filter set that needs more than this many
 * types, or AND-ed annotations, is no real query.
 */
const MAX_FILTERS = 16;

/** Refuses more than MAX_FILTERS filters of one kind (after repeats are dropped). */
function limitFilters<T>(kind: string, filters: T[]): T[] {
  if (filters.length > MAX_FILTERS)
    throw errors.badRequest(`at most ${MAX_FILTERS} ${kind} filters per request`, { [kind]: filters.length });
  return filters;
}

/** Parses `annotation=KEY=VALUE` filters (Tether extension; AND-ed). */
function parseAnnotationFilters(values: string[]): [string, string][] {
  return limitFilters('annotation', [...new Set(values)]).map((value) => {
    const eq = value.indexOf('=');
    if (eq <= 0 || value.length > 4096) {
      throw errors.badRequest('annotation filters take the form annotation=KEY=VALUE', {
        annotation: value.slice(0, 200),
      });
    }
    return [value.slice(0, eq), value.slice(eq + 1)];
  });
}

export async function listReferrers(ctx: RouteContext): Promise<void> {
  const { registry, name, query, req, res } = ctx;
  const subject = parseDigest(ctx.ref);
  // Media types never contain spaces: a space here is a '+' the client did not percent-encode. An empty
  // value is a client's unset filter, not a type: it filters nothing.
  const artifactTypes = limitFilters('artifactType', [
    ...new Set(
      query
        .getAll('artifactType')
        .filter((t) => t !== '')
        .map((t) => t.replaceAll(' ', '+')),
    ),
  ]);
  const invalidType = artifactTypes.find((type): boolean => !isValidMediaType(type));
  if (invalidType !== undefined) {
    throw errors.badRequest('invalid artifactType filter', { artifactType: invalidType.slice(0, 200) });
  }
  const annotations = parseAnnotationFilters(query.getAll('annotation'));
  const max = registry.options.pageSizeMax;
  const limit = Math.max(1, parsePageSize(query.get('n'), max, max));
  const after = cursor(query.get('last'));
  const request = { repo: name, subject, artifactTypes, annotations, limit, ...(after ? { after } : {}) };

  const applied = [
    ...(artifactTypes.length > 0 ? ['artifactType'] : []),
    ...(annotations.length > 0 ? ['annotation'] : []),
  ];
  const etag = await registry.referrersETag(request);
  const headers: Record<string, string> = {
    'Content-Type': MediaType.ociIndex,
    ETag: etag,
    ...(applied.length > 0 ? { 'OCI-Filters-Applied': applied.join(',') } : {}),
  };
  if (notModified(req, etag)) {
    send(res, 304, headers);
    return;
  }
  const page = await registry.listReferrers(request);
  if (page.next) {
    headers.Link = nextLink(`/v2/${name}/referrers/${subject.value}`, {
      n: query.get('n') ?? undefined,
      artifactType: artifactTypes,
      annotation: query.getAll('annotation'),
      last: page.next,
    });
  }
  send(res, 200, headers, page.body);
}
