import { isSupportedAlgorithm, parseDigest, tryParseDigest } from '../../oci/digest.ts';
import { errors } from '../../oci/errors.ts';
import { isValidRepositoryName } from '../../oci/reference.ts';
import { rangeHeader, uploadLocation } from '../../registry/uploads.ts';
import { hasBody, requestBody, send } from '../http.ts';
import type { RouteContext } from './types.ts';

/** Parses a request `Content-Range` (`<start>-<end>`, inclusive; a `bytes ` prefix and `/total` tolerated). */
export function parseContentRange(header: string | undefined): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const m = /^(?:bytes[ =])?(\d{1,15})-(\d{1,15})(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!m) throw errors.uploadInvalid('malformed Content-Range', { contentRange: header.slice(0, 100) });
  const range = { start: Number(m[1]), end: Number(m[2]) };
  if (range.end < range.start) throw errors.uploadInvalid('Content-Range end is before its start');
  return range;
}

function sessionHeaders(name: string, id: string, offset: number) {
  return { Location: uploadLocation(name, id), Range: rangeHeader(offset), 'Docker-Upload-UUID': id };
}

function blobCreated(ctx: RouteContext, digest: string): void {
  send(ctx.res, 201, { Location: `/v2/${ctx.name}/blobs/${digest}`, 'Docker-Content-Digest': digest });
}

/** POST /v2/<name>/blobs/uploads/: mount, monolithic upload, or a new session. */
export async function startUpload(ctx: RouteContext): Promise<void> {
  const { registry, name, query } = ctx;
  const mount = query.get('mount');
  // A mount that cannot be done, a malformed digest included, falls back to an upload session (spec:
  // "unable to mount" answers as for a plain POST; Distribution does the same).
  const mountDigest = mount === null ? undefined : tryParseDigest(mount)?.value;
  if (mountDigest !== undefined) {
    const from = query.get('from') ?? undefined;
    // A `from` that is not a valid name cannot hold the blob: fall back to an upload, as for any miss.
    // So is one the caller may not pull from: a refused mount never reveals whether the blob exists.
    const readable = (repo: string) => ctx.caller.canMountFrom(repo);
    const source = from !== undefined && (!isValidRepositoryName(from) || !readable(from)) ? null : from;
    if (source !== null && (await registry.mount(name, mountDigest, source, readable))) {
      blobCreated(ctx, mountDigest);
      return;
    }
  }
  const hint = query.get('digest-algorithm');
  if (hint !== null && !isSupportedAlgorithm(hint)) {
    throw errors.digestInvalid('unsupported digest algorithm', { algorithm: hint.slice(0, 50) });
  }
  const digestParam = query.get('digest');
  const digest = digestParam === null ? undefined : parseDigest(digestParam);
  if (digest && mount === null) {
    // Monolithic upload in one request: the body is the whole blob.
    await registry.uploads.putWhole(name, digest, requestBody(ctx.req, ctx.res));
    blobCreated(ctx, digest.value);
    return;
  }
  const upload = await registry.uploads.start(
    name,
    digest?.algorithm ?? (hint as 'sha256' | 'sha512' | null) ?? 'sha256',
  );
  send(ctx.res, 202, sessionHeaders(name, upload.id, 0));
}

/** PATCH: append a chunk (with Content-Range) or a stream (without). */
export async function patchUpload(ctx: RouteContext): Promise<void> {
  const range = parseContentRange(ctx.req.headers['content-range']);
  const upload = await ctx.registry.uploads.append(ctx.name, ctx.ref, requestBody(ctx.req, ctx.res), range);
  send(ctx.res, 202, sessionHeaders(ctx.name, upload.id, upload.offset));
}

/** PUT: optional final chunk, then verify the digest and publish the blob. */
export async function finishUpload(ctx: RouteContext): Promise<void> {
  const digestParam = ctx.query.get('digest');
  if (digestParam === null) throw errors.digestInvalid('the digest query parameter is required');
  const digest = parseDigest(digestParam);
  const range = parseContentRange(ctx.req.headers['content-range']);
  const final =
    hasBody(ctx.req) || range
      ? { body: requestBody(ctx.req, ctx.res), ...(range ? { range } : {}) }
      : undefined;
  await ctx.registry.uploads.finish(ctx.name, ctx.ref, digest, final);
  blobCreated(ctx, digest.value);
}

export async function uploadStatus(ctx: RouteContext): Promise<void> {
  const upload = await ctx.registry.uploads.status(ctx.name, ctx.ref);
  send(ctx.res, 204, sessionHeaders(ctx.name, upload.id, upload.offset));
}

export async function cancelUpload(ctx: RouteContext): Promise<void> {
  await ctx.registry.uploads.cancel(ctx.name, ctx.ref);
  send(ctx.res, 204, {});
}
