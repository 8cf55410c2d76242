/**
 * notation's OCI trust policy (`trustpolicy.json`, version "1.0"): parsing, the validation rules of
 * notation-go `OCIDocument.Validate`, verification levels with overrides, and policy selection by
 * repository (exact scope beats `*`).
 */
import { type DistinguishedName, DistinguishedNameError, isSubsetDN, parseDistinguishedName } from './dn.ts';
import { SignatureError } from './errors.ts';
import { checkGoShape, GoJsonError, type GoType, parseGoJson } from './go-json.ts';
import { isValidTrustStoreName, TRUST_STORE_TYPES, type TrustStoreType } from './trust-store.ts';

export type VerificationCheck = 'integrity' | 'authenticity' | 'authenticTimestamp' | 'expiry' | 'revocation';
export type VerificationAction = 'enforce' | 'log' | 'skip';
export type VerificationLevelName = 'strict' | 'permissive' | 'audit' | 'skip';

export const VERIFICATION_CHECKS: readonly VerificationCheck[] = [
  'integrity',
  'authenticity',
  'authenticTimestamp',
  'expiry',
  'revocation',
];
const ACTIONS: readonly VerificationAction[] = ['enforce', 'log', 'skip'];

/** The presets of notation-go verifier/trustpolicy. */
export const VERIFICATION_LEVELS: Record<
  VerificationLevelName,
  Record<VerificationCheck, VerificationAction>
> = {
  strict: {
    integrity: 'enforce',
    authenticity: 'enforce',
    authenticTimestamp: 'enforce',
    expiry: 'enforce',
    revocation: 'enforce',
  },
  permissive: {
    integrity: 'enforce',
    authenticity: 'enforce',
    authenticTimestamp: 'log',
    expiry: 'log',
    revocation: 'log',
  },
  audit: {
    integrity: 'enforce',
    authenticity: 'log',
    authenticTimestamp: 'log',
    expiry: 'log',
    revocation: 'log',
  },
  skip: {
    integrity: 'skip',
    authenticity: 'skip',
    authenticTimestamp: 'skip',
    expiry: 'skip',
    revocation: 'skip',
  },
};

export interface SignatureVerification {
  level: VerificationLevelName;
  override?: Partial<Record<VerificationCheck, VerificationAction>>;
  /** `always` (default) or `afterCertExpiry`: when an RFC 3161 timestamp must be verified. */
  verifyTimestamp?: 'always' | 'afterCertExpiry';
}

export interface TrustPolicyStatement {
  name: string;
  registryScopes: string[];
  signatureVerification: SignatureVerification;
  /** `<type>:<name>`, type ca | signingAuthority | tsa. */
  trustStores: string[];
  /** `["*"]` or `x509.subject: <DN>` entries (other prefixes are allowed and ignored, as notation does). */
  trustedIdentities: string[];
}

export interface TrustPolicyDocument {
  version: '1.0';
  trustPolicies: TrustPolicyStatement[];
}

export interface VerificationLevel {
  /** The preset name, or `custom` when `override` changed it (notation's naming). */
  name: VerificationLevelName | 'custom';
  enforcement: Record<VerificationCheck, VerificationAction>;
}

const WILDCARD = '*';
const X509_SUBJECT = 'x509.subject';

function policyError(message: string): SignatureError {
  return new SignatureError('TRUST_POLICY', message);
}

// ---------------------------------------------------------------------------------------------------------
// Decoding: JSON → typed document. Type errors are what Go's json decoder calls a malformed policy.

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringList(value: unknown, where: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw policyError(`malformed trust policy: ${where} must be an array of strings`);
  }
  return value as string[];
}

