import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import { bufferSource } from '../client/blob-source.ts';
import { collect } from '../client/body-sink.ts';
import type { FetchedManifest } from '../client/client.ts';
import { ClientError } from '../client/errors.ts';
import { type ContentTarget, pourBlob, RegistryTarget } from '../client/target.ts';
import { digestOf } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { parseCertificates } from './cert-info.ts';
import { checkGoShape, GO_DESCRIPTOR, GoJsonError, type GoType, parseGoJson } from './go-json.ts';
import { formatRfc3339, signJwsEnvelope } from './jws.ts';
import {
  COSE_ENVELOPE_MEDIA_TYPE,
  JWS_ENVELOPE_MEDIA_TYPE,
  NOTARY_SIGNATURE_ARTIFACT_TYPE,
} from './media-types.ts';
import { parseTrustPolicy, selectTrustPolicy, type TrustPolicyDocument } from './trust-policy.ts';
import { notationConfigDir, trustPolicyPaths } from './trust-store.ts';
import { type VerificationResult, verifyNotarySignature } from './verify.ts';

/**
 * Notary Project signatures on registries and in OCI image layouts (any `ContentTarget`): sign an image
 * by pushing a signature manifest that refers to it, and verify an image by asking the target what
 * refers to it. The envelope work is in jws.ts and verify.ts; this module is the storage side, shaped
 * the way notation v1.3 reads and writes it (`--oci-layout` included).
 */

/** notation caps envelope blobs at 32 MiB and signature manifests at 4 MiB (notation-go registry/repository.go). */
const MAX_ENVELOPE_BYTES = 32 * 1024 * 1024;
const MAX_SIGNATURE_MANIFEST_BYTES = 4 * 1024 * 1024;
const THUMBPRINTS = 'io.cncf.notary.x509chain.thumbprint#S256';
const CREATED = 'org.opencontainers.image.created';
const LEGACY_ARTIFACT_MANIFEST = 'application/vnd.oci.artifact.manifest.v1+json';

/**
 * `config`: notation v1.3's shape (config media type `application/vnd.cncf.notary.signature`, no
 * `artifactType`), the one every released notation finds, also in OCI layouts.
 * `artifactType`: the spec's shape (`artifactType` set, empty config), which notation's main branch emits.
 */
export type SignatureShape = 'config' | 'artifactType';

export interface SignImageOptions {
  privateKeyPem: string | Buffer;
  /** Leaf first, ending with the root. */
  certificateChainPem: string | Buffer;
  shape?: SignatureShape;
  expiry?: Date;
  signingTime?: Date;
  /** Signed into `targetArtifact.annotations` (notation's `-m k=v`). */
  userMetadata?: Record<string, string>;
}

export interface SignedImage {
  /** What was signed: the image's manifest descriptor, by digest. */
  target: Descriptor;
  /** The signature manifest's referrer descriptor. */
  signature: Descriptor;
}

/**
 * Signs what `reference` (a tag or digest) names in `target`: a tag is resolved to a digest first and
 * the digest is what gets signed, so re-pointing the tag later cannot carry the signature along. The
 * envelope and the empty config go up as blobs, then the signature manifest by digest with `subject`
 * set; a registry client records it in the fallback tag when the registry has no referrers API (or
 * with `forceReferrersTag`), a layout lists it in `index.json` as notation does.
 */
