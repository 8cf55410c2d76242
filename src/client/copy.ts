import type { Descriptor } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { collect } from './body-sink.ts';
import type { FetchedManifest } from './client.ts';
import { ClientError } from './errors.ts';
import { acquireAll } from './limiter.ts';
import type { ProgressListener, TransferOutcome } from './progress.ts';
import { blobSource, type ContentTarget, pourBlob } from './target.ts';
import { countedSource } from './verify-stream.ts';

export interface CopyOptions {
  /** Also copy what refers to the image, its index children and its referrers, recursively. */
  referrers?: boolean;
  /**
   * `os/arch[/variant]`: from an index, copy only the matching image (which becomes the root); a single
   * image is copied only when its config says it is for that platform.
   */
  platform?: string;
  /** Where referrers are listed and read (default: the source). */
  referrersSource?: ContentTarget;
  /** Where referrers are written (default: the destination). */
  referrersTarget?: ContentTarget;
  progress?: ProgressListener;
}

export interface CopyResult {
  root: Descriptor;
  manifests: { copied: number; existed: number };
  blobs: Record<TransferOutcome, number>;
  bytes: number;
  referrers: number;
}

const MANIFEST_TYPES = new Set<string>([
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
]);

/** Image configs (OCI and Docker), whose `os`, `architecture` and `variant` give an image's platform. */
const IMAGE_CONFIG_TYPES = new Set<string>([
  MediaType.ociConfig,
  'application/vnd.docker.container.image.v1+json',
]);
/** Configs are a few KiB; the cap only keeps a lying descriptor from filling memory. */
const MAX_CONFIG = 4 * 1024 * 1024;

interface Platform {
  os?: string;
  architecture?: string;
  variant?: string;
}

/**
 * Whether `platform` (an index entry's or a config's) is the one `wanted`: OS and architecture equal,
 * and the variant too when one is asked for (as oras and crane match; regctl also normalises variants).
 */
function matchesPlatform(
  platform: unknown,
  wanted: { os: string; architecture: string; variant: string | undefined },
): boolean {
  const p = platform as Platform | undefined;
  return (
    p?.os === wanted.os &&
    p.architecture === wanted.architecture &&
    (!wanted.variant || p.variant === wanted.variant)
  );
}

function platformName({ os, architecture, variant }: Platform): string {
  return [os ?? '?', architecture ?? '?', ...(variant ? [variant] : [])].join('/');
}

export class CopyError extends ClientError {
  override name = 'CopyError';
}

/**
 * Copies the graph under `reference` from `src` to `dst`, in the order that keeps the destination
 * consistent at every moment: blobs, then child manifests, then the manifest itself (by digest), then
 * its referrers (and theirs, and those of every index child), and the tag last, so nobody can pull a
 * tag whose content is not all there. Each digest moves once however often it is reached (loop-safe);
 * what the destination already has is not sent again but still recorded where the destination looks
 * referrers up (`recordStored`), so re-running an interrupted copy finishes it.
 */
export async function copyGraph(
  src: ContentTarget,
  reference: string,
  dst: ContentTarget,
  tag: string | undefined,
  options: CopyOptions = {},
): Promise<CopyResult> {
  return new GraphCopy(options).run(src, reference, dst, tag);
}