function decodeStatement(value: unknown, index: number): TrustPolicyStatement {
  if (!isObject(value))
    throw policyError(`malformed trust policy: trustPolicies[${index}] must be an object`);
  const where = `trustPolicies[${index}]`;
  const name = value.name ?? '';
  if (typeof name !== 'string') throw policyError(`malformed trust policy: ${where}.name must be a string`);
  const sv = value.signatureVerification ?? {};
  if (!isObject(sv))
    throw policyError(`malformed trust policy: ${where}.signatureVerification must be an object`);
  const level = sv.level ?? '';
  if (typeof level !== 'string')
    throw policyError(`malformed trust policy: ${where}.signatureVerification.level must be a string`);
  const signatureVerification: SignatureVerification = { level: level as VerificationLevelName };
  if (sv.override !== undefined && sv.override !== null) {
    if (!isObject(sv.override) || Object.values(sv.override).some((v) => typeof v !== 'string')) {
      throw policyError(
        `malformed trust policy: ${where}.signatureVerification.override must map names to strings`,
      );
    }
    signatureVerification.override = sv.override as SignatureVerification['override'];
  }
  if (sv.verifyTimestamp !== undefined && sv.verifyTimestamp !== null && sv.verifyTimestamp !== '') {
    if (typeof sv.verifyTimestamp !== 'string') {
      throw policyError(
        `malformed trust policy: ${where}.signatureVerification.verifyTimestamp must be a string`,
      );
    }
    signatureVerification.verifyTimestamp = sv.verifyTimestamp as SignatureVerification['verifyTimestamp'];
  }
  return {
    name,
    registryScopes: stringList(value.registryScopes, `${where}.registryScopes`),
    signatureVerification,
    trustStores: stringList(value.trustStores, `${where}.trustStores`),
    trustedIdentities: stringList(value.trustedIdentities, `${where}.trustedIdentities`),
  };
}

/** notation-go v1.3.2's trustpolicy.Document as Go decodes it. */
const GO_TRUST_POLICY: GoType = {
  struct: {
    version: 'string',
    trustPolicies: {
      array: {
        struct: {
          name: 'string',
          registryScopes: { array: 'string' },
          signatureVerification: {
            struct: { level: 'string', override: { map: 'string' }, verifyTimestamp: 'string' },
          },
          trustStores: { array: 'string' },
          trustedIdentities: { array: 'string' },
        },
      },
    },
  },
};

/** Parses and validates a trust policy document (JSON text, bytes, or an already-parsed object). */
export function parseTrustPolicy(input: string | Uint8Array | unknown): TrustPolicyDocument {
  let value: unknown = input;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    // notation decodes the file with Go's encoding/json (case-insensitive keys, last one wins): refuse what
    // it would read differently from us, such as "TrustPolicies" beside "trustPolicies" (go-json.ts).
    try {
      value = parseGoJson(typeof input === 'string' ? Buffer.from(input, 'utf8') : input);
    } catch (err) {
      throw policyError(`malformed trust policy: not valid JSON (${(err as Error).message})`);
    }
    try {
      checkGoShape(value, GO_TRUST_POLICY, 'the trust policy');
    } catch (err) {
      if (!(err instanceof GoJsonError)) throw err;
      throw policyError(`malformed trust policy: ${err.message}; refused so that it has one reading`);
    }
  }
  if (!isObject(value)) throw policyError('malformed trust policy: the document must be a JSON object');
  if (value.version !== undefined && typeof value.version !== 'string') {
    throw policyError('malformed trust policy: version must be a string');
  }
  const list = value.trustPolicies;
  if (list !== undefined && list !== null && !Array.isArray(list)) {
    throw policyError('malformed trust policy: trustPolicies must be an array');
  }
  const doc = {
    version: (value.version ?? '') as '1.0',
    trustPolicies: ((list as unknown[] | null | undefined) ?? []).map(decodeStatement),
  };
  validateTrustPolicy(doc);
  return doc;
}

// ---------------------------------------------------------------------------------------------------------
// Validation (notation-go OCIDocument.Validate, in its order, so the first error reported is the same)

/** `GetVerificationLevel`: a preset, optionally overridden; integrity can never be overridden and only revocation skipped. */
export function verificationLevel(sv: SignatureVerification): VerificationLevel {
  if (!sv.level)
    throw policyError('signature verification level is empty or missing in the trust policy statement');
  if (!Object.hasOwn(VERIFICATION_LEVELS, sv.level)) {
    throw policyError(`invalid signature verification level "${sv.level}"`);
  }
  const base = VERIFICATION_LEVELS[sv.level];
  const overrides = Object.entries(sv.override ?? {});
  if (overrides.length === 0) return { name: sv.level, enforcement: { ...base } };
  if (sv.level === 'skip') {
    throw policyError(
      `signature verification level "skip" can't be used to customize signature verification`,
    );
  }
  const enforcement = { ...base };
  for (const [key, value] of overrides) {
    if (!VERIFICATION_CHECKS.includes(key as VerificationCheck)) {
      throw policyError(
        `verification type "${key}" in custom signature verification is not supported, supported values are ${JSON.stringify(VERIFICATION_CHECKS)}`,
      );
    }
    if (!ACTIONS.includes(value as VerificationAction)) {
      throw policyError(
        `verification action "${value}" in custom signature verification is not supported, supported values are ${JSON.stringify(ACTIONS)}`,
      );
    }
    if (key === 'integrity')
      throw policyError(`"integrity" verification can not be overridden in custom signature verification`);
    if (key !== 'revocation' && value === 'skip') {
      throw policyError(`"${key}" verification can not be skipped in custom signature verification`);
    }
    enforcement[key as VerificationCheck] = value as VerificationAction;
  }
  return { name: 'custom', enforcement };
}

