/**
 * Registry-agnostic workloads over plain HTTP (distribution-spec endpoints only), zb-style: each
 * operation is a whole client action (push an image into a fresh repository, pull an image, …).
 * Blob bodies are streamed from one random base buffer plus a unique 16-byte tail, so the digest of a
 * 1 GiB body costs one hash-state copy instead of a pass over the data, and no body is ever copied.
 *
 * Units: "MB" in this harness means MiB (2^20 = 1 048 576 bytes), and "MB/s" means MiB/s; sizes given
 * in MB (`--size 1`, "1 MB image") are MiB, and throughputs are about 4.9 % below decimal MB/s.
 */
import { createHash, type Hash, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';

/** One "MB" of this harness: a MiB, 2^20 bytes (sizes and MB/s figures are in MiB and MiB/s). */
export const MB = 1024 * 1024;

export interface Sample {
  ms: number;
  ttfbMs?: number;
  bytes: number;
}

export interface Result {
  workload: string;
  registry: string;
  concurrency: number;
  operations: number;
  seconds: number;
  opsPerSec: number;
  /** Bytes moved by the successful operations over the wall time, in MiB/s (the harness's "MB/s"). */
  mbPerSec: number;
  p50ms: number;
  p90ms: number;
  p99ms: number;
  /** Time to the response headers of the measured GET (pulls only), over the samples that have one. */
  ttfbP50ms?: number;
  ttfbP90ms?: number;
  ttfbP99ms?: number;
  errors: number;
}

// Idle connections are closed before the server closes them (src/client/transport.ts explains why),
// so no request goes out on a connection the server is closing.
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, timeout: 15_000 });

/** A body of `size` bytes: `chunk` repeated, then a unique tail; its digest comes from a hash state copy. */
export class BodySource {
  readonly size: number;
  readonly #chunk: Buffer;
  readonly #repeats: number;
  readonly #remainder: Buffer;
  readonly #prefixHash: Hash;

  constructor(size: number) {
    if (size < 16) throw new Error('bodies are at least 16 bytes');
    this.size = size;
    const body = size - 16;
    this.#chunk = randomBytes(Math.min(body, 4 * MB));
    this.#repeats = Math.floor(body / this.#chunk.length);
    this.#remainder = this.#chunk.subarray(0, body - this.#repeats * this.#chunk.length);
    this.#prefixHash = createHash('sha256');
    for (let i = 0; i < this.#repeats; i++) this.#prefixHash.update(this.#chunk);
    this.#prefixHash.update(this.#remainder);
  }

  /**
   * A fresh unique body: its digest, a writer that streams it into a request, and one that streams bytes
   * [start, end) of it (a chunked upload's PATCH). Both write views of the shared chunk and of the tail,
   * never a copy.
   */
  next(): {
    digest: string;
    write: (req: http.ClientRequest) => Promise<void>;
    writeRange: (req: http.ClientRequest, start: number, end: number) => Promise<void>;
  } {
    const tail = randomBytes(16);
    const digest = `sha256:${this.#prefixHash.copy().update(tail).digest('hex')}`;
    const writeRange = async (req: http.ClientRequest, start: number, end: number) => {
      // Byte p < size − 16 is chunk[p mod chunk length] (the remainder is a prefix of the chunk).
      const prefix = this.size - tail.length;
      const length = this.#chunk.length;
      let at = start;
      while (at < Math.min(end, prefix)) {
        const from = at % length;
        const view = this.#chunk.subarray(from, from + Math.min(end, prefix) - at);
        at += view.length;
        if (!req.write(view)) await new Promise((r) => req.once('drain', r));
      }
      req.end(at < end ? tail.subarray(at - prefix, end - prefix) : undefined);
    };
    return { digest, write: (req) => writeRange(req, 0, this.size), writeRange };
  }
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The response body when `keep` was asked for; empty otherwise. */
  body: Buffer;
  /** Bytes of response body received, counted whether or not the body was kept. */
  received: number;
  ttfbMs: number;
}

/**
 * One HTTP exchange; the response body is drained and counted (and kept only when `keep`). Counting is
 * all the hot path does with the bytes: no copy unless kept, no hashing.
 */
export function exchange(
  base: string,
  method: string,
  path: string,
  options: {
    headers?: Record<string, string | number>;
    body?: Buffer | string;
    write?: (req: http.ClientRequest) => Promise<void>;
    keep?: boolean;
  } = {},
): Promise<Reply> {
  const url = new URL(path, base);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: options.headers ?? {} }, (res) => {
      const ttfbMs = performance.now() - started;
      const chunks: Buffer[] = [];
      let received = 0;
      res.on('data', (c: Buffer) => {
        received += c.length;
        if (options.keep) chunks.push(c);
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          body: Buffer.concat(chunks),
          received,
          ttfbMs,
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    if (options.write) options.write(req).catch(reject);
    else req.end(options.body);
  });
}

/** Throws unless the reply's status is one of `ok`. */
export function expect(reply: Reply, ok: number[], what: string): Reply {
  if (!ok.includes(reply.status))
    throw new Error(`${what}: HTTP ${reply.status} ${reply.body.toString().slice(0, 200)}`);
  return reply;
}

/** Throws unless the reply's status is one of `ok` and exactly `bytes` bytes of body were received. */
export function expectBody(reply: Reply, ok: number[], bytes: number, what: string): Reply {
  expect(reply, ok, what);
  if (reply.received !== bytes)
    throw new Error(`${what}: received ${reply.received} bytes, expected ${bytes}`);
  return reply;
}

/** Uploads a blob: POST then PUT with the body (every registry supports it), or chunked PATCHes. */
export async function pushBlob(
  base: string,
  repo: string,
  source: BodySource | { digest: string; bytes: Buffer },
  chunkSize = 0,
): Promise<string> {
  const start = expect(
    await exchange(base, 'POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'Content-Length': 0 } }),
    [202],
    'upload start',
  );
  let location = start.headers.location!;
  if ('bytes' in source) {
    const sep = location.includes('?') ? '&' : '?';
    expect(
      await exchange(base, 'PUT', `${location}${sep}digest=${source.digest}`, {
        body: source.bytes,
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': source.bytes.length },
      }),
      [201],
      'blob put',
    );
    return source.digest;
  }
  const body = source.next();
  if (chunkSize > 0) {
    // Chunked: each PATCH streams its range of the body from views of the shared chunk and the tail.
    for (let offset = 0; offset < source.size; offset += chunkSize) {
      const end = Math.min(offset + chunkSize, source.size);
      const reply = expect(
        await exchange(base, 'PATCH', location, {
          write: (req) => body.writeRange(req, offset, end),
          headers: {
            'Content-Type': 'application/octet-stream',
            'Content-Length': end - offset,
            'Content-Range': `${offset}-${end - 1}`,
          },
        }),
        [202],
        'chunk',
      );
      location = reply.headers.location!;
    }
    const sep = location.includes('?') ? '&' : '?';
    expect(
      await exchange(base, 'PUT', `${location}${sep}digest=${body.digest}`, {
        headers: { 'Content-Length': 0 },
      }),
      [201],
      'blob finish',
    );
    return body.digest;
  }
  const sep = location.includes('?') ? '&' : '?';
  expect(
    await exchange(base, 'PUT', `${location}${sep}digest=${body.digest}`, {
      write: body.write,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': source.size },
    }),
    [201],
    'blob put',
  );
  return body.digest;
}

export function smallBlob(text: string): { digest: string; bytes: Buffer } {
  const bytes = Buffer.from(text);
  return { digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, bytes };
}

export function imageManifest(
  config: { digest: string; size: number },
  layer: { digest: string; size: number },
  annotations?: Record<string, string>,
) {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: config.digest,
        size: config.size,
      },
      layers:
        layer.size > 0
          ? [
              {
                mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
                digest: layer.digest,
                size: layer.size,
              },
            ]
          : [],
      ...(annotations ? { annotations } : {}),
    }),
  );
}

