/** Public library surface of Tether. */

export {
  type ArtifactFile,
  attachArtifact,
  type PulledArtifact,
  type PushArtifactOptions,
  pullArtifact,
  pushArtifact,
} from './client/artifact.ts';
export { AuthError, Authenticator, mergeScopes, parseChallenge } from './client/auth.ts';
export { type BlobSource, bufferSource, fileSource } from './client/blob-source.ts';
export type { BodySink } from './client/body-sink.ts';
export {
  type ClientOptions,
  type FetchedManifest,
  type ReferrersMode,
  RegistryClient,
} from './client/client.ts';
export { CopyError, type CopyOptions, type CopyResult, copyGraph } from './client/copy.ts';
export {
  type Credentials,
  eraseCredentials,
  getCredentials,
  storeCredentials,
} from './client/docker-config.ts';
export { ClientError } from './client/errors.ts';
export { LayoutError, OciLayout } from './client/layout.ts';
export { Limiter } from './client/limiter.ts';
export type { ProgressListener, TransferOutcome } from './client/progress.ts';
export {
  type Endpoint,
  formatReference,
  type ImageReference,
  parseEndpoint,
  parseImageReference,
} from './client/reference.ts';
export { isLoopbackHost, RegistryHttp } from './client/registry-http.ts';
export { HttpResponse, ResponseHeaders } from './client/response.ts';
export { removeScratch } from './client/scratch.ts';
export {
  type BlobDescriptor,
  blobSource,
  type ContentTarget,
  LayoutTarget,
  pourBlob,
  RegistryTarget,
} from './client/target.ts';
export type { TlsSettings } from './client/tls.ts';
export { ContentMismatchError } from './client/verify-stream.ts';
export { loadConfig, SETTINGS, type TetherConfig } from './config.ts';
export { ConfigError } from './config-error.ts';
export { type Digest, parseDigest, tryParseDigest } from './oci/digest.ts';
export { OciError, type OciErrorCode } from './oci/errors.ts';
export { type Descriptor, type ParsedManifest, parseManifest } from './oci/manifest.ts';
export { MediaType } from './oci/mediatypes.ts';
export { isValidRepositoryName, isValidTag } from './oci/reference.ts';
export { referrersTagFor } from './oci/referrers-tag.ts';
export { Registry } from './registry/registry.ts';
export {
  type RunningRegistry,
  type StartRegistryOptions,
  startRegistry,
  startServer,
} from './server/start.ts';