export function parseTrustStoreReference(value: string): { type: TrustStoreType; name: string } {
  const i = value.indexOf(':');
  if (i < 0) {
    throw policyError(
      `malformed trust store value "${value}". The required format is <TrustStoreType>:<TrustStoreName>`,
    );
  }
  const type = value.slice(0, i);
  const name = value.slice(i + 1);
  if (!TRUST_STORE_TYPES.includes(type as TrustStoreType)) {
    throw policyError(`unsupported trust store type "${type}" in trust store value "${value}"`);
  }
  if (!isValidTrustStoreName(name)) {
    throw policyError(
      `unsupported trust store name "${name}" in trust store value "${value}". Named store name needs to follow [a-zA-Z0-9_.-]+ format`,
    );
  }
  return { type: type as TrustStoreType, name };
}

/** The statement's `x509.subject` identities parsed, or `*`. Throws on malformed identities. */
export function trustedX509Identities(
  statement: TrustPolicyStatement,
): '*' | { raw: string; dn: DistinguishedName }[] {
  if (statement.trustedIdentities.includes(WILDCARD)) return WILDCARD;
  const out: { raw: string; dn: DistinguishedName }[] = [];
  for (const identity of statement.trustedIdentities) {
    if (identity === '')
      throw policyError(`trust policy statement "${statement.name}" has an empty trusted identity`);
    const i = identity.indexOf(':');
    if (i < 0) {
      throw policyError(
        `trust policy statement "${statement.name}" has trusted identity "${identity}" missing separator`,
      );
    }
    // notation compares the prefix exactly (no trimming) and natively supports x509.subject only.
    if (identity.slice(0, i) !== X509_SUBJECT) continue;
    const value = identity.slice(i + 1);
    if (value === '') {
      throw policyError(
        `trust policy statement "${statement.name}" has trusted identity "${identity}" without an identity value`,
      );
    }
    try {
      out.push({ raw: identity, dn: parseDistinguishedName(value) });
    } catch (err) {
      if (!(err instanceof DistinguishedNameError)) throw err;
      throw policyError(
        `trust policy statement "${statement.name}" has trusted identity "${identity}" with invalid identity value: ${err.message}`,
      );
    }
  }
  return out;
}

function validateStatementCore(statement: TrustPolicyStatement): void {
  const { name } = statement;
  if (name === '')
    throw policyError('a trust policy statement is missing a name, every statement requires a name');
  let level: VerificationLevel;
  try {
    level = verificationLevel(statement.signatureVerification);
  } catch (err) {
    throw policyError(
      `trust policy statement "${name}" has invalid signatureVerification: ${(err as Error).message}`,
    );
  }
  const vt = statement.signatureVerification.verifyTimestamp;
  if (vt !== undefined && vt !== 'always' && vt !== 'afterCertExpiry') {
    throw policyError(
      `trust policy statement "${name}" has invalid signatureVerification: verifyTimestamp must be "always" or "afterCertExpiry", got "${vt}"`,
    );
  }
  if (level.name === 'skip') {
    if (statement.trustStores.length > 0 || statement.trustedIdentities.length > 0) {
      throw policyError(
        `trust policy statement "${name}" is set to skip signature verification but configured with trust stores and/or trusted identities, remove them if signature verification needs to be skipped`,
      );
    }
    return;
  }
  if (statement.trustStores.length === 0 || statement.trustedIdentities.length === 0) {
    throw policyError(
      `trust policy statement "${name}" is either missing trust stores or trusted identities, both must be specified`,
    );
  }
  for (const store of statement.trustStores) {
    try {
      parseTrustStoreReference(store);
    } catch (err) {
      throw policyError(`trust policy statement "${name}": ${(err as Error).message}`);
    }
  }
  if (statement.trustedIdentities.length > 1 && statement.trustedIdentities.includes(WILDCARD)) {
    throw policyError(
      `trust policy statement "${name}" uses a wildcard trusted identity '*', a wildcard identity cannot be used in conjunction with other values`,
    );
  }
  const identities = trustedX509Identities(statement);
  if (identities !== WILDCARD) {
    // Overlapping identities (one a subset of another) are ambiguous, so notation rejects them.
    identities.forEach((a, i) => {
      identities.forEach((b, j) => {
        if (i !== j && isSubsetDN(a.dn, b.dn)) {
          throw policyError(
            `trust policy statement "${name}" has overlapping x509 trustedIdentities, "${a.raw}" overlaps with "${b.raw}"`,
          );
        }
      });
    });
  }
}

