/**
 * Verification of one Notary Project signature against a trust policy, following notation-go v1.3's
 * verifier: integrity (always enforced), authenticity (trust store + trusted identity), expiry, authentic
 * timestamp and revocation, each enforced, logged or skipped per the policy's level and overrides.
 * Registry I/O (finding signatures, resolving the target) is the caller's job.
 */
import type { X509Certificate } from 'node:crypto';
import type { Descriptor } from '../oci/manifest.ts';
import { certificateInfo, formatSubject } from './cert-info.ts';
import { chainValidAt } from './chain.ts';
import { certificateSubjectDN, isSubsetDN } from './dn.ts';
import { SignatureError } from './errors.ts';
import { type ParsedJwsEnvelope, parseJwsEnvelope, SIGNING_SCHEME_X509 } from './jws.ts';
import { JWS_ENVELOPE_MEDIA_TYPE } from './media-types.ts';
import {
  parseTrustStoreReference,
  selectTrustPolicy,
  type TrustPolicyDocument,
  type TrustPolicyStatement,
  trustedX509Identities,
  type VerificationAction,
  type VerificationCheck,
  type VerificationLevel,
  verificationLevel,
} from './trust-policy.ts';
import { loadTrustStore, type TrustStoreType } from './trust-store.ts';

export interface RevocationResult {
  ok: boolean;
  reason?: string;
}

export interface VerifyOptions {
  /** The envelope blob (the signature manifest's single layer). */
  envelope: Uint8Array;
  /** The layer's mediaType; selects the envelope format. */
  envelopeMediaType: string;
  /** `host[:port]/repo`, optionally `@digest` (then it must equal `target.digest`). Selects the trust policy. */
  artifactReference: string;
  /** The descriptor being verified, as resolved from the registry (mediaType from Content-Type). */
  target: Descriptor;
  /** A document from `parseTrustPolicy` (already validated). */
  policy: TrustPolicyDocument;
  /** `{NOTATION_CONFIG}/truststore`. */
  trustStoreDir: string;
  /** Verification time. Default now. */
  now?: Date;
  /** Like `notation verify -m k=v`: these annotations must be in the signed targetArtifact. */
  userMetadata?: Record<string, string>;
  /**
   * Online revocation check (OCSP/CRL) for chains that name endpoints. Without it such chains report
   * "revocation status unknown" (enforced under `strict`), which is what notation does when it cannot reach them.
   */
  checkRevocation?: (chain: X509Certificate[], signingTime: Date) => Promise<RevocationResult>;
}

export interface CheckResult {
  check: VerificationCheck;
  action: VerificationAction;
  /** True when a failure of this check fails the verification. */
  enforced: boolean;
  /** False when the check was not performed (skipped by policy, or unreachable after an integrity failure). */
  checked: boolean;
  /** Passed, or not performed. A logged failure has `ok: false` but does not fail the verification. */
  ok: boolean;
  reason?: string;
}

export interface VerificationResult {
  ok: boolean;
  policyName: string;
  /** The configured level (`strict`, `permissive`, `audit`, `skip`); see `enforcement` for overrides. */
  level: string;
  enforcement: Record<VerificationCheck, VerificationAction>;
  results: CheckResult[];
  /** Leaf certificate subject, `C=…, ST=…, O=…, CN=…`, when the envelope could be parsed. */
  signer?: string;
  /** The parsed envelope, when integrity passed. */
  envelope?: ParsedJwsEnvelope;
}

