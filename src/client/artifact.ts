import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { digestOf } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { type BlobSource, bufferSource, fileSource } from './blob-source.ts';
import { pourSource } from './body-sink.ts';
import type { FetchedManifest } from './client.ts';
import { ClientError } from './errors.ts';
import { pourToFile } from './file-streams.ts';
import type { ProgressListener, TransferOutcome } from './progress.ts';
import { blobSource, type ContentTarget, referrerDescriptor } from './target.ts';
import { countedSource } from './verify-stream.ts';

/**
 * Artifacts as oras shapes them (an image manifest with an `artifactType`, the empty config, one layer
 * per file named by its title annotation), pushed to and pulled from any `ContentTarget`: a registry
 * repository or an OCI image layout alike.
 */

export const TITLE = 'org.opencontainers.image.title';

/** A file of an artifact: bytes in memory or a path streamed from disk. */
export interface ArtifactFile {
  mediaType: string;
  title?: string;
  bytes?: Buffer;
  path?: string;
}

export interface PushArtifactOptions {
  artifactType: string;
  files: ArtifactFile[];
  annotations?: Record<string, string>;
  /** What the artifact refers to (its `subject`). */
  subject?: Descriptor;
  tag?: string;
  progress?: ProgressListener;
}

/**
 * Pushes files as an artifact, optionally referring to `subject` and optionally tagged. Blobs first,
 * then the manifest by digest (recorded where the target looks referrers up), then the tag. Answers
 * the manifest's referrer descriptor.
 */
export async function pushArtifact(target: ContentTarget, options: PushArtifactOptions): Promise<Descriptor> {
  const { artifactType, files, subject, progress } = options;
  const annotations = options.annotations ?? {};
  const empty = bufferSource(Buffer.from('{}'));
  const emptyDescriptor = { mediaType: MediaType.ociEmpty, digest: empty.digest, size: 2, data: 'e30=' };
  await target.pushBlob(emptyDescriptor, empty);
  const layers = await Promise.all(
    files.map(async (file) => {
      const source = file.bytes ? bufferSource(file.bytes) : await fileSource(file.path!);
      const layer: Descriptor = {
        mediaType: file.mediaType,
        digest: source.digest,
        size: source.size,
        ...(file.title ? { annotations: { [TITLE]: file.title } } : {}),
      };
      await transfer(target, layer, progress, (counted) => target.pushBlob(layer, counted(source)));
      return layer;
    }),
  );
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
  const fetched: FetchedManifest = {
    descriptor: { mediaType: MediaType.ociManifest, digest: digestOf('sha256', bytes), size: bytes.length },
    bytes,
    json: manifest,
  };
  await target.pushManifest(fetched);
  if (options.tag) await target.tag(fetched, options.tag);
  return referrerDescriptor(fetched);
}

/** Pushes files as an artifact referring to what `subject` (a tag or digest in `target`) names. */
export async function attachArtifact(
  target: ContentTarget,
  subject: string,
  options: Omit<PushArtifactOptions, 'subject' | 'tag'>,
): Promise<Descriptor> {
  return pushArtifact(target, { ...options, subject: await target.resolve(subject) });
}

export interface PulledArtifact {
  /** The manifest pulled. */
  manifest: Descriptor;
  /** The layers written as files, by their title. */
  files: Descriptor[];
  /**
   * What had no file name to be written under: layers without a title (an image's, say; the empty
   * layer of an artifact without files aside, which holds nothing), or an index's manifests.
   */
  skipped: Descriptor[];
}

/**
 * Writes an artifact's files (layers with a title annotation) into `dir`, streamed and verified: each
 * lands under a temporary name and is renamed only once its digest and size checked out. Titles that
 * would leave `dir` are refused. `dir` is made only when there is a file to write.
 */
export async function pullArtifact(
  target: ContentTarget,
  reference: string,
  dir: string,
  options: { progress?: ProgressListener } = {},
): Promise<PulledArtifact> {
  const { descriptor, json } = await target.fetchManifest(reference);
  const layers = (Array.isArray(json.layers) ? json.layers : []) as Descriptor[];
  const files = layers.filter((layer) => layer.annotations?.[TITLE]);
  const skipped = [
    ...layers.filter((layer) => !layer.annotations?.[TITLE] && layer.mediaType !== MediaType.ociEmpty),
    ...((Array.isArray(json.manifests) ? json.manifests : []) as Descriptor[]),
  ];
  for (const layer of files) {
    const title = layer.annotations![TITLE]!;
    if (
      title.includes('/') ||
      title.includes('\\') ||
      title === '..' ||
      title === '.' ||
      title.includes('\0')
    )
      throw new ClientError(`refusing to write a file named "${title}"`);
  }
  if (files.length) await mkdir(dir, { recursive: true });
  // Every file finishes or fails before the pull reports: the files that verified are kept, and no
  // temporary file of one still arriving outlives the pull (to be left behind if the caller exits).
  const outcomes = await Promise.allSettled(
    files.map((layer) =>
      transfer(target, layer, options.progress, async (counted) => {
        const path = join(dir, layer.annotations![TITLE]!);
        const temp = `${path}.tether-${randomBytes(4).toString('hex')}`;
        const source = counted(blobSource(target, layer));
        try {
          await pourToFile(temp, (sink) => pourSource(source, sink));
          await rename(temp, path);
        } catch (err) {
          await rm(temp, { force: true });
          throw err;
        }
        return 'transferred';
      }),
    ),
  );
  const failed = outcomes.find((outcome) => outcome.status === 'rejected');
  if (failed) throw failed.reason;
  return { manifest: descriptor, files, skipped };
}

/** Runs one blob transfer within the target's limit, reporting progress for the bytes it moves. */
async function transfer(
  target: ContentTarget,
  descriptor: Descriptor,
  progress: ProgressListener | undefined,
  work: (counted: (source: BlobSource) => BlobSource) => Promise<TransferOutcome>,
): Promise<void> {
  const run = async () => {
    progress?.start?.(descriptor);
    const outcome = await work((source) => countedSource(source, (n) => progress?.bytes?.(descriptor, n)));
    progress?.done?.(descriptor, outcome);
  };
  await (target.limiter ? target.limiter.run(run) : run());
}