const DOMAIN =
  /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?$/;
const REPOSITORY =
  /^[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?(?:(?:\/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?$/;

/** notation's `validateRegistryScopeFormat`: `domain[:port]/repository`, no scheme, tag, digest or wildcard. */
export function validateRegistryScope(scope: string): void {
  const message = `registry scope "${scope}" is not valid, make sure it is a fully qualified repository without the scheme, protocol or tag. For example domain.com/my/repository or a local scope like local/myOCILayout`;
  if (scope.length > 1 && scope.includes('*'))
    throw policyError(`registry scope "${scope}" with wild card(s) is not valid`);
  const slash = scope.indexOf('/');
  if (slash < 0) throw policyError(message);
  const domain = scope.slice(0, slash);
  const repository = scope.slice(slash + 1);
  if (!domain || !repository || !DOMAIN.test(domain) || !REPOSITORY.test(repository))
    throw policyError(message);
}

export function validateTrustPolicy(doc: TrustPolicyDocument): void {
  if (!doc.version)
    throw policyError('oci trust policy document has empty version, version must be specified');
  if (doc.version !== '1.0')
    throw policyError(`oci trust policy document uses unsupported version "${doc.version}"`);
  if (doc.trustPolicies.length === 0) {
    throw policyError('oci trust policy document can not have zero trust policy statements');
  }
  const names = new Set<string>();
  for (const statement of doc.trustPolicies) {
    if (names.has(statement.name)) {
      throw policyError(
        `multiple oci trust policy statements use the same name "${statement.name}", statement names must be unique`,
      );
    }
    validateStatementCore(statement);
    names.add(statement.name);
  }
  const scopeCount = new Map<string, number>();
  for (const statement of doc.trustPolicies) {
    if (statement.registryScopes.length === 0) {
      throw policyError(
        `oci trust policy statement "${statement.name}" has zero registry scopes, it must specify registry scopes with at least one value`,
      );
    }
    if (statement.registryScopes.length > 1 && statement.registryScopes.includes(WILDCARD)) {
      throw policyError(
        `oci trust policy statement "${statement.name}" uses wildcard registry scope '*', a wildcard scope cannot be used in conjunction with other scope values`,
      );
    }
    for (const scope of statement.registryScopes) {
      if (scope !== WILDCARD) validateRegistryScope(scope);
      scopeCount.set(scope, (scopeCount.get(scope) ?? 0) + 1);
    }
  }
  for (const [scope, count] of scopeCount) {
    if (count > 1) {
      throw policyError(
        `registry scope "${scope}" is present in multiple oci trust policy statements, one registry scope value can only be associated with one statement`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Selection

/**
 * The repository part of an artifact reference: `host[:port]/repo`, `host/repo@sha256:…` (notation's own
 * form) or `host/repo:tag`. The returned path is validated like a registry scope.
 */
export function artifactPath(artifactReference: string): string {
  let path = artifactReference;
  const at = path.lastIndexOf('@');
  if (at >= 0) path = path.slice(0, at);
  else {
    // A tag is a ':' after the last '/', which a port (before the first '/') never is.
    const slash = path.indexOf('/');
    const colon = path.lastIndexOf(':');
    if (slash >= 0 && colon > slash) path = path.slice(0, colon);
  }
  validateRegistryScope(path);
  return path;
}

/** notation's `GetApplicableTrustPolicy`: the statement naming the repository exactly, else the `*` one. */
export function selectTrustPolicy(doc: TrustPolicyDocument, artifactReference: string): TrustPolicyStatement {
  const path = artifactPath(artifactReference);
  let wildcard: TrustPolicyStatement | undefined;
  let exact: TrustPolicyStatement | undefined;
  for (const statement of doc.trustPolicies) {
    if (statement.registryScopes.includes(WILDCARD)) wildcard = statement;
    else if (statement.registryScopes.includes(path)) exact = statement;
  }
  const chosen = exact ?? wildcard;
  if (!chosen) {
    throw new SignatureError(
      'NO_APPLICABLE_POLICY',
      `artifact "${artifactReference}" has no applicable oci trust policy statement`,
    );
  }
  return chosen;
}