export async function putManifest(
  base: string,
  repo: string,
  ref: string,
  bytes: Buffer,
  type = 'application/vnd.oci.image.manifest.v1+json',
) {
  return expect(
    await exchange(base, 'PUT', `/v2/${repo}/manifests/${ref}`, {
      body: bytes,
      headers: { 'Content-Type': type, 'Content-Length': bytes.length },
    }),
    [201],
    'manifest put',
  );
}

/**
 * The `p`th percentile of ascending `sorted` by nearest rank: the smallest sample with at least p % of the
 * samples at or below it, `sorted[max(0, ceil(p/100 · n) − 1)]` (p50 of [10, 20] is 10, p90 of 1..10 is 9).
 * 0 for no samples.
 */
export function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** How `drive` runs a workload's operations. */
export interface DriveOptions {
  /** Operations in flight at once. */
  c: number;
  /** Operations in all. */
  n: number;
  /**
   * Called once, right before the first operation starts (and before the wall clock starts), after all
   * of the caller's setup; e.g. to read the server's CPU time or start an RSS sampler so that they cover
   * the measured operations only. It runs even when `n` is 0.
   */
  onMeasureStart?: () => void;
}

/** Runs `n` operations with `c` in flight and summarises them. */
export async function drive(
  workload: string,
  registry: string,
  { c, n, onMeasureStart }: DriveOptions,
  op: (i: number) => Promise<Sample>,
): Promise<Result> {
  const samples: Sample[] = [];
  let next = 0;
  let errors = 0;
  let firstError: unknown;
  onMeasureStart?.();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(c, n) }, async () => {
      while (next < n) {
        const i = next++;
        try {
          samples.push(await op(i));
        } catch (err) {
          errors++;
          firstError ??= err;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  if (errors > 0)
    console.error(`${registry} ${workload}: ${errors} errors, first: ${(firstError as Error).message}`);
  const times = samples.map((s) => s.ms).sort((a, b) => a - b);
  const ttfb = samples
    .filter((s) => s.ttfbMs !== undefined)
    .map((s) => s.ttfbMs!)
    .sort((a, b) => a - b);
  const bytes = samples.reduce((sum, s) => sum + s.bytes, 0);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    workload,
    registry,
    concurrency: c,
    operations: samples.length,
    seconds: round(seconds),
    opsPerSec: round(samples.length / seconds),
    mbPerSec: round(bytes / MB / seconds),
    p50ms: round(percentile(times, 50)),
    p90ms: round(percentile(times, 90)),
    p99ms: round(percentile(times, 99)),
    ...(ttfb.length
      ? {
          ttfbP50ms: round(percentile(ttfb, 50)),
          ttfbP90ms: round(percentile(ttfb, 90)),
          ttfbP99ms: round(percentile(ttfb, 99)),
        }
      : {}),
    errors,
  };
}

export async function timed(fn: () => Promise<{ bytes: number; ttfbMs?: number }>): Promise<Sample> {
  const t = performance.now();
  const { bytes, ttfbMs } = await fn();
  return { ms: performance.now() - t, bytes, ...(ttfbMs !== undefined ? { ttfbMs } : {}) };
}

export const uniqueRepo = (prefix: string) => `${prefix}/${randomUUID().slice(0, 8)}`;
