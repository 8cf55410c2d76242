/**
 * Notary Project signatures (notation-compatible): JWS envelopes, test certificate chains, trust stores,
 * trust policies and policy-driven verification; registry.ts signs and verifies images on registries.
 */
export type { CertificateInfo, NameAttribute } from './cert-info.ts';
export { certificateInfo, formatSubject, KeyUsageBit, OID, parseCertificates, toPem } from './cert-info.ts';
export type {
  GenerateChainOptions,
  GeneratedChain,
  IssueCertificateOptions,
  KeyType,
  SubjectName,
} from './certs.ts';
export {
  generateCertificateChain,
  generateKey,
  issueCertificate,
  KEY_TYPES,
  loadPrivateKey,
} from './certs.ts';
export type { JwsAlgorithm, KeySpec } from './chain.ts';
export { chainValidAt, keySpecOf, validateCodeSigningChain } from './chain.ts';
export type { DistinguishedName } from './dn.ts';
export { certificateSubjectDN, isSubsetDN, parseDistinguishedName } from './dn.ts';
export type { SignatureErrorCode } from './errors.ts';
export { SignatureError } from './errors.ts';
export type { NotaryPayload, ParsedJwsEnvelope, SigningScheme, SignJwsOptions } from './jws.ts';
export {
  encodePayload,
  formatRfc3339,
  HEADER,
  parseJwsEnvelope,
  parseRfc3339,
  SIGNING_SCHEME_SIGNING_AUTHORITY,
  SIGNING_SCHEME_X509,
  sanitizeTarget,
  signJwsEnvelope,
} from './jws.ts';
export {
  COSE_ENVELOPE_MEDIA_TYPE,
  JWS_ENVELOPE_MEDIA_TYPE,
  NOTARY_PAYLOAD_MEDIA_TYPE,
  NOTARY_SIGNATURE_ARTIFACT_TYPE,
} from './media-types.ts';
export type {
  ImageVerification,
  SignatureOutcome,
  SignatureShape,
  SignedImage,
  SignImageOptions,
  VerifyImageOptions,
} from './registry.ts';
export { loadTrustPolicy, signImage, verifyImage, verifySignatureManifest } from './registry.ts';
export type {
  SignatureVerification,
  TrustPolicyDocument,
  TrustPolicyStatement,
  VerificationAction,
  VerificationCheck,
  VerificationLevel,
  VerificationLevelName,
} from './trust-policy.ts';
export {
  artifactPath,
  parseTrustPolicy,
  parseTrustStoreReference,
  selectTrustPolicy,
  trustedX509Identities,
  VERIFICATION_LEVELS,
  validateRegistryScope,
  validateTrustPolicy,
  verificationLevel,
} from './trust-policy.ts';
export type { TrustStoreType } from './trust-store.ts';
export {
  addToTrustStore,
  defaultTrustStoreDir,
  loadTrustStore,
  notationConfigDir,
  TRUST_STORE_TYPES,
  trustPolicyPaths,
} from './trust-store.ts';
export type { CheckResult, RevocationResult, VerificationResult, VerifyOptions } from './verify.ts';
export { verifyNotarySignature } from './verify.ts';
