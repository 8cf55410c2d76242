import type { Readable } from 'node:stream';
import { digestOf, tryParseDigest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import type { BlobSource } from './blob-source.ts';
import { type BodySink, pourReadable, pourSource } from './body-sink.ts';
import type { FetchedManifest, RegistryClient } from './client.ts';
import { OciLayout } from './layout.ts';
import type { Limiter } from './limiter.ts';
import type { TransferOutcome } from './progress.ts';
import type { ImageReference } from './reference.ts';

/** A blob to read: its digest, and its size when known (then checked as well). */
export type BlobDescriptor = Pick<Descriptor, 'digest'> & { size?: number | undefined };

/**
 * Where content can be read from and written to: a repository on a registry or an OCI image layout.
 * `copy` walks a graph between any two of them through this interface alone, and every client command
 * works on either through it.
 */
export interface ContentTarget {
  /** For messages: `host/repo` or `oci:DIR`. */
  readonly name: string;
  /** Parallel blob transfers this target tolerates (none for a local directory). */
  readonly limiter?: Limiter;
  /** The descriptor of the manifest a tag or digest names. */
  resolve(reference: string): Promise<Descriptor>;
  /** The manifest a tag or digest names, verified against its digest. */
  fetchManifest(reference: string): Promise<FetchedManifest>;
  hasManifest(digest: string): Promise<boolean>;
  /** Stores a manifest by digest; one with a `subject` is recorded where referrers are looked up. */
  pushManifest(manifest: FetchedManifest): Promise<void>;
  /**
   * For a manifest the target already holds: records it as `pushManifest` would (a layout's `index.json`
   * entry; for one with a `subject`, the fallback index where the target keeps referrers that way),
   * sending or writing no content, and nothing at all where it is recorded already.
   */
  recordStored?(manifest: FetchedManifest): Promise<void>;
  /** Points `tag` at a manifest already stored. */
  tag(manifest: FetchedManifest, tag: string): Promise<void>;
  /** Every tag. */
  tags(): Promise<string[]>;
  /**
   * Deletes the manifest a tag or digest names, with every tag on it, and answers its digest. Its
   * referrers stay: a subject is a weak link.
   */
  deleteManifest(reference: string): Promise<string>;
  hasBlob(digest: string): Promise<boolean>;
  /** Streams a blob; the stream fails unless the bytes match the digest (and size, when given). */
  openBlob(descriptor: BlobDescriptor): Promise<Readable>;
  /** Lends a blob's verified bytes to `sink`, where the target reads without a stream. */
  readBlob?(descriptor: BlobDescriptor, sink: BodySink): Promise<void>;
  /** `from` lets a registry mount the blob from another repository of the same registry. */
  pushBlob(descriptor: Descriptor, source: BlobSource, from?: ContentTarget): Promise<TransferOutcome>;
  deleteBlob(digest: string): Promise<void>;
  referrers(subject: string, artifactType?: string): Promise<Descriptor[]>;
}

/** Lends a blob's verified bytes to `sink`, by the target's own reader when it has one, else its stream. */
export async function pourBlob(target: ContentTarget, blob: BlobDescriptor, sink: BodySink): Promise<void> {
  if (target.readBlob) return target.readBlob(blob, sink);
  return pourReadable(await target.openBlob(blob), sink);
}

/** A blob of `target` as the source of a transfer (to another target, or a file): verified, replayable. */
export function blobSource(target: ContentTarget, descriptor: Descriptor): BlobSource {
  return {
    digest: descriptor.digest,
    size: descriptor.size,
    open: () => target.openBlob(descriptor),
    ...(target.readBlob ? { pour: (sink: BodySink) => target.readBlob!(descriptor, sink) } : {}),
    verified: true,
  };
}

/** The referrer descriptor a manifest gets in a referrers list or fallback index. */
export function referrerDescriptor(manifest: FetchedManifest): Descriptor {
  const { json, descriptor } = manifest;
  const artifactType =
    (json.artifactType as string | undefined) ?? (json.config as Descriptor | undefined)?.mediaType;
  const annotations = json.annotations as Record<string, string> | undefined;
  return {
    mediaType: descriptor.mediaType,
    digest: descriptor.digest,
    size: descriptor.size,
    ...(artifactType ? { artifactType } : {}),
    ...(annotations ? { annotations } : {}),
  };
}

export class RegistryTarget implements ContentTarget {
  readonly client: RegistryClient;
  readonly ref: ImageReference;
  readonly name: string;
  readonly limiter: Limiter;

  constructor(client: RegistryClient, ref: { host: string; repository: string }) {
    this.client = client;
    this.ref = { host: ref.host, repository: ref.repository };
    this.name = `${ref.host}/${ref.repository}`;
    this.limiter = client.limiter(ref.host);
  }

  /** The repository's reference to a tag or digest. */
  at(reference: string): ImageReference {
    return tryParseDigest(reference) ? { ...this.ref, digest: reference } : { ...this.ref, tag: reference };
  }

  resolve(reference: string): Promise<Descriptor> {
    return this.client.resolve(this.at(reference));
  }

  fetchManifest(reference: string): Promise<FetchedManifest> {
    return this.client.getManifest(this.at(reference));
  }

  hasManifest(digest: string): Promise<boolean> {
    return this.client.manifestExists(this.ref, digest);
  }

  async pushManifest(manifest: FetchedManifest): Promise<void> {
    await this.client.putManifestWithSubject(this.ref, manifest.descriptor.digest, manifest);
  }

  recordStored(manifest: FetchedManifest): Promise<void> {
    return this.client.recordReferrer(this.ref, manifest);
  }

  async tag(manifest: FetchedManifest, tag: string): Promise<void> {
    await this.client.tagManifest(this.ref, manifest, tag);
  }

  tags(): Promise<string[]> {
    return this.client.listTags(this.ref);
  }

  deleteManifest(reference: string): Promise<string> {
    return this.client.deleteManifest(this.at(reference));
  }

  hasBlob(digest: string): Promise<boolean> {
    return this.client.blobExists(this.ref, digest);
  }

  openBlob(blob: BlobDescriptor): Promise<Readable> {
    return this.client.openBlob(this.ref, blob.digest, blob.size);
  }

  readBlob(blob: BlobDescriptor, sink: BodySink): Promise<void> {
    return this.client.readBlob(this.ref, blob.digest, sink, blob.size);
  }

  pushBlob(_descriptor: Descriptor, source: BlobSource, from?: ContentTarget): Promise<TransferOutcome> {
    const sameRegistry = from instanceof RegistryTarget && from.ref.host === this.ref.host;
    return this.client.uploadBlob(this.ref, source, sameRegistry ? { mountFrom: from.ref.repository } : {});
  }

  deleteBlob(digest: string): Promise<void> {
    return this.client.deleteBlob(this.ref, digest);
  }

  referrers(subject: string, artifactType?: string): Promise<Descriptor[]> {
    return this.client.referrers({ ...this.ref, digest: subject }, artifactType);
  }
}

export class LayoutTarget implements ContentTarget {
  readonly layout: OciLayout;
  readonly name: string;
  readonly #fallbackTag: boolean;

  /** `fallbackTag`: also keep regctl-style `<alg>-<hex>` indexes for referrers written here. */
  constructor(layout: OciLayout, options: { fallbackTag?: boolean } = {}) {
    this.layout = layout;
    this.name = `oci:${layout.dir}`;
    this.#fallbackTag = options.fallbackTag === true;
  }

  static async open(
    dir: string,
    options: { create?: boolean; fallbackTag?: boolean } = {},
  ): Promise<LayoutTarget> {
    return new LayoutTarget(await OciLayout.open(dir, options), options);
  }

  resolve(reference: string): Promise<Descriptor> {
    return this.layout.resolve(reference);
  }

  async fetchManifest(reference: string): Promise<FetchedManifest> {
    const digest = tryParseDigest(reference) ? reference : (await this.layout.resolve(reference)).digest;
    const { bytes, json } = await this.layout.manifest(digest);
    const mediaType = (json.mediaType as string | undefined) ?? MediaType.ociManifest;
    return { descriptor: { mediaType, digest, size: bytes.length }, bytes, json };
  }

  hasManifest(digest: string): Promise<boolean> {
    return this.layout.hasBlob(digest);
  }

  async pushManifest(manifest: FetchedManifest): Promise<void> {
    const { descriptor, bytes } = manifest;
    const algorithm = tryParseDigest(descriptor.digest)?.algorithm ?? 'sha256';
    if (digestOf(algorithm, bytes) !== descriptor.digest)
      throw new Error(`manifest ${descriptor.digest}: bytes do not match`);
    await this.layout.writeBytes(descriptor.digest, bytes);
    await this.recordStored(manifest);
  }

  async recordStored(manifest: FetchedManifest): Promise<void> {
    // Every manifest is listed, as oras lists them: oras resolves a digest only through index.json, and
    // referrers are found by the `subject` of listed manifests.
    const subject = (manifest.json.subject as Descriptor | undefined)?.digest;
    await this.layout.addToIndex(referrerDescriptor(manifest));
    if (subject && this.#fallbackTag)
      await this.layout.addFallbackEntry(subject, referrerDescriptor(manifest));
  }

  async tag(manifest: FetchedManifest, tag: string): Promise<void> {
    await this.layout.addToIndex(manifest.descriptor, tag);
  }

  tags(): Promise<string[]> {
    return this.layout.tags();
  }

  deleteManifest(reference: string): Promise<string> {
    return this.layout.deleteManifest(reference);
  }

  hasBlob(digest: string): Promise<boolean> {
    return this.layout.hasBlob(digest);
  }

  openBlob(blob: BlobDescriptor): Promise<Readable> {
    return this.layout.openBlob(blob.digest, blob.size);
  }

  readBlob(blob: BlobDescriptor, sink: BodySink): Promise<void> {
    return this.layout.pourBlob(blob.digest, blob.size, sink);
  }

  async pushBlob(descriptor: Descriptor, source: BlobSource): Promise<TransferOutcome> {
    const pour = (sink: BodySink) => pourSource(source, sink);
    const verified = source.verified === true;
    const wrote = await this.layout.writeBlob(descriptor.digest, descriptor.size, pour, { verified });
    return wrote ? 'transferred' : 'exists';
  }

  deleteBlob(digest: string): Promise<void> {
    return this.layout.deleteBlob(digest);
  }

  referrers(subject: string, artifactType?: string): Promise<Descriptor[]> {
    return this.layout.referrers(subject, artifactType);
  }
}
