import { parseDigest } from '../../oci/digest.ts';
import { OciError } from '../../oci/errors.ts';
import { API_VERSION_HEADER, abort, notModified, send, sendJson } from '../http.ts';
import type { RouteContext } from './types.ts';

export type ByteRange = { start: number; end: number };

/**
 * Interprets an RFC 9110 `Range` header for a blob of `size` bytes: undefined means "send it all"
 * (no header, other units, several ranges or bad syntax), 'unsatisfiable' means 416: a first position at
 * or past the end, a zero suffix, an empty blob, and also a last position before the first (`bytes=5-2`).
 * That one is invalid rather than unsatisfiable, and RFC 9110 §14.2 lets a server ignore or reject it;
 * the OCI conformance suite requires the 416 (its `range 500-0` test), so it is rejected.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return 'unsatisfiable';
  const end = m[2] === '' ? size - 1 : Number(m[2]);
  if (start >= size) return 'unsatisfiable';
  return { start, end: Math.min(end, size - 1) };
}

export async function getBlob(ctx: RouteContext): Promise<void> {
  const { req, res, registry, name } = ctx;
  const digest = parseDigest(ctx.ref).value;
  const size = await registry.blobSize(name, digest);
  const headers = {
    ...API_VERSION_HEADER,
    'Content-Type': 'application/octet-stream',
    'Docker-Content-Digest': digest,
    ETag: `"${digest}"`,
    'Accept-Ranges': 'bytes',
    'Cache-Control': 'max-age=31536000, immutable',
  };
  if (notModified(req, headers.ETag)) {
    send(res, 304, headers);
    return;
  }
  // A range applies only to the representation it was asked of: a validator that is not this blob's
  // ETag (another one, or a date: blobs send no Last-Modified) asks for the whole blob (RFC 9110 §13.1.5).
  const ifRange = req.headers['if-range'] as string | undefined;
  const range =
    ifRange === undefined || ifRange.trim() === headers.ETag
      ? parseRange(req.headers.range, size)
      : undefined;
  if (range === 'unsatisfiable') {
    const err = new OciError(416, 'UNSUPPORTED', 'requested range not satisfiable', { size });
    const { 'Content-Type': _type, 'Cache-Control': _cache, ...rest } = headers;
    sendJson(res, 416, err.toJSON(), { ...rest, 'Content-Range': `bytes */${size}` });
    return;
  }
  const status = range ? 206 : 200;
  const length = range ? range.end - range.start + 1 : size;
  const rangeHeaders = range ? { 'Content-Range': `bytes ${range.start}-${range.end}/${size}` } : {};
  if (req.method === 'HEAD' || length === 0) {
    res.writeHead(status, { ...headers, ...rangeHeaders, 'Content-Length': length });
    res.end();
    return;
  }
  const reader = await registry.readBlob(digest, range);
  if (reader.length !== length) {
    // Metadata and storage disagree (a damaged store): refuse rather than send a short or long body.
    await reader.close();
    throw new Error(`blob ${digest} holds ${reader.length} bytes where ${length} were expected`);
  }
  res.writeHead(status, { ...headers, ...rangeHeaders, 'Content-Length': length });
  try {
    await reader.sendTo(res, ctx.sends.watch(req, res));
  } catch {
    // The client went away or stopped reading (send-idle.ts), or storage failed, mid-transfer: nothing
    // to answer, and the client must not take what it got for the whole blob.
    abort(res);
  }
}

export async function deleteBlob(ctx: RouteContext): Promise<void> {
  const digest = parseDigest(ctx.ref).value;
  await ctx.registry.deleteBlob(ctx.name, digest);
  send(ctx.res, 202, {});
}
