import { randomInt } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { digestOf, tryParseDigest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { referrersTagFor } from '../oci/referrers-tag.ts';
import {
  type ArtifactFile,
  attachArtifact,
  type PulledArtifact,
  type PushArtifactOptions,
  pullArtifact,
  pushArtifact,
} from './artifact.ts';
import { Authenticator } from './auth.ts';
import { type BlobSource, bufferSource } from './blob-source.ts';
import { type BodySink, collect, pourSource, sinkReadable } from './body-sink.ts';
import { type CopyOptions, type CopyResult, copyGraph } from './copy.ts';
import { getCredentials } from './docker-config.ts';
import { ClientError } from './errors.ts';
import { readFallbackIndex } from './fallback-index.ts';
import { Limiter } from './limiter.ts';
import type { ProgressListener, TransferOutcome } from './progress.ts';
import type { ImageReference } from './reference.ts';
import { type RefusedRequest, refusal } from './refusal.ts';
import { RegistryHttp } from './registry-http.ts';
import type { HttpResponse } from './response.ts';
import { RegistryTarget, referrerDescriptor } from './target.ts';
import type { TlsSettings } from './tls.ts';
import { FileBody } from './transport.ts';
import { ContentCheck } from './verify-stream.ts';

/**
 * A registry client for any OCI registry. Every byte it reads is checked against the digest it asked
 * for; manifests are capped in size. Referrers use the API when the registry has it and the
 * `<alg>-<hex>` fallback tag when it does not (detected per repository from `OCI-Subject` on push and
 * from a 404 of the referrers endpoint), or either by force (`referrersMode`).
 */
export type ReferrersMode = 'auto' | 'api' | 'tag';

export interface ClientOptions {
  plainHttp?: boolean;
  referrersMode?: ReferrersMode;
  /** In `auto` mode, also keep the fallback tag updated when the API exists (notation's "force tag"). */
  forceReferrersTag?: boolean;
  /** Defaults to the Docker credential store. */
  credentials?: (host: string) => ReturnType<typeof getCredentials>;
  /** How each registry's TLS certificate is checked; by default against Node's CAs. */
  tls?: (host: string) => TlsSettings | undefined;
  maxManifestBytes?: number;
  /** Parallel blob transfers per registry host (default 4). */
  concurrency?: number;
  /** Always (true) or never (false) upload in chunks; by default only blobs of `chunkedThreshold` or more. */
  chunked?: boolean;
  /** Default 128 MiB. */
  chunkedThreshold?: number;
  /** Bytes per PATCH (default 32 MiB, raised to the registry's `OCI-Chunk-Min-Length`). */
  chunkSize?: number;
  progress?: ProgressListener;
}

const MiB = 1024 * 1024;
/**
 * Blobs of at least this size, or of unknown size, are read through the download reader (reused buffers
 * on a connection of its own). Smaller ones (configs, signature envelopes, small layers) ride the
 * kept-alive connections that manifests use: for them a new connection, with TLS a handshake, costs
 * more than the copies the reader saves.
 */
const DOWNLOAD_FROM = MiB;
const worthDownloading = (size: number | undefined) => size === undefined || size >= DOWNLOAD_FROM;

function pushScope(ref: ImageReference): string {
  return `repository:${ref.repository}:pull,push`;
}

/** `HOST/REPO:TAG` or `HOST/REPO@DIGEST`: what a request was about, named in its errors. */
function at(ref: ImageReference, reference: string): string {
  return `${ref.host}/${ref.repository}${tryParseDigest(reference) ? '@' : ':'}${reference}`;
}

function withDigest(location: string, digest: string): string {
  const url = new URL(location, 'http://placeholder');
  url.searchParams.set('digest', digest);
  return /^https?:\/\//.test(location) ? url.toString() : url.pathname + url.search;
}

export { ClientError };

export interface FetchedManifest {
  descriptor: Descriptor;
  bytes: Buffer;
  json: Record<string, unknown>;
}

const MANIFEST_ACCEPT = [
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
].join(', ');

export class RegistryClient {
  readonly #options: ClientOptions;
  readonly #hosts = new Map<string, RegistryHttp>();
  /** Per `host/repo`: does the referrers API exist there? */
  readonly #referrersApi = new Map<string, boolean>();
  /** Per `host/repo`: a question to the referrers API under way (see `#hasReferrersApi`). */
  readonly #apiProbes = new Map<string, Promise<boolean>>();
  readonly #limiters = new Map<string, Limiter>();

  constructor(options: ClientOptions = {}) {
    this.#options = options;
  }

  http(host: string): RegistryHttp {
    let http = this.#hosts.get(host);
    if (!http) {
      const credentials = this.#options.credentials ?? getCredentials;
      http = new RegistryHttp(host, new Authenticator(() => credentials(host)), {
        plainHttp: this.#options.plainHttp === true,
        tls: this.#options.tls?.(host),
      });
      this.#hosts.set(host, http);
    }
    return http;
  }

  async #request(
    ref: ImageReference,
    method: string,
    path: string,
    push: boolean,
    init: Parameters<RegistryHttp['request']>[2] = {},
  ) {
    const scope = `repository:${ref.repository}:${push ? 'pull,push' : 'pull'}`;
    return this.http(ref.host).request(method, `/v2/${ref.repository}${path}`, { ...init, scope });
  }

  /** Throws the registry's refusal of a request about `subject` (see `refusal`). */
  async #fail(
    res: HttpResponse,
    host: string,
    action: string,
    subject: string,
    access: RefusedRequest['access'],
  ): Promise<never> {
    throw await refusal(res, { registry: this.http(host), action, subject, access });
  }

  /** Resolves a tag or digest to the manifest's descriptor (HEAD). */
  async resolve(ref: ImageReference): Promise<Descriptor> {
    return (await this.getManifest(ref)).descriptor;
  }

  /** Fetches a manifest, verifying its digest (against the reference's digest when given). */
  async getManifest(ref: ImageReference): Promise<FetchedManifest> {
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const res = await this.#request(ref, 'GET', `/manifests/${reference}`, false, {
      headers: { Accept: MANIFEST_ACCEPT },
    });
    if (res.status !== 200) return this.#fail(res, ref.host, 'get manifest', at(ref, reference), 'pull');
    const max = this.#options.maxManifestBytes ?? 4 * 1024 * 1024;
    const bytes = await res.bytes(max, `manifest ${at(ref, reference)}`);
    const expected = ref.digest ?? res.headers.get('docker-content-digest') ?? undefined;
    const algorithm = (expected && tryParseDigest(expected)?.algorithm) || 'sha256';
    const digest = digestOf(algorithm, bytes);
    if (expected && digest !== expected)
      throw new ClientError(
        `manifest ${at(ref, reference)}: content digest ${digest} does not match ${expected}`,
      );
    const json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    const mediaType =
      (json.mediaType as string | undefined) ??
      res.headers.get('content-type')?.split(';')[0] ??
      MediaType.ociManifest;
    return { descriptor: { mediaType, digest, size: bytes.length }, bytes, json };
  }

  /** Pushes manifest bytes under a tag or their digest; reports whether the registry took the subject. */
  async putManifest(
    ref: ImageReference,
    reference: string,
    bytes: Buffer,
    mediaType: string,
    headers: Record<string, string> = {},
  ) {
    let res: HttpResponse;
    for (let retry = 0; ; retry++) {
      res = await this.#request(ref, 'PUT', `/manifests/${reference}`, true, {
        body: bytes,
        headers: { 'Content-Type': mediaType, ...headers },
      });
      // Distribution rewrites a repository's blob link in place (truncate, then write) whenever the same
      // blob is uploaded again, so a manifest PUT racing another writer's upload of a shared blob (the
      // empty config `{}` of every artifact) can be told the blob is unknown. The blobs were confirmed
      // before this PUT, so a short backoff and a retry is right; a truly missing blob still fails.
      if (res.status !== 400 || retry >= 3) break;
      // Read once and kept: #fail reads the same bytes again.
      if (!(await res.bytes()).includes('MANIFEST_BLOB_UNKNOWN')) break;
      await new Promise((r) => setTimeout(r, 100 * 3 ** retry + randomInt(100)));
    }
    if (res.status === 412) {
      await res.discard();
      return { digest: '', subjectAccepted: false, preconditionFailed: true };
    }
    if (res.status !== 201) return this.#fail(res, ref.host, 'put manifest', at(ref, reference), 'push');
    await res.discard();
    return {
      digest: digestOf('sha256', bytes),
      subjectAccepted: res.headers.has('oci-subject'),
      preconditionFailed: false,
    };
  }

  /**
   * Points `tag` at a manifest already stored under a digest that is not sha256, by `PUT
   * /manifests/<digest>?tag=<tag>` (distribution-spec's multi-tag push). A plain tag PUT is hashed with
   * sha256 by registries, so the tag would name another digest than the one the manifest's referrers
   * name. The registry confirms the tag with `OCI-Tag`; one that answers without it is asked what the
   * tag names now (HEAD), and unless that is `digest`, this fails: the manifest is there by digest, the
   * tag is not set (rather than set apart from the referrers).
   */
  async tagByDigest(ref: ImageReference, manifest: FetchedManifest, tag: string): Promise<void> {
    const { digest, mediaType } = manifest.descriptor;
    const put = `${at(ref, digest)}?tag=${tag}`;
    const res = await this.#request(ref, 'PUT', `/manifests/${digest}?tag=${encodeURIComponent(tag)}`, true, {
      body: manifest.bytes,
      headers: { 'Content-Type': mediaType },
    });
    if (res.status !== 201) return this.#fail(res, ref.host, 'put manifest', put, 'push');
    await res.discard();
    const confirmed = (res.headers.get('oci-tag') ?? '').split(',').map((t) => t.trim());
    if (confirmed.includes(tag)) return;
    const now = await this.#request(ref, 'HEAD', `/manifests/${tag}`, false, {
      headers: { Accept: MANIFEST_ACCEPT },
    });
    await now.discard();
    if (now.status === 200 && now.headers.get('docker-content-digest') === digest) return;
    throw new ClientError(
      `tag ${at(ref, tag)} is not set: the registry did not confirm it (no OCI-Tag in its answer to PUT ${put}); ` +
        `the manifest is there as ${at(ref, digest)}, and a plain tag push would be stored under a sha256 digest, apart from the referrers of ${digest}`,
    );
  }

  async manifestExists(ref: ImageReference, reference: string): Promise<boolean> {
    const res = await this.#request(ref, 'HEAD', `/manifests/${reference}`, false, {
      headers: { Accept: MANIFEST_ACCEPT },
    });
    await res.discard();
    return res.status === 200;
  }

  /**
   * Pushes a manifest and, when it has a `subject`, records it where referrer lookups will find it: the
   * registry's index when it took the subject (`OCI-Subject`), else, or also in tag mode or with
   * `forceReferrersTag`, the subject's fallback-tag index.
   */
  async putManifestWithSubject(
    ref: ImageReference,
    reference: string,
    manifest: FetchedManifest,
  ): Promise<{ subjectAccepted: boolean }> {
    const { bytes, json, descriptor } = manifest;
    const pushed = await this.putManifest(ref, reference, bytes, descriptor.mediaType);
    const subject = json.subject as Descriptor | undefined;
    if (!subject?.digest || !tryParseDigest(subject.digest)) return pushed;
    const key = `${ref.host}/${ref.repository}`;
    if (pushed.subjectAccepted) this.#referrersApi.set(key, true);
    const mode = this.#options.referrersMode ?? 'auto';
    if (mode === 'tag' || (mode === 'auto' && (!pushed.subjectAccepted || this.#options.forceReferrersTag)))
      await this.updateFallbackIndex({ ...ref, digest: subject.digest }, referrerDescriptor(manifest));
    return pushed;
  }

  /**
   * Makes sure a manifest with a `subject` that the repository already holds is where referrer lookups
   * find it, as `putManifestWithSubject` records a pushed one, without pushing it again: a copy that
   * finds it there (after an interrupted copy, or another tool's push that kept no fallback index)
   * still lists it. A registry with the referrers API indexes it itself: once the client knows the API
   * is there (an `OCI-Subject` answer or a listing in this run) nothing is sent, else one `GET
   * /referrers/<subject>` per repository tells. Without the API, or in tag mode or with
   * `forceReferrersTag`, its entry is added to the subject's fallback index if missing (one GET when
   * it is there).
   */
  async recordReferrer(ref: ImageReference, manifest: FetchedManifest): Promise<void> {
    const subject = manifest.json.subject as Descriptor | undefined;
    if (!subject?.digest || !tryParseDigest(subject.digest)) return;
    const mode = this.#options.referrersMode ?? 'auto';
    if (mode === 'api') return;
    const viaTag =
      mode === 'tag' ||
      this.#options.forceReferrersTag ||
      !(await this.#hasReferrersApi(ref, subject.digest, `${ref.host}/${ref.repository}`));
    if (viaTag)
      await this.updateFallbackIndex({ ...ref, digest: subject.digest }, referrerDescriptor(manifest));
  }

  async blobExists(ref: ImageReference, digest: string): Promise<boolean> {
    const res = await this.#request(ref, 'HEAD', `/blobs/${digest}`, false);
    await res.discard();
    return res.status === 200;
  }

  /** The per-host limit on parallel blob transfers (`concurrency`, default 4). */
  limiter(host: string): Limiter {
    let limiter = this.#limiters.get(host);
    if (!limiter) {
      limiter = new Limiter(this.#options.concurrency ?? 4);
      this.#limiters.set(host, limiter);
    }
    return limiter;
  }

  /** Uploads bytes already in memory (small things: configs, manifests' files); see `uploadBlob`. */
  async pushBlob(ref: ImageReference, bytes: Buffer): Promise<Descriptor & { digest: string }> {
    const source = bufferSource(bytes);
    const descriptor = { mediaType: 'application/octet-stream', digest: source.digest, size: source.size };
    await this.uploadBlob(ref, source);
    return descriptor;
  }

  /**
   * Uploads a blob unless the repository has it (HEAD). With `mountFrom` (a repository on the same
   * registry) it asks for a cross-repository mount first and, when the registry declines (202), uploads
   * into the session it opened instead. Monolithic PUT by default; chunked PATCHes when asked
   * (`chunked`) or when the blob is at least `chunkedThreshold`, each chunk at least the registry's
   * `OCI-Chunk-Min-Length`. The body streams from `source.open()`; nothing is buffered beyond two chunks.
   */
  async uploadBlob(
    ref: ImageReference,
    source: BlobSource,
    options: { mountFrom?: string; chunked?: boolean } = {},
  ): Promise<TransferOutcome> {
    if (await this.blobExists(ref, source.digest)) return 'exists';
    const mount = options.mountFrom && options.mountFrom !== ref.repository;
    const start = await this.#request(
      ref,
      'POST',
      mount ? `/blobs/uploads/?mount=${source.digest}&from=${options.mountFrom}` : '/blobs/uploads/',
      true,
    );
    if (start.status !== 202 && !(mount && start.status === 201))
      return this.#fail(start, ref.host, 'upload blob', at(ref, source.digest), 'push');
    await start.discard();
    if (start.status === 201) return 'mounted';
    const location = start.headers.get('location');
    if (!location)
      throw new ClientError(`upload blob ${at(ref, source.digest)}: the registry sent no Location`);
    const minChunk = Number(start.headers.get('oci-chunk-min-length')) || 0;
    const chunked =
      options.chunked ??
      this.#options.chunked ??
      source.size >= (this.#options.chunkedThreshold ?? 128 * MiB);
    const done = chunked
      ? await this.#uploadChunks(
          ref,
          source,
          location,
          Math.max(this.#options.chunkSize ?? 32 * MiB, minChunk),
        )
      : await this.http(ref.host).requestUrl('PUT', withDigest(location, source.digest), {
          body: () =>
            source.file ? new FileBody(source.file.path, source.size, source.file.onBytes) : source.open(),
          headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(source.size) },
          scope: pushScope(ref),
        });
    if (done.status !== 201) return this.#fail(done, ref.host, 'upload blob', at(ref, source.digest), 'push');
    await done.discard();
    return 'transferred';
  }

  /**
   * PATCHes `source` in chunks of `chunkSize` bytes (the last may be shorter), then closes the session
   * with a bodiless PUT. A chunk the registry refused with a 5xx or a broken connection is resent from
   * the offset the session reports (GET on the session), so a flaky link costs one chunk, not the blob.
   */
  async #uploadChunks(
    ref: ImageReference,
    source: BlobSource,
    firstLocation: string,
    chunkSize: number,
  ): Promise<HttpResponse> {
    const http = this.http(ref.host);
    let location = firstLocation;
    let offset = 0;
    const blob = at(ref, source.digest);
    const send = async (chunk: Buffer, from: number): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        let res: HttpResponse | undefined;
        try {
          res = await http.requestUrl('PATCH', location, {
            body: chunk,
            headers: {
              'Content-Type': 'application/octet-stream',
              'Content-Length': String(chunk.length),
              'Content-Range': `${from}-${from + chunk.length - 1}`,
            },
            scope: pushScope(ref),
          });
          if (res.status === 202) {
            await res.discard();
            location = res.headers.get('location') ?? location;
            return;
          }
          if (res.status < 500 && res.status !== 408 && res.status !== 429)
            return this.#fail(
              res,
              ref.host,
              `upload bytes ${from}-${from + chunk.length - 1} of`,
              blob,
              'push',
            );
          await res.discard();
        } catch (err) {
          if (err instanceof ClientError || attempt >= 3) throw err;
        }
        if (attempt >= 3)
          return this.#fail(
            res!,
            ref.host,
            `upload bytes ${from}-${from + chunk.length - 1} of`,
            blob,
            'push',
          );
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
        // Ask the session how much it kept and send only the rest of this chunk.
        const status = await http.requestUrl('GET', location, { scope: pushScope(ref) });
        if (status.status !== 204) return this.#fail(status, ref.host, 'get upload status of', blob, 'push');
        await status.discard();
        location = status.headers.get('location') ?? location;
        const end = Number(/^0-(\d+)$/.exec(status.headers.get('range') ?? '')?.[1] ?? -1);
        const kept = end + 1 - from;
        if (kept < 0 || kept > chunk.length)
          throw new ClientError(
            `upload blob ${blob}: the registry kept ${end + 1} bytes, expected ${from}..${from + chunk.length}`,
          );
        if (kept === chunk.length) return;
        chunk = chunk.subarray(kept);
        from += kept;
      }
    };
    // Two chunk buffers take turns: the next chunk is read from the source while the registry takes
    // the previous one, so a copy keeps downloading during each PATCH and its answer (a 1 GiB copy
    // between two registries: 4.5-5.1 s with one buffer, 3.4-3.9 s with two). A buffer is refilled
    // only after the registry answered for its chunk, so it has taken every byte.
    const length = Math.max(1, Math.min(chunkSize, source.size));
    const buffers: (Buffer | undefined)[] = [undefined, undefined];
    let turn = 0;
    let filled = 0;
    let inFlight: Promise<void> | undefined;
    /** The buffer whose turn it is to be filled, allocated on first use (a small blob needs one). */
    const fillable = (): Buffer => {
      buffers[turn] ??= Buffer.allocUnsafe(length);
      return buffers[turn]!;
    };
    const flush = async (chunk: Buffer) => {
      if (inFlight) await inFlight;
      inFlight = send(chunk, offset);
      // Awaited by the next flush or after the last chunk; until then a failure must not go unhandled.
      inFlight.catch(() => {});
      offset += chunk.length;
      turn ^= 1;
      filled = 0;
    };
    if (source.file) {
      // A file is read straight into the chunk buffers: no read-stream buffer per MiB, no copy.
      const handle = await open(source.file.path, 'r');
      try {
        while (offset < source.size) {
          const chunk = fillable();
          const want = Math.min(chunk.length, source.size - offset);
          while (filled < want) {
            const { bytesRead } = await handle.read(chunk, filled, want - filled, offset + filled);
            if (bytesRead === 0)
              throw new ClientError(`upload blob ${blob}: ${source.file.path} shrank while it was sent`);
            filled += bytesRead;
          }
          source.file.onBytes?.(want);
          await flush(want === chunk.length ? chunk : chunk.subarray(0, want));
        }
      } finally {
        await handle.close();
      }
    } else {
      // Copies a piece into the chunk buffers; a promise (the source waits) only where a chunk fills.
      const fill = (piece: Uint8Array): void | Promise<void> => {
        for (let at = 0; at < piece.length; ) {
          const chunk = fillable();
          const take = Math.min(chunk.length - filled, piece.length - at);
          chunk.set(piece.subarray(at, at + take), filled);
          filled += take;
          at += take;
          if (filled === chunk.length) return flush(chunk).then(() => fill(piece.subarray(at)));
        }
      };
      await pourSource(source, { write: (piece) => fill(piece as Buffer) });
      if (filled > 0) await flush(buffers[turn]!.subarray(0, filled));
    }
    if (inFlight) await inFlight;
    if (offset !== source.size)
      throw new ClientError(`upload blob ${blob}: the source gave ${offset} bytes, expected ${source.size}`);
    return http.requestUrl('PUT', withDigest(location, source.digest), {
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': '0' },
      scope: pushScope(ref),
    });
  }

  /**
   * Opens a blob for reading. The stream fails (never ends cleanly) unless the bytes match `digest` and,
   * when given, `size`, so a registry that sends the wrong or truncated content cannot slip it through.
   */
  async openBlob(ref: ImageReference, digest: string, size?: number): Promise<Readable> {
    return sinkReadable(await this.#blobBody(ref, digest, size, worthDownloading(size)));
  }

  /**
   * Reads a blob into `sink`, lending it each chunk (see `BodySink`): the way to download large blobs.
   * Resolves only once every byte arrived and matched `digest` (and `size`, when given); the sink may
   * have taken some bytes of a blob that then fails.
   */
  async readBlob(ref: ImageReference, digest: string, sink: BodySink, size?: number): Promise<void> {
    return (await this.#blobBody(ref, digest, size, worthDownloading(size)))(sink);
  }

  /**
   * GETs a blob and checks its status and length; returns what pours its verified bytes. `large` sends
   * the GET through the download reader (see DOWNLOAD_FROM).
   */
  async #blobBody(
    ref: ImageReference,
    digest: string,
    size: number | undefined,
    large: boolean,
  ): Promise<(sink: BodySink) => Promise<void>> {
    const res = await this.#request(ref, 'GET', `/blobs/${digest}`, false, large ? { download: true } : {});
    if (res.status !== 200) return this.#fail(res, ref.host, 'get blob', at(ref, digest), 'pull');
    const length = Number(res.headers.get('content-length'));
    if (
      size !== undefined &&
      Number.isFinite(length) &&
      res.headers.has('content-length') &&
      length !== size
    ) {
      await res.discard();
      throw new ClientError(
        `blob ${digest}: the registry sends ${length} bytes, its descriptor says ${size}`,
      );
    }
    let check: ContentCheck;
    try {
      check = new ContentCheck(digest, size);
    } catch (err) {
      await res.discard();
      throw err;
    }
    return check.checking((sink) => res.pour(sink));
  }

  /**
   * Reads a whole (small) blob into memory, verified; `maxBytes` (default 64 MiB) guards memory. It
   * keeps to the kept-alive connections whatever the size: it serves small blobs (signature envelopes),
   * for which a connection of their own costs more than the one copy per chunk the reader would save.
   */
  async getBlob(ref: ImageReference, digest: string, maxBytes = 64 * MiB): Promise<Buffer> {
    const pour = await this.#blobBody(ref, digest, undefined, false);
    return collect(
      pour,
      maxBytes,
      () => new ClientError(`blob ${digest} is larger than ${maxBytes} bytes; stream it instead`),
    );
  }

  async tag(ref: ImageReference, newTag: string): Promise<string> {
    const manifest = await this.getManifest(ref);
    await this.tagManifest(ref, manifest, newTag);
    return manifest.descriptor.digest;
  }

  /**
   * Points `tag` at a manifest the repository holds. A sha256 manifest is pushed under the tag; any
   * other digest is tagged by digest (`tagByDigest`), since a tag PUT is hashed with sha256 and the tag
   * would come apart from the manifest's referrers.
   */
  async tagManifest(ref: ImageReference, manifest: FetchedManifest, tag: string): Promise<void> {
    const algorithm = tryParseDigest(manifest.descriptor.digest)?.algorithm;
    if (algorithm && algorithm !== 'sha256') return this.tagByDigest(ref, manifest, tag);
    await this.putManifest(ref, tag, manifest.bytes, manifest.descriptor.mediaType);
  }

  /** Lists referrers of `subject`: the API (all pages), or the fallback tag when the API is missing. */
  async referrers(
    subject: ImageReference & { digest: string },
    artifactType?: string,
  ): Promise<Descriptor[]> {
    const mode = this.#options.referrersMode ?? 'auto';
    const key = `${subject.host}/${subject.repository}`;
    if (mode !== 'tag' && this.#referrersApi.get(key) !== false) {
      const fromApi = await this.#referrersFromApi(subject, artifactType);
      if (fromApi) {
        this.#referrersApi.set(key, true);
        return fromApi;
      }
      if (mode === 'api')
        throw new ClientError(`${key} has no referrers API (404); use --referrers-mode auto or tag`);
      this.#referrersApi.set(key, false);
    }
    const index = await this.#fallbackIndex(subject);
    return index.manifests.filter((d) => !artifactType || d.artifactType === artifactType);
  }

  /** The referrers the API lists (up to `maxPages` pages), or undefined when there is no API. */
  async #referrersFromApi(
    subject: ImageReference & { digest: string },
    artifactType?: string,
    maxPages = 1000,
  ): Promise<Descriptor[] | undefined> {
    const out: Descriptor[] = [];
    let path: string | undefined =
      `/referrers/${subject.digest}${artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : ''}`;
    for (let pages = 0; path && pages < maxPages; pages++) {
      const res = await this.#request(subject, 'GET', path, false);
      if (res.status === 404) {
        await res.discard();
        return pages === 0 ? undefined : out;
      }
      if (res.status !== 200)
        return this.#fail(res, subject.host, 'list referrers of', at(subject, subject.digest), 'pull');
      const type = res.headers.get('content-type') ?? '';
      if (!type.startsWith(MediaType.ociIndex)) {
        // A 200 that is not an index (a login page, a proxy) is not the API.
        await res.discard();
        return pages === 0 ? undefined : out;
      }
      const body = (await res.json()) as { manifests?: Descriptor[] };
      const entries = Array.isArray(body.manifests) ? body.manifests : [];
      // Filter locally when the registry did not (no OCI-Filters-Applied).
      const filtered = artifactType && !res.headers.get('oci-filters-applied')?.includes('artifactType');
      out.push(...(filtered ? entries.filter((d) => d.artifactType === artifactType) : entries));
      const link = res.headers.get('link');
      const next = link ? /<([^>]+)>\s*;\s*rel="next"/.exec(link)?.[1] : undefined;
      path = next ? next.replace(new RegExp(`^(https?://[^/]+)?/v2/${subject.repository}`), '') : undefined;
    }
    return out;
  }

  /**
   * The fallback index of a subject with its ETag: empty when the tag does not exist; with `notIndex`
   * (what the tag holds instead) and no entries when it holds something other than an image index (see
   * `readFallbackIndex`). Accept names every manifest type: asked for an index alone, Distribution
   * answers 404 for an image manifest under the tag, and a writer would take the tag for free.
   */
  async #fallbackIndex(
    subject: ImageReference & { digest: string },
  ): Promise<{ manifests: Descriptor[]; etag?: string; exists: boolean; notIndex?: string }> {
    const tag = referrersTagFor(tryParseDigest(subject.digest)!);
    const res = await this.#request(subject, 'GET', `/manifests/${tag}`, false, {
      headers: { Accept: MANIFEST_ACCEPT },
    });
    if (res.status === 404) {
      await res.discard();
      return { manifests: [], exists: false };
    }
    if (res.status !== 200)
      return this.#fail(res, subject.host, 'get referrers tag', at(subject, tag), 'pull');
    const etag = res.headers.get('etag') ?? undefined;
    const content = readFallbackIndex(await res.bytes(), res.headers.get('content-type') ?? undefined);
    return {
      manifests: content.index ? content.manifests : [],
      exists: true,
      ...(etag ? { etag } : {}),
      ...(content.index ? {} : { notIndex: content.holds }),
    };
  }

  /**
   * Adds (or removes) a descriptor in the subject's fallback index, unless it is listed (or absent)
   * already, safely under concurrency: write with If-Match/If-None-Match and retry on 412; then re-read
   * after a short random pause and re-apply until the entry is stable, for registries that ignore
   * If-Match (Distribution 2.8 does). When the tag holds something other than an image index (another
   * tool's manifest tagged `sha256-<hex>`), it fails and leaves the tag as it is (distribution-spec,
   * client step 2: report a failure and stop); oras and regctl overwrite it.
   */
  async updateFallbackIndex(
    subject: ImageReference & { digest: string },
    entry: Descriptor,
    remove = false,
  ): Promise<void> {
    const tag = referrersTagFor(tryParseDigest(subject.digest)!);
    for (let attempt = 0; attempt < 60; attempt++) {
      const current = await this.#fallbackIndex(subject);
      if (current.notIndex)
        throw new ClientError(
          `referrers tag ${at(subject, tag)} holds ${current.notIndex}, not an image index; it is left as it is, so ${entry.digest} was not ${remove ? 'taken out of' : 'added to'} it (move or delete that tag to keep referrers there)`,
        );
      const present = current.manifests.some((d) => d.digest === entry.digest);
      // Already so before we wrote anything: nothing to write (client step 4: no duplicates).
      if (present !== remove && attempt === 0) return;
      if (present !== remove) {
        // Our change is visible. Registries that ignore If-Match let a writer that read before our write
        // overwrite it later, so it only counts as stable after two more reads, each after a random pause
        // longer than such a writer's read-to-write gap.
        if (await this.#stillThere(subject, entry.digest, remove)) return;
        continue;
      }
      const manifests = remove
        ? current.manifests.filter((d) => d.digest !== entry.digest)
        : [...current.manifests.filter((d) => d.digest !== entry.digest), entry];
      const bytes = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }),
      );
      const condition: Record<string, string> = current.etag
        ? { 'If-Match': current.etag }
        : current.exists
          ? {}
          : { 'If-None-Match': '*' };
      const put = await this.putManifest(subject, tag, bytes, MediaType.ociIndex, condition);
      if (put.preconditionFailed) await new Promise((r) => setTimeout(r, randomInt(20)));
      else await new Promise((r) => setTimeout(r, 20 + randomInt(80)));
    }
    throw new ClientError(`could not update ${tag}: too much contention`);
  }

  async #stillThere(
    subject: ImageReference & { digest: string },
    digest: string,
    remove: boolean,
  ): Promise<boolean> {
    for (let check = 0; check < 2; check++) {
      await new Promise((r) => setTimeout(r, 200 + randomInt(400)));
      const index = await this.#fallbackIndex(subject);
      if (index.manifests.some((d) => d.digest === digest) === remove) return false;
    }
    return true;
  }

  /** `pushArtifact` (artifact.ts) into a repository, with this client's progress listener. */
  async pushArtifact(
    target: ImageReference,
    options: Omit<PushArtifactOptions, 'progress'>,
  ): Promise<Descriptor> {
    return pushArtifact(new RegistryTarget(this, target), { ...options, ...this.#progress() });
  }

  /** Attaches files as an artifact referring to `subject` (a tag is resolved to a digest first). */
  async attach(
    subject: ImageReference,
    artifactType: string,
    files: ArtifactFile[],
    annotations: Record<string, string> = {},
  ): Promise<Descriptor> {
    return attachArtifact(new RegistryTarget(this, subject), subject.digest ?? subject.tag ?? 'latest', {
      artifactType,
      files,
      annotations,
      ...this.#progress(),
    });
  }

  /** `pullArtifact` (artifact.ts) from a repository: an artifact's files, by title, into `dir`. */
  async pullArtifact(ref: ImageReference, dir: string): Promise<PulledArtifact> {
    return pullArtifact(
      new RegistryTarget(this, ref),
      ref.digest ?? ref.tag ?? 'latest',
      dir,
      this.#progress(),
    );
  }

  #progress(): { progress?: ProgressListener } {
    return this.#options.progress ? { progress: this.#options.progress } : {};
  }

  /**
   * Deletes a manifest by digest (a tag is resolved first). When it refers to a subject on a registry
   * without the referrers API (or in tag mode), its entry leaves the subject's fallback index too.
   */
  async deleteManifest(ref: ImageReference): Promise<string> {
    const { descriptor, json } = await this.getManifest(ref);
    const subject = json.subject as Descriptor | undefined;
    const res = await this.#request(ref, 'DELETE', `/manifests/${descriptor.digest}`, true);
    if (res.status !== 202 && res.status !== 200)
      return this.#fail(res, ref.host, 'delete manifest', at(ref, descriptor.digest), 'delete');
    await res.discard();
    const mode = this.#options.referrersMode ?? 'auto';
    const key = `${ref.host}/${ref.repository}`;
    if (subject?.digest && tryParseDigest(subject.digest)) {
      const viaTag =
        mode === 'tag' ||
        this.#options.forceReferrersTag ||
        (mode === 'auto' && !(await this.#hasReferrersApi(ref, subject.digest, key)));
      if (viaTag)
        await this.updateFallbackIndex({ ...ref, digest: subject.digest }, descriptor, true).catch((err) => {
          throw err instanceof ClientError
            ? new ClientError(`deleted ${at(ref, descriptor.digest)}, but ${err.message}`, err.status)
            : err;
        });
    }
    return descriptor.digest;
  }

  /**
   * Whether the repository has the referrers API: known from an earlier answer, else asked once (the
   * first page of `digest`'s referrers), however many callers wait for the answer at the same time.
   */
  async #hasReferrersApi(ref: ImageReference, digest: string, key: string): Promise<boolean> {
    const known = this.#referrersApi.get(key);
    if (known !== undefined) return known;
    let probe = this.#apiProbes.get(key);
    if (!probe) {
      probe = this.#referrersFromApi({ ...ref, digest }, undefined, 1).then((found) => {
        const has = found !== undefined;
        this.#referrersApi.set(key, has);
        return has;
      });
      this.#apiProbes.set(key, probe);
      const forget = () => this.#apiProbes.delete(key);
      probe.then(forget, forget);
    }
    return probe;
  }

  async deleteBlob(ref: ImageReference, digest: string): Promise<void> {
    const res = await this.#request(ref, 'DELETE', `/blobs/${digest}`, true);
    if (res.status !== 202 && res.status !== 200)
      return this.#fail(res, ref.host, 'delete blob', at(ref, digest), 'delete');
    await res.discard();
  }

  /** Every tag of a repository, following Link pages. */
  async listTags(ref: ImageReference): Promise<string[]> {
    return this.#pages(ref.host, `/v2/${ref.repository}/tags/list`, `repository:${ref.repository}:pull`, {
      field: 'tags',
      subject: `${ref.host}/${ref.repository}`,
    });
  }

  /** Every repository of a registry (that the caller may see), following Link pages. */
  async listRepositories(host: string): Promise<string[]> {
    return this.#pages(host, '/v2/_catalog', 'registry:catalog:*', { field: 'repositories', subject: host });
  }

  async #pages(
    host: string,
    first: string,
    scope: string,
    list: { field: 'tags' | 'repositories'; subject: string },
  ): Promise<string[]> {
    const { field, subject } = list;
    const out: string[] = [];
    let path: string | undefined = first;
    for (let pages = 0; path && pages < 10_000; pages++) {
      const res = await this.http(host).request('GET', path, { scope });
      if (res.status !== 200)
        return this.#fail(
          res,
          host,
          `list ${field} of`,
          subject,
          field === 'tags' ? 'pull' : 'list the catalog',
        );
      const body = (await res.json()) as Record<string, string[] | null>;
      out.push(...(body[field] ?? []));
      const link = res.headers.get('link');
      path = link
        ? /<([^>]+)>\s*;\s*rel="next"/.exec(link)?.[1]?.replace(/^https?:\/\/[^/]+/, '')
        : undefined;
    }
    return out;
  }

  /**
   * Copies `src` to `dst` between registries (see `copyGraph` for the order and the rules); a tag on
   * the destination (or else the source's tag) is set last.
   */
  async copy(src: ImageReference, dst: ImageReference, options: CopyOptions = {}): Promise<CopyResult> {
    return copyGraph(
      new RegistryTarget(this, src),
      src.digest ?? src.tag ?? 'latest',
      new RegistryTarget(this, dst),
      dst.tag ?? (dst.digest ? undefined : src.tag),
      { progress: this.#options.progress, ...options },
    );
  }
}
