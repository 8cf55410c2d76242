import { tryParseDigest } from './digest.ts';
import { errors } from './errors.ts';
import { goFieldMatcher } from './go-fold.ts';
import type { InlinedDescriptor } from './inline-data.ts';
import { scanJson } from './json-scan.ts';
import { bareMediaType, isNonDistributable, isValidMediaType, MediaType } from './mediatypes.ts';
import { decodeStrictUtf8 } from './utf8.ts';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  urls?: string[];
  platform?: unknown;
  data?: string;
}

/** What the registry needs to know about a manifest body; the bytes themselves are stored untouched. */
export interface ParsedManifest {
  mediaType: string;
  kind: 'manifest' | 'index';
  /** The referrers-API artifact type: explicit `artifactType`, else `config.mediaType` of an image manifest. */
  artifactType?: string;
  subject?: Descriptor;
  annotations?: Record<string, string>;
  /** Blobs that must exist in the repository (config and distributable layers). */
  blobs: Descriptor[];
  /** Index children: manifests (or, for BuildKit-style caches, blobs) that must exist in the repository. */
  children: Descriptor[];
  /**
   * Every descriptor parsed that has a `data` member (the subject, then the config and every layer, or
   * the index's children), with the member as found: `checkInlineData` judges it.
   */
  inlined: InlinedDescriptor[];
}