export async function signImage(
  target: ContentTarget,
  reference: string,
  options: SignImageOptions,
): Promise<SignedImage> {
  const resolved = await target.resolve(reference);
  const metadata = options.userMetadata ?? {};
  const signed: Descriptor = {
    mediaType: resolved.mediaType,
    digest: resolved.digest,
    size: resolved.size,
    ...(Object.keys(metadata).length ? { annotations: metadata } : {}),
  };
  const signingTime = options.signingTime ?? new Date();
  const envelope = signJwsEnvelope({
    target: signed,
    privateKeyPem: options.privateKeyPem,
    certificateChainPem: options.certificateChainPem,
    signingTime,
    ...(options.expiry ? { expiry: options.expiry } : {}),
  });
  const envelopeSource = bufferSource(envelope);
  const layer = { mediaType: JWS_ENVELOPE_MEDIA_TYPE, digest: envelopeSource.digest, size: envelope.length };
  await target.pushBlob(layer, envelopeSource);
  const emptySource = bufferSource(Buffer.from('{}'));
  const empty = { digest: emptySource.digest, size: 2 };
  await target.pushBlob({ mediaType: MediaType.ociEmpty, ...empty }, emptySource);
  const chain = parseCertificates(Buffer.from(options.certificateChainPem));
  const thumbprints = chain.map((cert) => createHash('sha256').update(cert.raw).digest('hex'));
  const shape = options.shape ?? 'config';
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    ...(shape === 'artifactType' ? { artifactType: NOTARY_SIGNATURE_ARTIFACT_TYPE } : {}),
    config:
      shape === 'artifactType'
        ? { mediaType: MediaType.ociEmpty, digest: empty.digest, size: 2, data: 'e30=' }
        : { mediaType: NOTARY_SIGNATURE_ARTIFACT_TYPE, digest: empty.digest, size: 2 },
    layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
    subject: { mediaType: resolved.mediaType, digest: resolved.digest, size: resolved.size },
    annotations: {
      [THUMBPRINTS]: JSON.stringify(thumbprints),
      [CREATED]: formatRfc3339(signingTime),
    },
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const digest = digestOf('sha256', bytes);
  const fetched: FetchedManifest = {
    descriptor: { mediaType: MediaType.ociManifest, digest, size: bytes.length },
    bytes,
    json: manifest,
  };
  await target.pushManifest(fetched);
  return {
    target: { mediaType: resolved.mediaType, digest: resolved.digest, size: resolved.size },
    signature: {
      mediaType: MediaType.ociManifest,
      digest,
      size: bytes.length,
      artifactType: NOTARY_SIGNATURE_ARTIFACT_TYPE,
      annotations: manifest.annotations,
    },
  };
}

export interface VerifyImageOptions {
  policy: TrustPolicyDocument;
  trustStoreDir: string;
  /** notation's `--max-signatures` (default 100): at most this many signatures are evaluated. */
  maxSignatures?: number;
  userMetadata?: Record<string, string>;
  now?: Date;
  /**
   * The trust-policy scope (`registryScopes`) the artifact is judged under: by default a registry
   * repository's own `host/repo`. An OCI layout has no such name, so it needs one (notation's `--scope`
   * with `--oci-layout`).
   */
  scope?: string;
}

/** `scope`, or the registry repository's own name; an OCI layout must be given one. */
function trustScope(target: ContentTarget, scope: string | undefined): string {
  if (scope) return scope;
  if (target instanceof RegistryTarget) return target.name;
  throw new ClientError(
    `${target.name} is an OCI layout, which has no registry scope of its own: name the trust policy scope to verify under (--scope REGISTRY/REPOSITORY, as with notation)`,
  );
}

export interface SignatureOutcome {
  digest: string;
  /** Why the manifest was not evaluated as a signature (wrong shape, too big, wrong subject). */
  skipped?: string;
  /**
   * Set when the signature could not be retrieved the way notation retrieves it (see `skipped` for why):
   * notation then fails the whole verification, and so does `verifyImage`.
   */
  unretrievable?: true;
  /** Set when notation would not list it as a signature at all (in an OCI layout; see `skipped`). */
  unlisted?: true;
  result?: VerificationResult;
}

export interface ImageVerification {
  ok: boolean;
  target: Descriptor;
  /** `host/repo@digest` (for a layout, `SCOPE@digest`), the reference the trust policy was matched against. */
  reference: string;
  /** The signature that satisfied the policy. */
  verifiedBy?: string;
  signatures: SignatureOutcome[];
  /** Why verification failed when no signature was found or evaluated. */
  reason?: string;
}

