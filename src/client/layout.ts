import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { resolve as absolutePath, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { digestOf, tryParseDigest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { parseReferrersTag, referrersTagFor } from '../oci/referrers-tag.ts';
import type { BodySink } from './body-sink.ts';
import { ClientError } from './errors.ts';
import { readFallbackIndex } from './fallback-index.ts';
import { fileReader, pourFile, pourToFile } from './file-streams.ts';
import { withScratch } from './scratch.ts';
import { ContentCheck, verifying } from './verify-stream.ts';

export const REF_NAME = 'org.opencontainers.image.ref.name';
const LAYOUT_FILE = 'oci-layout';
const MAX_MANIFEST = 4 * 1024 * 1024;

export class LayoutError extends ClientError {
  override name = 'LayoutError';
}

/**
 * The `index.json` update in flight (or last queued) per layout directory: updates are read-modify-write,
 * so they run one at a time per directory in this process, however many `OciLayout`s have it open
 * (`cp --referrers-to oci:X … oci:X` opens one directory twice).
 */
const indexUpdates = new Map<string, Promise<void>>();

interface LayoutIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/**
 * An OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), read and written the
 * way oras, regctl, skopeo and crane expect.
 *
 * Tags are `org.opencontainers.image.ref.name` annotations on `index.json` entries. Referrers are found
 * both ways the field stores them: oras lists referrer manifests untagged in `index.json` (their
 * `subject` says what they refer to); regctl keeps a `<alg>-<hex>` fallback-tag index. Tether writes the
 * oras way and, in `tag` referrers mode, the fallback tag as well.
 *
 * Updates of `index.json` (and of the fallback-tag indexes it lists) within one process are serialised
 * per directory; blobs land by temp file and rename so a reader never sees half a blob, and `index.json`
 * is replaced atomically. Two processes writing one layout at once are not coordinated (as with the
 * other tools).
 */
export class OciLayout {
  readonly dir: string;
  /** Parsed manifests by digest: referrer scans read each listed manifest once. */
  readonly #manifests = new Map<string, Record<string, unknown>>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens a layout; with `create`, makes the directory and its `oci-layout`/`index.json` if missing. */
  static async open(dir: string, options: { create?: boolean } = {}): Promise<OciLayout> {
    const layout = new OciLayout(dir);
    let marker: string | undefined;
    try {
      marker = await readFile(join(dir, LAYOUT_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (marker === undefined) {
      if (!options.create)
        throw new LayoutError(`${dir} is not an OCI image layout (no ${LAYOUT_FILE} file)`);
      await mkdir(join(dir, 'blobs'), { recursive: true });
      await writeFile(join(dir, LAYOUT_FILE), `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);
      try {
        await writeFile(
          join(dir, 'index.json'),
          JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] }),
          { flag: 'wx' },
        );
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      return layout;
    }
    let version: unknown;
    try {
      version = (JSON.parse(marker) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch {}
    if (typeof version !== 'string' || !version.startsWith('1.'))
      throw new LayoutError(`${dir}/${LAYOUT_FILE} does not name a supported imageLayoutVersion (1.x)`);
    return layout;
  }

  /** The blob's path; the digest is validated first, so the path never leaves `blobs/`. */
  blobPath(digest: string): string {
    const parsed = tryParseDigest(digest);
    if (!parsed) throw new LayoutError(`${digest} is not a valid digest`);
    return join(this.dir, 'blobs', parsed.algorithm, parsed.hex);
  }

  async hasBlob(digest: string): Promise<boolean> {
    try {
      return (await stat(this.blobPath(digest))).isFile();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** Streams a blob, verified against its digest (and size when given): layouts are not trusted either. */
  async openBlob(digest: string, size?: number): Promise<Readable> {
    const path = this.blobPath(digest);
    try {
      await stat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new LayoutError(`blob ${digest} is not in the layout ${this.dir}`);
      throw err;
    }
    const check = verifying(digest, size, `blob ${digest} in ${this.dir}`);
    pipeline(fileReader(path), check).catch(() => {});
    return check;
  }

  /**
   * Lends a blob's bytes to `sink` from reused buffers (`pourFile`), verified as `openBlob` verifies
   * them: no fresh memory per read, where a layout-to-layout copy of 200 MB through `openBlob` took
   * the client to 138 MB of resident memory.
   */
  async pourBlob(digest: string, size: number | undefined, sink: BodySink): Promise<void> {
    const path = this.blobPath(digest);
    const check = new ContentCheck(digest, size, `blob ${digest} in ${this.dir}`);
    try {
      await check.checking((checked) => pourFile(path, checked))(sink);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new LayoutError(`blob ${digest} is not in the layout ${this.dir}`);
      throw err;
    }
  }

  async readBlob(digest: string, maxBytes = MAX_MANIFEST): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of await this.openBlob(digest)) {
      total += (chunk as Buffer).length;
      if (total > maxBytes) throw new LayoutError(`blob ${digest} is larger than ${maxBytes} bytes`);
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks, total);
  }

  /**
   * Writes a blob from what `pour` lends (see `BodySink`): hashed and size-checked on the way, synced,
   * then renamed into place. `pour` is not called when the layout already has the blob; the answer
   * says whether it wrote. `verified` says `pour` fails unless the bytes match (a registry's or another
   * layout's verified read), and skips the second hash.
   */
  async writeBlob(
    digest: string,
    size: number,
    pour: (sink: BodySink) => Promise<void>,
    options: { verified?: boolean } = {},
  ): Promise<boolean> {
    const path = this.blobPath(digest);
    if (await this.hasBlob(digest)) return false;
    const checked = options.verified ? pour : new ContentCheck(digest, size).checking(pour);
    const dir = join(path, '..');
    await mkdir(dir, { recursive: true });
    const temp = join(dir, `.tmp-${randomBytes(8).toString('hex')}`);
    return withScratch(temp, async () => {
      try {
        await pourToFile(temp, checked, { flags: 'wx', sync: true });
        await rename(temp, path);
        return true;
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
    });
  }

  /** Writes a blob held in memory (manifests, indexes), as `writeBlob` does. */
  writeBytes(digest: string, bytes: Uint8Array): Promise<boolean> {
    return this.writeBlob(digest, bytes.length, async (sink) => {
      await sink.write(bytes);
    });
  }

  async readIndex(): Promise<LayoutIndex> {
    const bytes = await readFile(join(this.dir, 'index.json'));
    let index: LayoutIndex;
    try {
      index = JSON.parse(bytes.toString('utf8')) as LayoutIndex;
    } catch {
      throw new LayoutError(`${this.dir}/index.json is not valid JSON`);
    }
    if (index?.schemaVersion !== 2 || !Array.isArray(index.manifests))
      throw new LayoutError(`${this.dir}/index.json is not an OCI image index`);
    index.manifests = index.manifests.filter(
      (d) => typeof d?.digest === 'string' && tryParseDigest(d.digest) && typeof d.size === 'number',
    );
    return index;
  }

  /** Resolves a tag (or a digest listed in, or stored in, the layout) to a manifest descriptor. */
  async resolve(reference: string): Promise<Descriptor> {
    const { manifests } = await this.readIndex();
    if (tryParseDigest(reference)) {
      const listed = manifests.find((d) => d.digest === reference);
      if (listed) return stripRefName(listed);
      const bytes = await this.readBlob(reference).catch(() => undefined);
      if (!bytes) throw new LayoutError(`${reference} is not in the layout ${this.dir}`);
      const json = parseJson(bytes, reference);
      return {
        mediaType: (json.mediaType as string) ?? MediaType.ociManifest,
        digest: reference,
        size: bytes.length,
      };
    }
    const found = taggedEntry(manifests, reference);
    if (!found) throw new LayoutError(`tag ${reference} is not in the layout ${this.dir}`);
    return stripRefName(found);
  }

  /** The manifest's bytes and JSON, verified and capped. */
  async manifest(digest: string): Promise<{ bytes: Buffer; json: Record<string, unknown> }> {
    const bytes = await this.readBlob(digest);
    const json = parseJson(bytes, digest);
    this.#manifests.set(digest, json);
    return { bytes, json };
  }

  /**
   * Lists a manifest in `index.json`, tagged or not. A tag moves: the entry that held it before loses it
   * and stays listed untagged, as oras keeps it, so the manifest it names still resolves by digest and
   * its referrers are still found (it goes only when its digest is listed by another entry, or when it
   * is a superseded referrers fallback-tag index, which nothing else names). An untagged entry is added
   * only when the digest is not listed yet.
   */
  async addToIndex(descriptor: Descriptor, tag?: string): Promise<void> {
    await this.#updateIndex((manifests) => this.#listed(manifests, descriptor, tag));
  }

  /** `manifests` with `descriptor` listed as `addToIndex` says; the same array when nothing changes. */
  #listed(manifests: Descriptor[], descriptor: Descriptor, tag?: string): Descriptor[] {
    const entry: Descriptor = {
      mediaType: descriptor.mediaType,
      digest: descriptor.digest,
      size: descriptor.size,
      ...(descriptor.artifactType ? { artifactType: descriptor.artifactType } : {}),
      ...(descriptor.platform ? { platform: descriptor.platform } : {}),
    };
    if (!tag) {
      if (manifests.some((d) => d.digest === descriptor.digest)) return manifests;
      return [...manifests, entry];
    }
    if (manifests.some((d) => d.digest === descriptor.digest && d.annotations?.[REF_NAME] === tag))
      return manifests;
    const others = manifests.filter((d) => d.annotations?.[REF_NAME] !== tag);
    const listedElsewhere = (digest: string) =>
      digest === descriptor.digest || others.some((d) => d.digest === digest);
    const rest = manifests.flatMap((d) => {
      if (d.annotations?.[REF_NAME] !== tag) return [d];
      if (parseReferrersTag(tag) || listedElsewhere(d.digest)) return [];
      return [stripRefName(d)];
    });
    // The untagged listing of the same digest is replaced by the tagged one.
    const withoutUntagged = rest.filter((d) => d.digest !== descriptor.digest || d.annotations?.[REF_NAME]);
    return [...withoutUntagged, { ...entry, annotations: { [REF_NAME]: tag } }];
  }

  /**
   * Reads `index.json`, lets `change` say what it lists next and writes that, queued behind the
   * directory's other updates so that none works from a listing another is about to replace.
   */
  async #updateIndex(
    change: (manifests: Descriptor[]) => Descriptor[] | Promise<Descriptor[]>,
  ): Promise<void> {
    const key = absolutePath(this.dir);
    const run = (indexUpdates.get(key) ?? Promise.resolve()).then(async () => {
      const index = await this.readIndex();
      const manifests = await change(index.manifests);
      if (manifests === index.manifests) return;
      const next = { ...index, mediaType: MediaType.ociIndex, manifests };
      const temp = join(this.dir, `.index.json.${randomBytes(6).toString('hex')}`);
      await withScratch(temp, async () => {
        try {
          await writeFile(temp, JSON.stringify(next));
          await rename(temp, join(this.dir, 'index.json'));
        } catch (err) {
          await rm(temp, { force: true });
          throw err;
        }
      });
    });
    const settled = run.catch(() => {});
    indexUpdates.set(key, settled);
    // The map holds a directory only while its updates are queued.
    settled.then(() => {
      if (indexUpdates.get(key) === settled) indexUpdates.delete(key);
    });
    return run;
  }

  /**
   * What refers to `subject`: manifests listed in `index.json` whose `subject` names it (oras style) and
   * the entries of its fallback-tag index (regctl style), once each.
   */
  async referrers(subject: string, artifactType?: string): Promise<Descriptor[]> {
    const parsed = tryParseDigest(subject);
    if (!parsed) throw new LayoutError(`${subject} is not a valid digest`);
    const { manifests } = await this.readIndex();
    const found = new Map<string, Descriptor>();
    const fallbackTag = referrersTagFor(parsed);
    for (const entry of manifests) {
      if (entry.annotations?.[REF_NAME] === fallbackTag) {
        const index = await this.manifest(entry.digest).catch(() => undefined);
        const content = index && readFallbackIndex(index.bytes, entry.mediaType);
        if (content?.index) for (const d of content.manifests) found.set(d.digest, d);
        continue;
      }
      if (entry.mediaType !== MediaType.ociManifest && entry.mediaType !== MediaType.ociIndex) continue;
      const json =
        this.#manifests.get(entry.digest) ?? (await this.manifest(entry.digest).catch(() => undefined))?.json;
      const refersTo = (json?.subject as Descriptor | undefined)?.digest;
      if (!json || refersTo !== subject || found.has(entry.digest)) continue;
      const type =
        (json.artifactType as string | undefined) ?? (json.config as Descriptor | undefined)?.mediaType;
      const annotations = json.annotations as Record<string, string> | undefined;
      found.set(entry.digest, {
        mediaType: entry.mediaType,
        digest: entry.digest,
        size: entry.size,
        ...(type ? { artifactType: type } : {}),
        ...(annotations ? { annotations } : {}),
      });
    }
    return [...found.values()].filter((d) => !artifactType || d.artifactType === artifactType);
  }

  /**
   * Adds `entry` to the subject's fallback-tag index inside the layout (regctl's way). The index is read,
   * extended and re-tagged as one `index.json` update, so entries added in parallel (referrers copied
   * at once) all stay.
   */
  async addFallbackEntry(subject: string, entry: Descriptor): Promise<void> {
    await this.#updateIndex((manifests) =>
      this.#withFallback(manifests, subject, (entries) =>
        entries.some((d) => d.digest === entry.digest) ? entries : [...entries, entry],
      ),
    );
  }

  /**
   * `manifests` with the subject's fallback-tag index replaced by one listing what `change` makes of its
   * entries (written as a new blob, and tagged); the same array when `change` returns its own.
   */
  async #withFallback(
    manifests: Descriptor[],
    subject: string,
    change: (entries: Descriptor[]) => Descriptor[],
  ): Promise<Descriptor[]> {
    const parsed = tryParseDigest(subject);
    if (!parsed) throw new LayoutError(`${subject} is not a valid digest`);
    const tag = referrersTagFor(parsed);
    const current = taggedEntry(manifests, tag);
    let existing: Descriptor[] = [];
    if (current) {
      // What another tool tagged there is not overwritten (see RegistryClient.updateFallbackIndex).
      const content = readFallbackIndex((await this.manifest(current.digest)).bytes, current.mediaType);
      if (!content.index)
        throw new LayoutError(
          `referrers tag ${tag} in ${this.dir} holds ${content.holds}, not an image index; it is left as it is (move or delete that tag to keep referrers there)`,
        );
      existing = content.manifests;
    }
    const entries = change(existing);
    if (entries === existing) return manifests;
    const bytes = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: entries }),
    );
    const digest = digestOf('sha256', bytes);
    await this.writeBytes(digest, bytes);
    return this.#listed(manifests, { mediaType: MediaType.ociIndex, digest, size: bytes.length }, tag);
  }

  /** Every tag in `index.json`, once each, in byte order (regctl's whole `host/repo:tag` names by their tag). */
  async tags(): Promise<string[]> {
    const { manifests } = await this.readIndex();
    const tags = new Set<string>();
    for (const d of manifests) {
      const name = d.annotations?.[REF_NAME];
      if (!name) continue;
      const colon = name.lastIndexOf(':');
      if (!name.includes('/')) tags.add(name);
      else if (colon > name.lastIndexOf('/')) tags.add(name.slice(colon + 1));
    }
    return [...tags].sort();
  }

  /**
   * Deletes the manifest a tag or digest names: every `index.json` entry of it (all its tags), its entry
   * in its subject's fallback-tag index, and its blob. What it points at stays, since a layout keeps no
   * count of which manifests share a blob, and so do its referrers: a subject is a weak link, as on a
   * registry. Answers the digest.
   */
  async deleteManifest(reference: string): Promise<string> {
    const { digest } = await this.resolve(reference);
    // A listed manifest whose blob is missing or damaged can still be deleted.
    const json = (await this.manifest(digest).catch(() => undefined))?.json;
    const subject = (json?.subject as Descriptor | undefined)?.digest;
    await this.#updateIndex(async (manifests) => {
      const rest = manifests.filter((d) => d.digest !== digest);
      if (!subject || !tryParseDigest(subject)) return rest;
      return this.#withFallback(rest, subject, (entries) =>
        entries.some((d) => d.digest === digest) ? entries.filter((d) => d.digest !== digest) : entries,
      );
    }).catch((err) => {
      throw err instanceof LayoutError ? new LayoutError(`${digest} was not deleted: ${err.message}`) : err;
    });
    await rm(this.blobPath(digest), { force: true });
    this.#manifests.delete(digest);
    return digest;
  }

  /**
   * Deletes a blob's file. A manifest listed in `index.json` is refused: `deleteManifest` takes it out of
   * the listing as well, so nothing lists a file that is gone.
   */
  async deleteBlob(digest: string): Promise<void> {
    const path = this.blobPath(digest);
    if (!(await this.hasBlob(digest)))
      throw new LayoutError(`blob ${digest} is not in the layout ${this.dir}`);
    if ((await this.readIndex()).manifests.some((d) => d.digest === digest))
      throw new LayoutError(
        `${digest} is a manifest listed in ${this.dir}/index.json: delete it as a manifest (tether manifest delete)`,
      );
    await rm(path);
  }
}

/**
 * The entry `tag` names. The last one wins, as when a tool appends a re-tag. regctl before v0.5 wrote
 * whole references (`host/repo:tag`) into the annotation, so those count too.
 */
function taggedEntry(manifests: Descriptor[], tag: string): Descriptor | undefined {
  return manifests.findLast((d) => {
    const name = d.annotations?.[REF_NAME];
    return name === tag || (name?.endsWith(`:${tag}`) === true && name.includes('/'));
  });
}

function stripRefName(descriptor: Descriptor): Descriptor {
  const { annotations, ...rest } = descriptor;
  if (!annotations) return rest;
  const { [REF_NAME]: _name, ...others } = annotations;
  return Object.keys(others).length ? { ...rest, annotations: others } : rest;
}

function parseJson(bytes: Buffer, digest: string): Record<string, unknown> {
  try {
    const json = JSON.parse(bytes.toString('utf8')) as unknown;
    if (json && typeof json === 'object' && !Array.isArray(json)) return json as Record<string, unknown>;
  } catch {}
  throw new LayoutError(`${digest} is not a JSON manifest`);
}