const SUPPORTED = new Set<string>([
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
]);
/** Content-Type values that say nothing about the manifest kind; we then trust the body. */
const GENERIC_TYPES = new Set(['application/json', 'application/octet-stream', 'text/plain']);

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The members a Go client decodes from a descriptor, and from a manifest or index (image-spec's structs). */
const DESCRIPTOR_FIELDS = goFieldMatcher([
  'mediaType',
  'digest',
  'size',
  'urls',
  'annotations',
  'data',
  'artifactType',
  'platform',
]);
const MANIFEST_FIELDS = goFieldMatcher([
  'schemaVersion',
  'mediaType',
  'artifactType',
  'config',
  'layers',
  'manifests',
  'subject',
  'annotations',
]);

/**
 * Refuses a member spelled like one of `fields` in another case. Go's encoding/json (containerd,
 * go-containerregistry, Distribution, notation) matches keys to struct fields case-insensitively, the
 * last match winning: `{"digest": A, "Digest": B}` is B to a Go client while this parser checked A, and
 * `"Data"` alone is inline data to Go and nothing here. Exact duplicates are refused by scanJson.
 */
function refuseCaseVariants(value: Json, fieldFor: (key: string) => string | undefined, where: string): void {
  for (const key of Object.keys(value)) {
    const field = fieldFor(key);
    if (field !== undefined && field !== key) {
      throw errors.manifestInvalid(
        `${where}${key.slice(0, 100)} is ${field} spelled in another case, which Go clients read as ${field}`,
        { member: key.slice(0, 100), field },
      );
    }
  }
}

function parseAnnotations(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw errors.manifestInvalid(`${where}annotations must be an object of strings`);
  for (const v of Object.values(value)) {
    if (typeof v !== 'string') throw errors.manifestInvalid(`${where}annotations values must be strings`);
  }
  return value as Record<string, string>;
}

/**
 * Validates one descriptor; throws 400 MANIFEST_INVALID naming where the problem is. A `data` member is
 * not judged here but added to `inlined`, when given, for a check that reports every bad one at once.
 */
export function parseDescriptor(value: unknown, where: string, inlined?: InlinedDescriptor[]): Descriptor {
  if (!isObject(value)) throw errors.manifestInvalid(`${where} must be a descriptor object`);
  refuseCaseVariants(value, DESCRIPTOR_FIELDS, `${where}.`);
  const { mediaType, digest, size, artifactType, urls } = value;
  if (!isValidMediaType(mediaType)) throw errors.manifestInvalid(`${where}.mediaType is missing or invalid`);
  if (typeof digest !== 'string' || !tryParseDigest(digest)) {
    throw errors.manifestInvalid(`${where}.digest is missing, malformed or uses an unsupported algorithm`, {
      digest: typeof digest === 'string' ? digest.slice(0, 200) : digest,
    });
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw errors.manifestInvalid(`${where}.size must be a non-negative integer`);
  }
  if (artifactType !== undefined && !isValidMediaType(artifactType)) {
    throw errors.manifestInvalid(`${where}.artifactType is invalid`);
  }
  if (urls !== undefined && (!Array.isArray(urls) || urls.some((u) => typeof u !== 'string'))) {
    throw errors.manifestInvalid(`${where}.urls must be an array of strings`);
  }
  const descriptor: Descriptor = { mediaType, digest, size };
  if (artifactType !== undefined) descriptor.artifactType = artifactType as string;
  const annotations = parseAnnotations(value.annotations, `${where}.`);
  if (annotations) descriptor.annotations = annotations;
  if (urls !== undefined) descriptor.urls = urls as string[];
  if (inlined && value.data !== undefined) inlined.push({ where, digest, size, data: value.data });
  return descriptor;
}

function parseDescriptorList(value: unknown, field: string, inlined: InlinedDescriptor[]): Descriptor[] {
  if (!Array.isArray(value)) throw errors.manifestInvalid(`${field} must be an array`);
  return value.map((item, i) => parseDescriptor(item, `${field}[${i}]`, inlined));
}

/** Decides the stored media type from the body's `mediaType` and the request's Content-Type. */
function resolveMediaType(body: Json, contentType: string | undefined): string {
  const header = bareMediaType(contentType);
  const specific = header && !GENERIC_TYPES.has(header) ? header : undefined;
  const field = body.mediaType;
  if (field !== undefined) {
    if (typeof field !== 'string') throw errors.manifestInvalid('mediaType must be a string');
    if (specific && specific !== field) {
      throw errors.manifestInvalid('Content-Type does not match the manifest mediaType', {
        contentType: specific,
        mediaType: field,
      });
    }
    return field;
  }
  if (specific) return specific;
  // Neither says: infer from the shape, the way OCI tools treat a bare manifest.
  if (Array.isArray(body.manifests)) return MediaType.ociIndex;
  if (isObject(body.config)) return MediaType.ociManifest;
  throw errors.manifestInvalid('cannot determine the manifest media type');
}

/**
 * Parses and validates a manifest or index body. Unknown fields are allowed and kept (the bytes are stored
 * as received); only what the registry relies on is checked.
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  const text = decodeStrictUtf8(bytes);
  if (text === undefined) throw errors.manifestInvalid('manifest is not valid UTF-8 JSON');
  // A byte order mark is refused, not dropped: the stored bytes would keep it, and Go's encoding/json
  // refuses a manifest that starts with one.
  if (text.charCodeAt(0) === 0xfeff) throw errors.manifestInvalid('manifest starts with a byte order mark');
  scanJson(text);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw errors.manifestInvalid('manifest is not valid UTF-8 JSON');
  }
  if (!isObject(body)) throw errors.manifestInvalid('manifest must be a JSON object');
  refuseCaseVariants(body, MANIFEST_FIELDS, '');
  const mediaType = resolveMediaType(body, contentType);
  if (!SUPPORTED.has(mediaType)) {
    throw errors.manifestInvalid('unsupported manifest media type', { mediaType, supported: [...SUPPORTED] });
  }
  if (body.schemaVersion !== 2) throw errors.manifestInvalid('schemaVersion must be 2');

  const isOci = mediaType === MediaType.ociManifest || mediaType === MediaType.ociIndex;
  const annotations = isOci ? parseAnnotations(body.annotations, '') : undefined;
  // Docker schema2 types define no subject or artifactType: the fields are ignored there.
  const inlined: InlinedDescriptor[] = [];
  const subject =
    isOci && body.subject !== undefined ? parseDescriptor(body.subject, 'subject', inlined) : undefined;
  let explicitArtifactType: string | undefined;
  if (isOci && body.artifactType !== undefined && body.artifactType !== '') {
    if (!isValidMediaType(body.artifactType)) throw errors.manifestInvalid('artifactType is invalid');
    explicitArtifactType = body.artifactType;
  }

  const parsed: ParsedManifest = { mediaType, kind: 'manifest', blobs: [], children: [], inlined };
  if (annotations) parsed.annotations = annotations;
  if (subject) parsed.subject = subject;

  if (mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList) {
    parsed.kind = 'index';
    parsed.children = parseDescriptorList(body.manifests, 'manifests', inlined);
    if (explicitArtifactType) parsed.artifactType = explicitArtifactType;
    return parsed;
  }
  const config = parseDescriptor(body.config, 'config', inlined);
  const layers = parseDescriptorList(body.layers, 'layers', inlined);
  parsed.artifactType = explicitArtifactType ?? config.mediaType;
  parsed.blobs = [config, ...layers.filter((l) => !(isNonDistributable(l.mediaType) && l.urls?.length))];
  return parsed;
}