const ORDER: readonly VerificationCheck[] = [
  'integrity',
  'authenticity',
  'expiry',
  'authenticTimestamp',
  'revocation',
];

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Authenticity: some x5c certificate byte-equal to a trusted one, then the trusted-identity match on the leaf. */
async function checkAuthenticity(
  statement: TrustPolicyStatement,
  envelope: ParsedJwsEnvelope,
  trustStoreDir: string,
): Promise<string | undefined> {
  // notary.x509 trusts `ca` stores; the signingAuthority scheme trusts `signingAuthority` stores (never tsa).
  const wanted: TrustStoreType = envelope.signingScheme === SIGNING_SCHEME_X509 ? 'ca' : 'signingAuthority';
  const trusted: X509Certificate[] = [];
  try {
    for (const ref of statement.trustStores) {
      const { type, name } = parseTrustStoreReference(ref);
      if (type === wanted) trusted.push(...(await loadTrustStore(trustStoreDir, type, name)));
    }
  } catch (err) {
    return `error while loading the trust store, ${message(err)}`;
  }
  if (trusted.length === 0)
    return `no trusted certificates are found to verify authenticity (no "${wanted}" trust store in the policy)`;
  // Integrity already proved each x5c certificate is issued by the next, ending at a self-signed root, so a
  // trusted certificate anywhere in x5c means the leaf chains to it.
  const anchored = envelope.certificateChain.some((c) => trusted.some((t) => t.raw.equals(c.raw)));
  if (!anchored) return "the signature's certificate chain does not contain any trusted certificate";

  const identities = trustedX509Identities(statement);
  if (identities === '*') return undefined;
  if (identities.length === 0)
    return `no x509 trusted identities are configured in the trust policy "${statement.name}"`;
  let leafDn: ReturnType<typeof certificateSubjectDN>;
  try {
    leafDn = certificateSubjectDN(envelope.certificateChain[0]!);
  } catch (err) {
    return `error while parsing the certificate subject from the digital signature: ${message(err)}`;
  }
  if (identities.some((id) => isSubsetDN(id.dn, leafDn))) return undefined;
  return `signing certificate from the digital signature ("${formatSubject(envelope.certificateChain[0]!)}") does not match the X.509 trusted identities ${JSON.stringify(identities.map((i) => i.raw))} defined in the trust policy "${statement.name}"`;
}

/**
 * Authentic timestamp (spec §7.8). notary.x509 without a `tsa` store (or `afterCertExpiry` while the chain is
 * unexpired): every certificate must be valid now. Otherwise an RFC 3161 countersignature is required, which
 * this library cannot verify yet. signingAuthority: the chain must cover the authentic signing time.
 */
function checkAuthenticTimestamp(
  statement: TrustPolicyStatement,
  envelope: ParsedJwsEnvelope,
  now: Date,
): string | undefined {
  const chain = envelope.certificateChain;
  if (envelope.signingScheme !== SIGNING_SCHEME_X509) {
    for (const cert of chain) {
      const info = certificateInfo(cert);
      if (envelope.signingTime < info.notBefore || envelope.signingTime > info.notAfter) {
        return `certificate "${formatSubject(cert)}" was not valid when the digital signature was produced at ${envelope.signingTime.toISOString()}`;
      }
    }
    return undefined;
  }
  let timestampRequired = statement.trustStores.some((s) => s.startsWith('tsa:'));
  if (timestampRequired && statement.signatureVerification.verifyTimestamp === 'afterCertExpiry') {
    timestampRequired = chain.some((c) => now > certificateInfo(c).notAfter);
  }
  if (!timestampRequired) return chainValidAt(chain, now);
  if (!envelope.timestampSignature)
    return 'no timestamp countersignature was found in the signature envelope';
  return 'the signature carries an RFC 3161 timestamp countersignature, whose verification is not implemented';
}

async function checkRevocation(
  envelope: ParsedJwsEnvelope,
  options: VerifyOptions,
): Promise<string | undefined> {
  const chain = envelope.certificateChain;
  const withEndpoints = chain.filter((c) => certificateInfo(c).hasRevocationEndpoints);
  // notation: a certificate without OCSP or CRL URLs is NonRevokable, which passes.
  if (withEndpoints.length === 0) return undefined;
  if (options.checkRevocation) {
    try {
      const r = await options.checkRevocation(chain, envelope.signingTime);
      return r.ok ? undefined : (r.reason ?? 'a certificate in the chain is revoked');
    } catch (err) {
      return `revocation status unknown: ${message(err)}`;
    }
  }
  return `revocation status unknown: certificate "${formatSubject(withEndpoints[0]!)}" names OCSP/CRL endpoints and no revocation checker is configured`;
}