class GraphCopy {
  readonly #options: CopyOptions;
  readonly #manifests = new Map<string, Promise<FetchedManifest>>();
  readonly #stored = new Map<string, Promise<void>>();
  readonly #blobs = new Map<string, Promise<void>>();
  readonly #walked = new Set<string>();
  readonly #referrers = new Set<string>();
  /** Manifest and blob copies under way; a failed copy waits for them before it reports. */
  readonly #running = new Set<Promise<void>>();
  #stopped = false;
  readonly #result: Omit<CopyResult, 'root'> = {
    manifests: { copied: 0, existed: 0 },
    blobs: { transferred: 0, exists: 0, mounted: 0 },
    bytes: 0,
    referrers: 0,
  };

  constructor(options: CopyOptions) {
    this.#options = options;
  }

  async run(src: ContentTarget, reference: string, dst: ContentTarget, tag: string | undefined) {
    try {
      return await this.#copy(src, reference, dst, tag);
    } catch (err) {
      // Start nothing more, and report only once what is under way has finished or failed: a copy
      // that has settled writes nothing more, so no temporary file of it is left for its caller to
      // find, and the caller may clean up or exit at once.
      this.#stopped = true;
      while (this.#running.size > 0) await Promise.allSettled(this.#running);
      throw err;
    }
  }

  async #copy(src: ContentTarget, reference: string, dst: ContentTarget, tag: string | undefined) {
    let root = await this.#fetch(src, (await src.resolve(reference)).digest);
    if (this.#options.platform) root = await this.#pickPlatform(src, root, this.#options.platform);
    await this.#store(src, dst, root.descriptor.digest);
    if (this.#options.referrers) {
      await this.#walkReferrers(
        this.#options.referrersSource ?? src,
        this.#options.referrersTarget ?? dst,
        root.descriptor.digest,
        src,
      );
    }
    if (tag) await dst.tag(root, tag);
    return { root: root.descriptor, ...this.#result, referrers: this.#referrers.size };
  }

  #fetch(from: ContentTarget, digest: string): Promise<FetchedManifest> {
    return shared(this.#manifests, `${from.name}\0${digest}`, () => from.fetchManifest(digest));
  }

  async #pickPlatform(
    from: ContentTarget,
    root: FetchedManifest,
    platform: string,
  ): Promise<FetchedManifest> {
    const [os, architecture, variant] = platform.split('/');
    if (!os || !architecture) throw new CopyError(`--platform must be OS/ARCH[/VARIANT], not "${platform}"`);
    const wanted = { os, architecture, variant };
    const where = `${from.name}@${root.descriptor.digest}`;
    const children = root.json.manifests;
    if (!Array.isArray(children)) {
      // A single image has nothing to choose from, but it must be what was asked for (oras refuses
      // it too): copying another platform's image under the requested one would pass unnoticed.
      const config = root.json.config as Descriptor | undefined;
      if (!config?.digest || !IMAGE_CONFIG_TYPES.has(config.mediaType))
        throw new CopyError(
          `${where} names no platform (config ${config?.mediaType ?? 'missing'}), so it cannot be the image for ${platform}`,
        );
      const own = await this.#configPlatform(from, config);
      if (!matchesPlatform(own, wanted))
        throw new CopyError(`${where} is an image for ${platformName(own)}, not ${platform}`);
      return root;
    }
    const match = (children as Descriptor[]).find((child) => matchesPlatform(child.platform, wanted));
    if (!match) throw new CopyError(`${where} has no image for ${platform}`);
    return this.#fetch(from, match.digest);
  }

  /** The `os`, `architecture` and `variant` an image config names. */
  async #configPlatform(from: ContentTarget, config: Descriptor): Promise<Platform> {
    const what = `config ${config.digest}`;
    const bytes = await collect(
      (sink) => pourBlob(from, config, sink),
      MAX_CONFIG,
      () => new CopyError(`${what} is larger than ${MAX_CONFIG} bytes`),
    );
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {}
    if (!json || typeof json !== 'object') throw new CopyError(`${what} is not a JSON object`);
    const { os, architecture, variant } = json as Record<string, unknown>;
    return {
      ...(typeof os === 'string' ? { os } : {}),
      ...(typeof architecture === 'string' ? { architecture } : {}),
      ...(typeof variant === 'string' && variant ? { variant } : {}),
    };
  }

  /** Makes `digest` and everything under it present in `to`; concurrent callers share one promise. */
  #store(from: ContentTarget, to: ContentTarget, digest: string): Promise<void> {
    return shared(this.#stored, `${to.name}\0${digest}`, () =>
      this.#underway(() => this.#storeOnce(from, to, digest)),
    );
  }

  /** Runs `work`, listed in `#running` until it settles. */
  #underway(work: () => Promise<void>): Promise<void> {
    const promise = work();
    this.#running.add(promise);
    const settled = () => this.#running.delete(promise);
    promise.then(settled, settled);
    return promise;
  }

  /** After a failure elsewhere nothing new is written: no blob starts, no manifest is pushed. */
  #goingOn(): void {
    if (this.#stopped) throw new CopyError('stopped: another part of the copy failed');
  }

  async #storeOnce(from: ContentTarget, to: ContentTarget, digest: string): Promise<void> {
    const manifest = await this.#fetch(from, digest);
    if (await to.hasManifest(digest)) {
      // There, but perhaps not recorded: a copy interrupted between the push and the fallback index,
      // or another tool's push that keeps none. Recording sends no content, and nothing where it is.
      this.#goingOn();
      await to.recordStored?.(manifest);
      this.#result.manifests.existed++;
      return;
    }
    const { json } = manifest;
    const work: Promise<void>[] = [];
    for (const child of (Array.isArray(json.manifests) ? json.manifests : []) as Descriptor[]) {
      if (MANIFEST_TYPES.has(child.mediaType)) work.push(this.#store(from, to, child.digest));
      else work.push(this.#copyBlob(from, to, child));
    }
    const blobs = [json.config, ...(Array.isArray(json.layers) ? json.layers : [])] as (
      | Descriptor
      | undefined
    )[];
    for (const blob of blobs) {
      // Non-distributable layers (with `urls`) are fetched from elsewhere by design; they are not ours to copy.
      if (blob?.digest && !blob.urls?.length) work.push(this.#copyBlob(from, to, blob));
    }
    await Promise.all(work);
    this.#goingOn();
    this.#options.progress?.start?.(manifest.descriptor);
    await to.pushManifest(manifest);
    this.#result.manifests.copied++;
    this.#options.progress?.done?.(manifest.descriptor, 'transferred');
  }

  #copyBlob(from: ContentTarget, to: ContentTarget, descriptor: Descriptor): Promise<void> {
    return shared(this.#blobs, `${to.name}\0${descriptor.digest}`, () =>
      this.#underway(() => this.#copyBlobOnce(from, to, descriptor)),
    );
  }

  async #copyBlobOnce(from: ContentTarget, to: ContentTarget, descriptor: Descriptor): Promise<void> {
    const release = await acquireAll([from.limiter, to.limiter]);
    const progress = this.#options.progress;
    try {
      this.#goingOn();
      progress?.start?.(descriptor);
      const outcome = await to.pushBlob(
        descriptor,
        countedSource(blobSource(from, descriptor), (n) => {
          this.#result.bytes += n;
          progress?.bytes?.(descriptor, n);
        }),
        from,
      );
      this.#result.blobs[outcome]++;
      progress?.done?.(descriptor, outcome);
    } finally {
      release();
    }
  }

  /**
   * Copies what refers to `digest` (listed in `from`), then recurses into each referrer and into the
   * children of indexes, so signatures of platform images and signatures of SBOMs come along too.
   */
  async #walkReferrers(
    from: ContentTarget,
    to: ContentTarget,
    digest: string,
    contentFrom: ContentTarget,
  ): Promise<void> {
    const key = `${from.name}\0${digest}`;
    if (this.#walked.has(key)) return;
    this.#walked.add(key);
    const manifest = await this.#fetch(contentFrom, digest);
    const children = (Array.isArray(manifest.json.manifests) ? manifest.json.manifests : []) as Descriptor[];
    const referrers = await from.referrers(digest);
    await Promise.all([
      ...children
        .filter((child) => MANIFEST_TYPES.has(child.mediaType))
        .map((child) => this.#walkReferrers(from, to, child.digest, contentFrom)),
      ...referrers.map(async (referrer) => {
        this.#referrers.add(referrer.digest);
        await this.#store(from, to, referrer.digest);
        await this.#walkReferrers(from, to, referrer.digest, from);
      }),
    ]);
  }
}

/** The promise kept under `key`, started by `start` on first use: concurrent callers share one piece of work. */
function shared<T>(promises: Map<string, Promise<T>>, key: string, start: () => Promise<T>): Promise<T> {
  let promise = promises.get(key);
  if (!promise) {
    promise = start();
    promises.set(key, promise);
  }
  return promise;
}