/**
 * Verifies what `at` (a tag or digest) names in `target` as notation does: resolve it to a digest, list
 * its Notary signatures (referrers API, else the fallback tag; in a layout, the manifests that name it
 * as their subject), evaluate them in order against the trust policy selected for the scope (`host/repo`
 * or `options.scope`), and succeed at the first that passes. Both manifest shapes are accepted; anything
 * else is skipped with a reason, except a signature notation cannot retrieve (see `signatureEnvelope`), which
 * fails the verification there, as in notation. Level `skip` succeeds without listing or fetching anything.
 */
export async function verifyImage(
  source: ContentTarget,
  at: string,
  options: VerifyImageOptions,
): Promise<ImageVerification> {
  const scope = trustScope(source, options.scope);
  const resolved = await source.resolve(at);
  const target: Descriptor = { mediaType: resolved.mediaType, digest: resolved.digest, size: resolved.size };
  const reference = `${scope}@${resolved.digest}`;
  // notation picks the policy before it looks for signatures: at level `skip` it lists and fetches none,
  // so a malformed or unreachable referrer cannot fail a skipped scope.
  const statement = selectTrustPolicy(options.policy, reference);
  if (statement.signatureVerification.level === 'skip') {
    return {
      ok: true,
      target,
      reference,
      signatures: [],
      reason: `trust policy "${statement.name}" skips verification`,
    };
  }
  const listed = await source.referrers(resolved.digest, NOTARY_SIGNATURE_ARTIFACT_TYPE);
  const signatures: SignatureOutcome[] = [];
  const max = options.maxSignatures ?? 100;
  let evaluated = 0;
  for (const descriptor of listed) {
    if (evaluated >= max) break;
    const outcome = await verifySignatureManifest(source, target, descriptor, options);
    signatures.push(outcome);
    // A manifest notation would not list (in a layout) is no signature and does not count.
    if (!outcome.unlisted) evaluated++;
    if (outcome.result?.ok) return { ok: true, target, reference, verifiedBy: descriptor.digest, signatures };
    // notation stops at a signature it cannot retrieve and fails, whatever comes after it.
    if (outcome.unretrievable)
      return {
        ok: false,
        target,
        reference,
        signatures,
        reason: `unable to retrieve the signature ${descriptor.digest}: ${outcome.skipped}`,
      };
  }
  if (signatures.every((s) => s.unlisted)) {
    return {
      ok: false,
      target,
      reference,
      signatures,
      reason: `no signature is associated with ${reference}`,
    };
  }
  const why = signatures
    .filter((s) => !s.unlisted)
    .map((s) => s.skipped ?? firstFailure(s.result))
    .filter(Boolean);
  return {
    ok: false,
    target,
    reference,
    signatures,
    reason: why[0] ?? 'no signature satisfied the trust policy',
  };
}

/** Verifies one signature manifest (a referrer of `target`, both in `source`) against the policy. */
export async function verifySignatureManifest(
  source: ContentTarget,
  target: Descriptor,
  signature: Descriptor,
  options: VerifyImageOptions,
): Promise<SignatureOutcome> {
  const scope = trustScope(source, options.scope);
  const found = await signatureEnvelope(source, signature, target);
  if ('skipped' in found) return { digest: signature.digest, skipped: found.skipped };
  if ('unlisted' in found) return { digest: signature.digest, skipped: found.unlisted, unlisted: true };
  if ('unretrievable' in found)
    return { digest: signature.digest, skipped: found.unretrievable, unretrievable: true };
  const result = await verifyNotarySignature({
    envelope: found.envelope,
    envelopeMediaType: found.mediaType,
    artifactReference: `${scope}@${target.digest}`,
    target: { mediaType: target.mediaType, digest: target.digest, size: target.size },
    policy: options.policy,
    trustStoreDir: options.trustStoreDir,
    ...(options.userMetadata ? { userMetadata: options.userMetadata } : {}),
    ...(options.now ? { now: options.now } : {}),
  });
  return { digest: signature.digest, result };
}

