import { errors } from '../../oci/errors.ts';
import { parseReference } from '../../registry/manifests.ts';
import { notModified, parseEntityTags, readBody, send } from '../http.ts';
import type { RouteContext } from './types.ts';

export async function getManifest(ctx: RouteContext): Promise<void> {
  const reference = parseReference(ctx.ref, 'not-found');
  const manifest = await ctx.registry.getManifest(ctx.name, reference);
  const headers = {
    'Content-Type': manifest.mediaType,
    'Docker-Content-Digest': manifest.digest,
    ETag: `"${manifest.digest}"`,
  };
  if (notModified(ctx.req, headers.ETag)) {
    send(ctx.res, 304, headers);
    return;
  }
  // Node omits the body of a HEAD response but keeps our exact Content-Length.
  send(ctx.res, 200, headers, manifest.bytes);
}

export async function putManifest(ctx: RouteContext): Promise<void> {
  const reference = parseReference(ctx.ref, 'invalid');
  const ifMatch = parseEntityTags(ctx.req.headers['if-match']);
  const ifNoneMatch = parseEntityTags(ctx.req.headers['if-none-match']);
  // Content under a digest never changes, so preconditions only make sense on tags.
  if ((ifMatch || ifNoneMatch) && reference.kind !== 'tag') {
    throw errors.badRequest('If-Match and If-None-Match apply to tag references only');
  }
  if (ifNoneMatch && !ifNoneMatch.includes('*')) {
    throw errors.badRequest('only If-None-Match: * is supported on manifest PUT');
  }
  const body = await readBody(ctx.req, ctx.res, ctx.registry.options.manifestMaxBytes, ctx.bodyTimeoutMs);
  const outcome = await ctx.registry.putManifest({
    repo: ctx.name,
    reference,
    body,
    contentType: ctx.req.headers['content-type'],
    extraTags: ctx.query.getAll('tag'),
    ...(reference.kind === 'tag' && (ifMatch || ifNoneMatch)
      ? {
          precondition: { ...(ifMatch ? { ifMatch } : {}), ...(ifNoneMatch ? { ifNoneMatchAny: true } : {}) },
        }
      : {}),
  });
  send(ctx.res, 201, {
    Location: `/v2/${ctx.name}/manifests/${outcome.digest}`,
    'Docker-Content-Digest': outcome.digest,
    ETag: `"${outcome.digest}"`,
    ...(outcome.subject ? { 'OCI-Subject': outcome.subject } : {}),
    ...(ctx.query.has('tag') ? { 'OCI-Tag': outcome.tags } : {}),
  });
}

export async function deleteManifest(ctx: RouteContext): Promise<void> {
  const reference = parseReference(ctx.ref, 'not-found');
  await ctx.registry.deleteManifest(ctx.name, reference, parseEntityTags(ctx.req.headers['if-match']));
  send(ctx.res, 202, {});
}
