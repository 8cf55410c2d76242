import { randomInt } from 'node:crypto';
import { digestOf, tryParseDigest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { referrersTagFor } from '../oci/referrers-tag.ts';
import { Authenticator } from './auth.ts';
import { getCredentials } from './docker-config.ts';
import type { ImageReference } from './reference.ts';
import { RegistryHttp } from './registry-http.ts';

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
  maxManifestBytes?: number;
}

export class ClientError extends Error {
  override name = 'ClientError';
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

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

  constructor(options: ClientOptions = {}) {
    this.#options = options;
  }

  http(host: string): RegistryHttp {
    let http = this.#hosts.get(host);
    if (!http) {
      const credentials = this.#options.credentials ?? getCredentials;
      http = new RegistryHttp(host, new Authenticator(() => credentials(host)), {
        plainHttp: this.#options.plainHttp === true,
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

  async #fail(res: Response, what: string): Promise<never> {
    let detail = '';
    try {
      const body = (await res.json()) as { errors?: { code: string; message: string }[] };
      detail = body.errors?.map((e) => `${e.code}: ${e.message}`).join('; ') ?? '';
    } catch {}
    const hint = res.status === 401 ? ' (run `tether login`)' : res.status === 403 ? ' (access denied)' : '';
    throw new ClientError(`${what}: HTTP ${res.status}${detail ? ` (${detail})` : ''}${hint}`, res.status);
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
    if (res.status !== 200) return this.#fail(res, `get manifest ${reference}`);
    const max = this.#options.maxManifestBytes ?? 4 * 1024 * 1024;
    const bytes = Buffer.from(await res.arrayBuffer());
    if (bytes.length > max) throw new ClientError(`manifest ${reference} is larger than ${max} bytes`);
    const expected = ref.digest ?? res.headers.get('docker-content-digest') ?? undefined;
    const algorithm = (expected && tryParseDigest(expected)?.algorithm) || 'sha256';
    const digest = digestOf(algorithm, bytes);
    if (expected && digest !== expected)
      throw new ClientError(`manifest ${reference}: content digest ${digest} does not match ${expected}`);
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
    let res: Response;
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
      const body = Buffer.from(await res.arrayBuffer());
      if (!body.includes('MANIFEST_BLOB_UNKNOWN')) {
        res = new Response(body, { status: res.status, headers: res.headers });
        break;
      }
      await new Promise((r) => setTimeout(r, 100 * 3 ** retry + randomInt(100)));
    }
    if (res.status === 412) return { digest: '', subjectAccepted: false, preconditionFailed: true };
    if (res.status !== 201) return this.#fail(res, `put manifest ${reference}`);
    await res.arrayBuffer();
    return {
      digest: digestOf('sha256', bytes),
      subjectAccepted: res.headers.has('oci-subject'),
      preconditionFailed: false,
    };
  }

  async blobExists(ref: ImageReference, digest: string): Promise<boolean> {
    const res = await this.#request(ref, 'HEAD', `/blobs/${digest}`, false);
    return res.status === 200;
  }

  /** Uploads a blob (POST then PUT with the body) unless the repository has it already. */
  async pushBlob(ref: ImageReference, bytes: Buffer): Promise<Descriptor & { digest: string }> {
    const digest = digestOf('sha256', bytes);
    const descriptor = { mediaType: 'application/octet-stream', digest, size: bytes.length };
    if (await this.blobExists(ref, digest)) return descriptor;
    const start = await this.#request(ref, 'POST', '/blobs/uploads/', true);
    if (start.status !== 202) return this.#fail(start, 'start upload');
    const location = start.headers.get('location')!;
    const url = new URL(location, this.http(ref.host).base);
    url.searchParams.set('digest', digest);
    const done = await this.http(ref.host).request('PUT', url.pathname + url.search, {
      body: bytes,
      headers: { 'Content-Type': 'application/octet-stream' },
      scope: `repository:${ref.repository}:pull,push`,
    });
    if (done.status !== 201) return this.#fail(done, `upload ${digest}`);
    return descriptor;
  }

  /** Fetches a whole blob and verifies digest and size. */
  async getBlob(ref: ImageReference, digest: string): Promise<Buffer> {
    const res = await this.#request(ref, 'GET', `/blobs/${digest}`, false);
    if (res.status !== 200) return this.#fail(res, `get blob ${digest}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    const algorithm = tryParseDigest(digest)?.algorithm ?? 'sha256';
    if (digestOf(algorithm, bytes) !== digest)
      throw new ClientError(`blob ${digest}: content does not match its digest`);
    return bytes;
  }

  async tag(ref: ImageReference, newTag: string): Promise<string> {
    const { bytes, descriptor } = await this.getManifest(ref);
    await this.putManifest(ref, newTag, bytes, descriptor.mediaType);
    return descriptor.digest;
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

  async #referrersFromApi(
    subject: ImageReference & { digest: string },
    artifactType?: string,
  ): Promise<Descriptor[] | undefined> {
    const out: Descriptor[] = [];
    let path: string | undefined =
      `/referrers/${subject.digest}${artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : ''}`;
    for (let pages = 0; path && pages < 1000; pages++) {
      const res = await this.#request(subject, 'GET', path, false);
      if (res.status === 404) {
        await res.arrayBuffer();
        return pages === 0 ? undefined : out;
      }
      if (res.status !== 200) return this.#fail(res, 'list referrers');
      const type = res.headers.get('content-type') ?? '';
      if (!type.startsWith(MediaType.ociIndex)) {
        // A 200 that is not an index (a login page, a proxy) is not the API.
        await res.arrayBuffer();
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

  /** The fallback index of a subject with its ETag; an empty index when the tag does not exist or is not an index. */
  async #fallbackIndex(
    subject: ImageReference & { digest: string },
  ): Promise<{ manifests: Descriptor[]; etag?: string; exists: boolean }> {
    const tag = referrersTagFor(tryParseDigest(subject.digest)!);
    const res = await this.#request(subject, 'GET', `/manifests/${tag}`, false, {
      headers: { Accept: MediaType.ociIndex },
    });
    if (res.status === 404) {
      await res.arrayBuffer();
      return { manifests: [], exists: false };
    }
    if (res.status !== 200) return this.#fail(res, `get ${tag}`);
    const etag = res.headers.get('etag') ?? undefined;
    const bytes = Buffer.from(await res.arrayBuffer());
    try {
      const index = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; manifests?: unknown };
      // A fallback index must be an OCI index of descriptors; anything else counts as "no referrers".
      if (index.mediaType !== MediaType.ociIndex || !Array.isArray(index.manifests))
        return { manifests: [], exists: true, ...(etag ? { etag } : {}) };
      const manifests = (index.manifests as Descriptor[]).filter(
        (d) => typeof d?.digest === 'string' && tryParseDigest(d.digest) && typeof d.size === 'number',
      );
      return { manifests, exists: true, ...(etag ? { etag } : {}) };
    } catch {
      return { manifests: [], exists: true, ...(etag ? { etag } : {}) };
    }
  }

  /**
   * Adds (or removes) a descriptor in the subject's fallback index, safely under concurrency: write with
   * If-Match/If-None-Match and retry on 412; then re-read after a short random pause and re-apply until
   * the entry is stable, for registries that ignore If-Match (Distribution 2.8 does).
   */
  async updateFallbackIndex(
    subject: ImageReference & { digest: string },
    entry: Descriptor,
    remove = false,
  ): Promise<void> {
    const tag = referrersTagFor(tryParseDigest(subject.digest)!);
    for (let attempt = 0; attempt < 60; attempt++) {
      const current = await this.#fallbackIndex(subject);
      const present = current.manifests.some((d) => d.digest === entry.digest);
      if (present !== remove && attempt > 0) {
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

  /**
   * Pushes files as an artifact manifest (empty config, one layer per file, `org.opencontainers.image.title`
   * annotations), optionally referring to `subject` and optionally tagged. Blobs first, then the manifest
   * by digest, then the tag; the fallback index is updated when the registry did not take the subject.
   */
  async pushArtifact(
    target: ImageReference,
    options: {
      artifactType: string;
      files: { mediaType: string; bytes: Buffer; title?: string }[];
      annotations?: Record<string, string>;
      subject?: Descriptor;
      tag?: string;
    },
  ): Promise<Descriptor> {
    const { artifactType, files, subject } = options;
    const annotations = options.annotations ?? {};
    const empty = await this.pushBlob(target, Buffer.from('{}'));
    const layers: Descriptor[] = [];
    for (const file of files) {
      const pushed = await this.pushBlob(target, file.bytes);
      layers.push({
        ...pushed,
        mediaType: file.mediaType,
        ...(file.title ? { annotations: { 'org.opencontainers.image.title': file.title } } : {}),
      });
    }
    const emptyDescriptor = { mediaType: MediaType.ociEmpty, digest: empty.digest, size: 2, data: 'e30=' };
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      artifactType,
      config: emptyDescriptor,
      layers: layers.length ? layers : [emptyDescriptor],
      ...(subject
        ? { subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size } }
        : {}),
      ...(Object.keys(annotations).length ? { annotations } : {}),
    };
    const bytes = Buffer.from(JSON.stringify(manifest));
    const digest = digestOf('sha256', bytes);
    const pushed = await this.putManifest(target, digest, bytes, MediaType.ociManifest);
    const descriptor: Descriptor = {
      mediaType: MediaType.ociManifest,
      digest,
      size: bytes.length,
      artifactType,
      ...(Object.keys(annotations).length ? { annotations } : {}),
    };
    if (subject) {
      const key = `${target.host}/${target.repository}`;
      if (pushed.subjectAccepted) this.#referrersApi.set(key, true);
      const mode = this.#options.referrersMode ?? 'auto';
      if (
        mode === 'tag' ||
        (mode === 'auto' && (!pushed.subjectAccepted || this.#options.forceReferrersTag))
      ) {
        await this.updateFallbackIndex({ ...target, digest: subject.digest }, descriptor);
      }
    }
    if (options.tag) await this.putManifest(target, options.tag, bytes, MediaType.ociManifest);
    return descriptor;
  }

  /** Attaches files as an artifact referring to `subject` (a tag is resolved to a digest first). */
  async attach(
    subject: ImageReference,
    artifactType: string,
    files: { mediaType: string; bytes: Buffer; title?: string }[],
    annotations: Record<string, string> = {},
  ): Promise<Descriptor> {
    const resolved = await this.resolve(subject);
    return this.pushArtifact(
      { ...subject, digest: resolved.digest },
      { artifactType, files, annotations, subject: resolved },
    );
  }

  /** Files of an artifact (layers with a title annotation), each verified. */
  async pullArtifact(ref: ImageReference): Promise<{ title: string; bytes: Buffer; mediaType: string }[]> {
    const { json } = await this.getManifest(ref);
    const layers = (Array.isArray(json.layers) ? json.layers : []) as Descriptor[];
    const files: { title: string; bytes: Buffer; mediaType: string }[] = [];
    for (const layer of layers) {
      const title = layer.annotations?.['org.opencontainers.image.title'];
      if (!title) continue;
      if (title.includes('/') || title.includes('\\') || title === '..' || title === '.') {
        throw new ClientError(`refusing to write a file named "${title}"`);
      }
      files.push({ title, mediaType: layer.mediaType, bytes: await this.getBlob(ref, layer.digest) });
    }
    return files;
  }

  /**
   * Deletes a manifest by digest (a tag is resolved first). When it refers to a subject on a registry
   * without the referrers API (or in tag mode), its entry leaves the subject's fallback index too.
   */
  async deleteManifest(ref: ImageReference): Promise<string> {
    const { descriptor, json } = await this.getManifest(ref);
    const subject = json.subject as Descriptor | undefined;
    const res = await this.#request(ref, 'DELETE', `/manifests/${descriptor.digest}`, true);
    if (res.status !== 202 && res.status !== 200) return this.#fail(res, `delete ${descriptor.digest}`);
    await res.arrayBuffer();
    const mode = this.#options.referrersMode ?? 'auto';
    const key = `${ref.host}/${ref.repository}`;
    if (subject?.digest && tryParseDigest(subject.digest)) {
      const viaTag =
        mode === 'tag' ||
        this.#options.forceReferrersTag ||
        (mode === 'auto' && !(await this.#hasReferrersApi(ref, subject.digest, key)));
      if (viaTag) await this.updateFallbackIndex({ ...ref, digest: subject.digest }, descriptor, true);
    }
    return descriptor.digest;
  }

  async #hasReferrersApi(ref: ImageReference, digest: string, key: string): Promise<boolean> {
    const known = this.#referrersApi.get(key);
    if (known !== undefined) return known;
    const has = (await this.#referrersFromApi({ ...ref, digest })) !== undefined;
    this.#referrersApi.set(key, has);
    return has;
  }

  async deleteBlob(ref: ImageReference, digest: string): Promise<void> {
    const res = await this.#request(ref, 'DELETE', `/blobs/${digest}`, true);
    if (res.status !== 202 && res.status !== 200) return this.#fail(res, `delete blob ${digest}`);
    await res.arrayBuffer();
  }

  /** Every tag of a repository, following Link pages. */
  async listTags(ref: ImageReference): Promise<string[]> {
    return this.#pages(
      ref.host,
      `/v2/${ref.repository}/tags/list`,
      `repository:${ref.repository}:pull`,
      'tags',
    );
  }

  /** Every repository of a registry (that the caller may see), following Link pages. */
  async listRepositories(host: string): Promise<string[]> {
    return this.#pages(host, '/v2/_catalog', 'registry:catalog:*', 'repositories');
  }

  async #pages(
    host: string,
    first: string,
    scope: string,
    field: 'tags' | 'repositories',
  ): Promise<string[]> {
    const out: string[] = [];
    let path: string | undefined = first;
    for (let pages = 0; path && pages < 10_000; pages++) {
      const res = await this.http(host).request('GET', path, { scope });
      if (res.status !== 200) return this.#fail(res, `list ${field}`);
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
   * Copies `src` to `dst` (registry to registry): blobs, then child manifests, then the manifest by
   * digest, then (with `referrers`) its referrers and theirs, recursively and each digest once; the tag
   * last, so the image is complete before it is visible. What the destination has is skipped, so
   * re-running an interrupted copy finishes it. Returns the copied root descriptor.
   */
  async copy(
    src: ImageReference,
    dst: ImageReference,
    options: { referrers?: boolean } = {},
  ): Promise<Descriptor> {
    const root = await this.getManifest(src);
    const seen = new Set<string>();
    await this.#copyManifest(src, dst, root.descriptor.digest, options.referrers === true, seen);
    const tag = dst.tag ?? (dst.digest ? undefined : src.tag);
    if (tag) await this.putManifest(dst, tag, root.bytes, root.descriptor.mediaType);
    return root.descriptor;
  }

  async #copyManifest(
    src: ImageReference,
    dst: ImageReference,
    digest: string,
    referrers: boolean,
    seen: Set<string>,
  ): Promise<void> {
    if (seen.has(digest)) return;
    seen.add(digest);
    const { bytes, json, descriptor } = await this.getManifest({ ...src, digest });
    for (const child of (Array.isArray(json.manifests) ? json.manifests : []) as Descriptor[]) {
      if (
        child.mediaType === MediaType.ociManifest ||
        child.mediaType === MediaType.ociIndex ||
        child.mediaType === MediaType.dockerManifest ||
        child.mediaType === MediaType.dockerManifestList
      ) {
        await this.#copyManifest(src, dst, child.digest, referrers, seen);
      } else await this.#copyBlob(src, dst, child.digest);
    }
    const blobs = [json.config, ...(Array.isArray(json.layers) ? json.layers : [])] as (
      | Descriptor
      | undefined
    )[];
    for (const blob of blobs) {
      if (blob?.digest && !blob.urls?.length) await this.#copyBlob(src, dst, blob.digest);
    }
    const exists = (await this.#request(dst, 'HEAD', `/manifests/${digest}`, false)).status === 200;
    if (!exists) {
      const pushed = await this.putManifest(dst, digest, bytes, descriptor.mediaType);
      const subject = json.subject as Descriptor | undefined;
      const mode = this.#options.referrersMode ?? 'auto';
      if (
        subject?.digest &&
        (mode === 'tag' || (mode === 'auto' && (!pushed.subjectAccepted || this.#options.forceReferrersTag)))
      ) {
        const artifactType =
          (json.artifactType as string | undefined) ?? (json.config as Descriptor | undefined)?.mediaType;
        const annotations = json.annotations as Record<string, string> | undefined;
        await this.updateFallbackIndex(
          { ...dst, digest: subject.digest },
          {
            ...descriptor,
            ...(artifactType ? { artifactType } : {}),
            ...(annotations ? { annotations } : {}),
          },
        );
      }
    }
    if (referrers) {
      for (const referrer of await this.referrers({ ...src, digest })) {
        await this.#copyManifest(src, dst, referrer.digest, referrers, seen);
      }
    }
  }

  async #copyBlob(src: ImageReference, dst: ImageReference, digest: string): Promise<void> {
    if (await this.blobExists(dst, digest)) return;
    if (src.host === dst.host && src.repository !== dst.repository) {
      const mount = await this.#request(
        dst,
        'POST',
        `/blobs/uploads/?mount=${digest}&from=${src.repository}`,
        true,
      );
      await mount.arrayBuffer();
      if (mount.status === 201) return;
    }
    await this.pushBlob(dst, await this.getBlob(src, digest));
  }
}