export function firstFailure(result: VerificationResult | undefined): string | undefined {
  const failed = result?.results.find((r) => r.enforced && !r.ok);
  return failed ? `${failed.check}: ${failed.reason ?? 'failed'}` : undefined;
}

/** notation-go v1.3.2's Go types for a signature manifest: an image manifest, or the old artifact manifest. */
const GO_IMAGE_MANIFEST: GoType = {
  struct: {
    schemaVersion: 'int',
    mediaType: 'string',
    artifactType: 'string',
    config: GO_DESCRIPTOR,
    layers: { array: GO_DESCRIPTOR },
    subject: GO_DESCRIPTOR,
    annotations: { map: 'string' },
  },
};
const GO_ARTIFACT_MANIFEST: GoType = {
  struct: {
    mediaType: 'string',
    artifactType: 'string',
    blobs: { array: GO_DESCRIPTOR },
    subject: GO_DESCRIPTOR,
    annotations: { map: 'string' },
  },
};

type FoundEnvelope =
  | { envelope: Buffer; mediaType: string }
  /** Tether does not evaluate it as a signature (its own, stricter rules); the others are still tried. */
  | { skipped: string }
  /** notation cannot retrieve it, which ends its verification with a failure: Tether's too. */
  | { unretrievable: string }
  /** notation v1.3.2 does not list it as a signature of the image (OCI layouts): neither does Tether. */
  | { unlisted: string };

/**
 * The envelope of a signature manifest, or why there is none. First what notation v1.3.2 does to retrieve
 * it (getSignatureBlobDesc, FetchSignatureBlob): a manifest that is not an image (or artifact) manifest,
 * over 4 MiB, not decodable by Go the one way Tether reads it, without exactly one layer, with an envelope
 * over 32 MiB or one that cannot be fetched is `unretrievable`, which fails the whole verification, as it
 * does in notation, even when another signature would pass. Then Tether's own rules, which only `skip` the
 * manifest: the two Notary shapes, the subject, a JWS or COSE envelope.
 */