function descriptorMismatch(signed: Descriptor, target: Descriptor): string | undefined {
  const diffs = (['mediaType', 'digest', 'size'] as const)
    .filter((k) => signed[k] !== target[k])
    .map((k) => `${k} signed ${JSON.stringify(signed[k])}, expected ${JSON.stringify(target[k])}`);
  return diffs.length === 0 ? undefined : `content descriptor mismatch: ${diffs.join('; ')}`;
}

/** Verifies one signature envelope for `target` under the trust policy that applies to `artifactReference`. */
export async function verifyNotarySignature(options: VerifyOptions): Promise<VerificationResult> {
  const now = options.now ?? new Date();
  const statement = selectTrustPolicy(options.policy, options.artifactReference);
  const level: VerificationLevel = verificationLevel(statement.signatureVerification);
  const { enforcement } = level;
  const results = new Map<VerificationCheck, CheckResult>();
  const record = (check: VerificationCheck, reason: string | undefined, checked = true) => {
    const action = enforcement[check];
    results.set(check, {
      check,
      action,
      enforced: action === 'enforce',
      checked,
      ok: reason === undefined,
      ...(reason === undefined ? {} : { reason }),
    });
  };
  const finish = (extra: Partial<VerificationResult> = {}): VerificationResult => {
    const list = ORDER.map((c) => results.get(c)!);
    return {
      ok: list.every((r) => r.ok || !r.enforced),
      policyName: statement.name,
      level: statement.signatureVerification.level,
      enforcement,
      results: list,
      ...extra,
    };
  };

  // Level skip: notation does not even fetch signatures.
  if (statement.signatureVerification.level === 'skip') {
    for (const c of ORDER) record(c, undefined, false);
    return finish();
  }

  // Integrity (never overridable): parse + cryptographic + header + chain checks, then the signed target.
  let envelope: ParsedJwsEnvelope | undefined;
  let integrityFailure: string | undefined;
  let signer: string | undefined;
  if (options.envelopeMediaType !== JWS_ENVELOPE_MEDIA_TYPE) {
    integrityFailure = `unsupported signature envelope media type "${options.envelopeMediaType}"`;
  } else {
    try {
      envelope = parseJwsEnvelope(options.envelope);
      signer = formatSubject(envelope.certificateChain[0]!);
    } catch (err) {
      integrityFailure =
        err instanceof SignatureError
          ? `unable to verify the digital signature (${err.code}): ${err.message}`
          : `unable to parse the digital signature: ${message(err)}`;
    }
  }
  if (envelope) {
    const signed = envelope.payload.targetArtifact;
    integrityFailure = descriptorMismatch(signed, options.target);
    const at = options.artifactReference.lastIndexOf('@');
    if (!integrityFailure && at >= 0 && options.artifactReference.slice(at + 1) !== options.target.digest) {
      integrityFailure = `artifact reference digest ${options.artifactReference.slice(at + 1)} differs from the target digest ${options.target.digest}`;
    }
    if (!integrityFailure && options.userMetadata) {
      const missing = Object.entries(options.userMetadata).filter(([k, v]) => signed.annotations?.[k] !== v);
      if (missing.length > 0) {
        integrityFailure = `unable to find specified metadata in the signature: ${missing.map(([k, v]) => `${k}=${v}`).join(', ')}`;
      }
    }
  }
  record('integrity', integrityFailure);
  if (integrityFailure || !envelope) {
    for (const c of ORDER.slice(1)) {
      record(c, 'not evaluated: integrity failed', false);
      results.get(c)!.ok = false;
    }
    return finish(signer ? { signer } : {});
  }

  const run = async (
    check: VerificationCheck,
    fn: () => string | undefined | Promise<string | undefined>,
  ) => {
    if (enforcement[check] === 'skip') return record(check, undefined, false);
    try {
      record(check, await fn());
    } catch (err) {
      record(check, message(err));
    }
  };
  await run('authenticity', () => checkAuthenticity(statement, envelope, options.trustStoreDir));
  await run('expiry', () =>
    envelope.expiry && now >= envelope.expiry
      ? `digital signature has expired on ${envelope.expiry.toISOString()}`
      : undefined,
  );
  await run('authenticTimestamp', () => checkAuthenticTimestamp(statement, envelope, now));
  await run('revocation', () => checkRevocation(envelope, options));
  return finish({ signer: signer!, envelope });
}
