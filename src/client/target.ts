import type { Readable } from 'node:stream';
import { digestOf, tryParseDigest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { type BodySink, pourSource } from './body-sink.ts';
import type { BlobSource, FetchedManifest, RegistryClient } from './client.ts';
import { OciLayout } from './layout.ts';
import type { Limiter } from './limiter.ts';
import type { TransferOutcome } from './progress.ts';
import type { ImageReference } from './reference.ts';

/**
 * Where content can be read from and written to: a repository on a registry or an OCI image layout.
 * `copy` walks a graph between any two of them through this interface alone.
 */
export interface ContentTarget {
  /** For messages: `host/repo` or `oci:DIR`. */
  readonly name: string;
  /** Parallel blob transfers this target tolerates (none for a local directory). */
  readonly limiter?: Limiter;
  resolve(reference: string): Promise<Descriptor>;
  fetchManifest(digest: string): Promise<FetchedManifest>;
  hasManifest(digest: string): Promise<boolean>;
  /** Stores a manifest by digest; one with a `subject` is recorded where referrers are looked up. */
  pushManifest(manifest: FetchedManifest): Promise<void>;
  /** Points `tag` at a manifest already stored. */
  tag(manifest: FetchedManifest, tag: string): Promise<void>;
  hasBlob(digest: string): Promise<boolean>;
  /** Streams a blob; the stream fails unless the bytes match the descriptor's digest and size. */
  openBlob(descriptor: Descriptor): Promise<Readable>;
  /** Lends a blob's verified bytes to `sink`, where the target reads without a stream (a registry). */
  readBlob?(descriptor: Descriptor, sink: BodySink): Promise<void>;
  /** `from` lets a registry mount the blob from another repository of the same registry. */
  pushBlob(descriptor: Descriptor, source: BlobSource, from?: ContentTarget): Promise<TransferOutcome>;
  referrers(subject: string, artifactType?: string): Promise<Descriptor[]>;
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

  async resolve(reference: string): Promise<Descriptor> {
    const at = tryParseDigest(reference) ? { digest: reference } : { tag: reference };
    return this.client.resolve({ ...this.ref, ...at });
  }

  fetchManifest(digest: string): Promise<FetchedManifest> {
    return this.client.getManifest({ ...this.ref, digest });
  }

  hasManifest(digest: string): Promise<boolean> {
    return this.client.manifestExists(this.ref, digest);
  }

  async pushManifest(manifest: FetchedManifest): Promise<void> {
    await this.client.putManifestWithSubject(this.ref, manifest.descriptor.digest, manifest);
  }

  async tag(manifest: FetchedManifest, tag: string): Promise<void> {
    await this.client.putManifest(this.ref, tag, manifest.bytes, manifest.descriptor.mediaType);
  }

  hasBlob(digest: string): Promise<boolean> {
    return this.client.blobExists(this.ref, digest);
  }

  openBlob(descriptor: Descriptor): Promise<Readable> {
    return this.client.openBlob(this.ref, descriptor.digest, descriptor.size);
  }

  readBlob(descriptor: Descriptor, sink: BodySink): Promise<void> {
    return this.client.readBlob(this.ref, descriptor.digest, sink, descriptor.size);
  }

  pushBlob(_descriptor: Descriptor, source: BlobSource, from?: ContentTarget): Promise<TransferOutcome> {
    const sameRegistry = from instanceof RegistryTarget && from.ref.host === this.ref.host;
    return this.client.uploadBlob(this.ref, source, sameRegistry ? { mountFrom: from.ref.repository } : {});
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

  async fetchManifest(digest: string): Promise<FetchedManifest> {
    const { bytes, json } = await this.layout.manifest(digest);
    const mediaType = (json.mediaType as string | undefined) ?? MediaType.ociManifest;
    return { descriptor: { mediaType, digest, size: bytes.length }, bytes, json };
  }

  hasManifest(digest: string): Promise<boolean> {
    return this.layout.hasBlob(digest);
  }

  async pushManifest(manifest: FetchedManifest): Promise<void> {
    const { descriptor, bytes, json } = manifest;
    const algorithm = tryParseDigest(descriptor.digest)?.algorithm ?? 'sha256';
    if (digestOf(algorithm, bytes) !== descriptor.digest)
      throw new Error(`manifest ${descriptor.digest}: bytes do not match`);
    await this.layout.writeBytes(descriptor.digest, bytes);
    // Every manifest is listed, as oras lists them: oras resolves a digest only through index.json, and
    // referrers are found by the `subject` of listed manifests.
    const subject = (json.subject as Descriptor | undefined)?.digest;
    await this.layout.addToIndex(referrerDescriptor(manifest));
    if (subject && this.#fallbackTag)
      await this.layout.addFallbackEntry(subject, referrerDescriptor(manifest));
  }

  async tag(manifest: FetchedManifest, tag: string): Promise<void> {
    await this.layout.addToIndex(manifest.descriptor, tag);
  }

  hasBlob(digest: string): Promise<boolean> {
    return this.layout.hasBlob(digest);
  }

  openBlob(descriptor: Descriptor): Promise<Readable> {
    return this.layout.openBlob(descriptor.digest, descriptor.size);
  }

  async pushBlob(descriptor: Descriptor, source: BlobSource): Promise<TransferOutcome> {
    const pour = (sink: BodySink) => pourSource(source, sink);
    const verified = source.verified === true;
    const wrote = await this.layout.writeBlob(descriptor.digest, descriptor.size, pour, { verified });
    return wrote ? 'transferred' : 'exists';
  }

  referrers(subject: string, artifactType?: string): Promise<Descriptor[]> {
    return this.layout.referrers(subject, artifactType);
  }
}
