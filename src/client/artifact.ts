import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestOf } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { cleanPath, duplicateName, moveInto, relativeOutputPath } from './artifact-paths.ts';
import { type BlobSource, bufferSource, fileSource } from './blob-source.ts';
import { pourSource } from './body-sink.ts';
import type { FetchedManifest } from './client.ts';
import {
  packDirectory,
  TAR_DIGEST_ANNOTATION,
  UNPACK_ANNOTATION,
  unpackDirectory,
} from './directory-archive.ts';
import { ClientError } from './errors.ts';
import { pourToFile } from './file-streams.ts';
import type { ProgressListener, TransferOutcome } from './progress.ts';
import { withScratch } from './scratch.ts';
import { blobSource, type ContentTarget, referrerDescriptor } from './target.ts';
import { countedSource } from './verify-stream.ts';

/**
 * Artifacts as oras shapes them (an image manifest with an `artifactType`, the empty config, one layer
 * per file named by its title annotation), pushed to and pulled from any `ContentTarget`: a registry
 * repository or an OCI image layout alike.
 */

export const TITLE = 'org.opencontainers.image.title';

/**
 * A file of an artifact: bytes in memory or a path streamed from disk; or, with `directory`, the
 * directory at `path`, pushed as oras pushes one (a gzipped tar that pulls unpack; `title` required).
 */
export interface ArtifactFile {
  mediaType: string;
  title?: string;
  bytes?: Buffer;
  path?: string;
  directory?: boolean;
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
 * the manifest's referrer descriptor. A title given twice is refused before anything is sent: a pull
 * could keep only one of the files.
 */
export async function pushArtifact(target: ContentTarget, options: PushArtifactOptions): Promise<Descriptor> {
  const { artifactType, files, subject, progress } = options;
  const annotations = options.annotations ?? {};
  const duplicate = duplicateName(files.flatMap((file) => (file.title ? [cleanPath(file.title)] : [])));
  if (duplicate) throw new ClientError(`${duplicate}: duplicate name`);
  const empty = bufferSource(Buffer.from('{}'));
  const emptyDescriptor = { mediaType: MediaType.ociEmpty, digest: empty.digest, size: 2, data: 'e30=' };
  await target.pushBlob(emptyDescriptor, empty);
  const layers = await Promise.all(
    files.map(async (file) => {
      if (file.directory) return pushDirectory(target, file, progress);
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

/**
 * Packs a directory into a gzipped tar in a temporary directory (see `packDirectory`), pushes it and
 * removes it. The layer carries oras's annotations (the tar's digest, unpack), in oras's order.
 */
async function pushDirectory(
  target: ContentTarget,
  file: ArtifactFile,
  progress: ProgressListener | undefined,
): Promise<Descriptor> {
  const { path, title } = file;
  if (!path || !title) throw new ClientError(`${path}: a directory needs a path and a title`);
  const scratch = await mkdtemp(join(tmpdir(), 'tether-push-'));
  return withScratch(scratch, async () => {
    try {
      const packed = join(scratch, 'directory.tar.gz');
      const { digest, size, tarDigest } = await packDirectory(path, title, packed);
      const layer: Descriptor = {
        mediaType: file.mediaType,
        digest,
        size,
        annotations: { [TAR_DIGEST_ANNOTATION]: tarDigest, [UNPACK_ANNOTATION]: 'true', [TITLE]: title },
      };
      const source = await fileSource(packed, { digest, size });
      await transfer(target, layer, progress, (counted) => target.pushBlob(layer, counted(source)));
      return layer;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });
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
 * Writes an artifact's files (layers with a title annotation) into `dir`, each at the relative path its
 * title names (`d/sub/x.txt`, as oras pushes them; directories are created). A layer marked for
 * unpacking (oras's directories) is unpacked into the directory its title names (`unpackDirectory`).
 * Titles that would leave `dir` (absolute, `..`) and titles given twice are refused before anything is
 * written, and no symbolic link is followed on the way (see `moveInto`). Files and trees are streamed
 * and verified into a staging directory inside `dir` and moved to their names only once their
 * digests and sizes checked out. `dir` is made only when there is something to write.
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
  const unpack = files.map((layer) => layer.annotations?.[UNPACK_ANNOTATION] === 'true');
  const paths = files.map((layer, i) => {
    const title = layer.annotations![TITLE]!;
    const path = relativeOutputPath(title, unpack[i] ? 'a directory' : 'a file');
    // A directory may be the output directory itself (`oras push REF .`); a file may not.
    if (path === '.' && !unpack[i])
      throw new ClientError(`refusing to write a file named "${title}": it names the output directory`);
    return path;
  });
  const duplicate = duplicateName(paths);
  if (duplicate) throw new ClientError(`${duplicate}: duplicate name (two layers are written there)`);
  const pulled = { manifest: descriptor, files, skipped };
  if (files.length === 0) return pulled;
  await mkdir(dir, { recursive: true });
  // Inside `dir`, so that moving a file into place is a rename on the same file system.
  const staging = await mkdtemp(join(dir, '.tether-pull-'));
  // One move at a time: two layers may share directories that a move creates.
  let moving: Promise<void> = Promise.resolve();
  await withScratch(staging, async () => {
    try {
      // Every file finishes or fails before the pull reports: the files that verified are kept, and no
      // temporary file of one still arriving outlives the pull (to be left behind if the caller exits).
      const outcomes = await Promise.allSettled(
        files.map((layer, i) =>
          transfer(target, layer, options.progress, async (counted) => {
            const staged = join(staging, String(i));
            const source = counted(blobSource(target, layer));
            if (unpack[i])
              await unpackDirectory(
                (sink) => pourSource(source, sink),
                staged,
                paths[i]!,
                layer.annotations?.[TAR_DIGEST_ANNOTATION],
              );
            else await pourToFile(staged, (sink) => pourSource(source, sink));
            const moved = moving.then(() => moveInto(staged, dir, paths[i]!));
            moving = moved.catch(() => {});
            await moved;
            return 'transferred';
          }),
        ),
      );
      const failed = outcomes.find((outcome) => outcome.status === 'rejected');
      if (failed) throw failed.reason;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  });
  return pulled;
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