async function signatureEnvelope(
  source: ContentTarget,
  descriptor: Descriptor,
  target: Descriptor,
): Promise<FoundEnvelope> {
  const subject = target.digest;
  if (descriptor.size > MAX_SIGNATURE_MANIFEST_BYTES)
    return { unretrievable: `signature manifest too large: ${descriptor.size} bytes` };
  let manifest: FetchedManifest;
  try {
    manifest = await source.fetchManifest(descriptor.digest);
  } catch (err) {
    return { unretrievable: `cannot fetch the signature manifest: ${(err as Error).message}` };
  }
  const { json } = manifest;
  const kind = json.mediaType ?? manifest.descriptor.mediaType;
  if (kind !== MediaType.ociManifest && kind !== LEGACY_ARTIFACT_MANIFEST)
    return { unretrievable: `not an image manifest (${String(kind)})` };
  try {
    checkGoShape(
      parseGoJson(manifest.bytes),
      kind === LEGACY_ARTIFACT_MANIFEST ? GO_ARTIFACT_MANIFEST : GO_IMAGE_MANIFEST,
      'signature manifest',
    );
  } catch (err) {
    if (!(err instanceof GoJsonError)) throw err;
    return { unretrievable: `${err.message}; refused so that it has one reading` };
  }
  if (!(source instanceof RegistryTarget)) {
    // In an OCI layout notation v1.3.2 finds signatures itself (notation-go signatureReferrers): a manifest
    // whose subject is the image's exact descriptor and whose config media type (an artifact manifest's
    // artifactType) is the Notary one. So the spec's artifactType shape, with its empty config, is not a
    // signature there, for notation nor for Tether.
    const type =
      kind === LEGACY_ARTIFACT_MANIFEST
        ? json.artifactType
        : (json.config as Descriptor | undefined)?.mediaType;
    const s = json.subject as Descriptor | undefined;
    if (type !== NOTARY_SIGNATURE_ARTIFACT_TYPE)
      return {
        unlisted: `notation v1.3.2 does not take it for a signature in an OCI layout: its ${kind === LEGACY_ARTIFACT_MANIFEST ? 'artifactType' : 'config media type'} is ${JSON.stringify(type)}`,
      };
    if (s?.digest !== target.digest || s.size !== target.size || s.mediaType !== target.mediaType)
      return {
        unlisted:
          'notation v1.3.2 does not take it for a signature in an OCI layout: its subject is not the exact descriptor of the image',
      };
  }
  const list = kind === LEGACY_ARTIFACT_MANIFEST ? json.blobs : json.layers;
  const layers = (Array.isArray(list) ? list : []) as Descriptor[];
  if (layers.length !== 1)
    return { unretrievable: `a signature manifest has exactly one layer, this has ${layers.length}` };
  const layer = layers[0]!;
  if (layer.size > MAX_ENVELOPE_BYTES)
    return {
      unretrievable: `the envelope is ${layer.size} bytes, more than the ${MAX_ENVELOPE_BYTES} allowed`,
    };
  let envelope: Buffer;
  try {
    envelope = await collect(
      (sink) => pourBlob(source, layer, sink),
      MAX_ENVELOPE_BYTES,
      () => new ClientError(`blob ${layer.digest} is larger than ${MAX_ENVELOPE_BYTES} bytes`),
    );
  } catch (err) {
    if (err instanceof ClientError) return { unretrievable: `envelope: ${err.message}` };
    throw err;
  }
  const config = json.config as Descriptor | undefined;
  const artifactType = json.artifactType as string | undefined;
  const shapeA = artifactType === NOTARY_SIGNATURE_ARTIFACT_TYPE && config?.mediaType === MediaType.ociEmpty;
  const shapeL = artifactType === undefined && config?.mediaType === NOTARY_SIGNATURE_ARTIFACT_TYPE;
  if (!shapeA && !shapeL && kind !== LEGACY_ARTIFACT_MANIFEST)
    return {
      skipped: 'not a valid Notary Project signature manifest (neither artifactType nor config shape)',
    };
  if ((json.subject as Descriptor | undefined)?.digest !== subject)
    return { skipped: `its subject is not ${subject}` };
  if (layer.mediaType !== JWS_ENVELOPE_MEDIA_TYPE && layer.mediaType !== COSE_ENVELOPE_MEDIA_TYPE)
    return { skipped: `unsupported envelope media type ${layer.mediaType}` };
  return { envelope, mediaType: layer.mediaType };
}

/**
 * The trust policy at `path`, or notation v1.3.2's: `{config}/trustpolicy.json` and nothing else (checked
 * against the binary: it never reads `trustpolicy.oci.json`, which only notation v2 prefers), and only as a
 * regular file: notation refuses a symlink or a directory there, and so does Tether. A `path` given
 * explicitly (`--trust-policy`) is read as it is.
 */
export async function loadTrustPolicy(
  path?: string,
  configDir: string = notationConfigDir(),
): Promise<TrustPolicyDocument> {
  const read = async (file: string) => {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw new ClientError(`cannot read the trust policy ${file}: ${(err as Error).message}`);
    }
    return parseTrustPolicy(bytes);
  };
  if (path) return read(path);
  const { v1, oci } = trustPolicyPaths(configDir);
  let stats: Stats;
  try {
    stats = await lstat(v1);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new ClientError(`cannot read the trust policy ${v1}: ${(err as Error).message}`);
    const ociOnly = await lstat(oci).then(
      () => true,
      () => false,
    );
    throw new ClientError(
      `no trust policy: create ${v1} (notation's format) or pass --trust-policy FILE${ociOnly ? `; ${oci} is not read, as notation v1.3.2 does not read it` : ''}`,
    );
  }
  if (!stats.isFile()) {
    throw new ClientError(
      `the trust policy ${v1} is not a regular file (symlinks are not supported, as in notation)`,
    );
  }
  return read(v1);
}
