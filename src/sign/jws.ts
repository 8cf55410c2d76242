/**
 * The Notary Project JWS envelope (`application/jose+json`): a flattened JWS JSON serialization whose
 * payload is `{"targetArtifact": <descriptor>}`. Signing produces exactly what notation v1.3 emits for a
 * local key; parsing applies what notation-core-go v1.3 + golang-jwt v4 check (spec §3, §5).
 */
import { constants, type KeyObject, sign, verify, type X509Certificate } from 'node:crypto';
import type { Descriptor } from '../oci/manifest.ts';
import { parseCertificates } from './cert-info.ts';
import { loadPrivateKey } from './certs.ts';
import { JWS_ALGORITHMS, type JwsAlgorithm, keySpecOf, validateCodeSigningChain } from './chain.ts';
import { SignatureError, type SignatureErrorCode } from './errors.ts';
import { checkGoShape, GO_DESCRIPTOR, GoJsonError, type GoType, parseGoJson } from './go-json.ts';
import { NOTARY_PAYLOAD_MEDIA_TYPE } from './media-types.ts';

export const SIGNING_SCHEME_X509 = 'notary.x509';
export const SIGNING_SCHEME_SIGNING_AUTHORITY = 'notary.x509.signingAuthority';
export type SigningScheme = typeof SIGNING_SCHEME_X509 | typeof SIGNING_SCHEME_SIGNING_AUTHORITY;

export const HEADER = {
  signingScheme: 'io.cncf.notary.signingScheme',
  signingTime: 'io.cncf.notary.signingTime',
  authenticSigningTime: 'io.cncf.notary.authenticSigningTime',
  expiry: 'io.cncf.notary.expiry',
  signingAgent: 'io.cncf.notary.signingAgent',
  timestampSignature: 'io.cncf.notary.timestampSignature',
  verificationPlugin: 'io.cncf.notary.verificationPlugin',
} as const;

/** Protected-header keys notation-core-go parses into typed fields; everything else is an extended attribute. */
const KNOWN_PROTECTED = new Set<string>([
  'alg',
  'cty',
  'crit',
  HEADER.signingScheme,
  HEADER.signingTime,
  HEADER.authenticSigningTime,
  HEADER.expiry,
]);

export const DEFAULT_SIGNING_AGENT = 'tether';

export interface NotaryPayload {
  targetArtifact: Descriptor;
}

export interface SignJwsOptions {
  /** Descriptor of the signed manifest; sanitised to mediaType, digest, size and annotations as notation does. */
  target: Descriptor;
  /** PKCS#8, PKCS#1 or SEC1 PEM of the leaf key. */
  privateKeyPem: string | Buffer;
  /** Leaf first, then intermediates, then the root (notation requires the chain to end in a self-signed root). */
  certificateChainPem: string | Buffer;
  /** Default now. Truncated to whole seconds, like notation. */
  signingTime?: Date;
  /** Optional signature expiry; must be after the signing time. */
  expiry?: Date;
  /** `io.cncf.notary.signingAgent`; default `tether`. */
  signingAgent?: string;
}

export interface ParsedJwsEnvelope {
  payload: NotaryPayload;
  /** The exact signed payload bytes. */
  payloadBytes: Buffer;
  /** `cty`: always the Notary payload media type once parsing succeeded. */
  contentType: string;
  /** x5c, leaf first. */
  certificateChain: X509Certificate[];
  /** For `notary.x509` the signing time; for `notary.x509.signingAuthority` the authentic signing time. */
  signingTime: Date;
  expiry?: Date;
  signingScheme: SigningScheme;
  alg: JwsAlgorithm;
  signingAgent?: string;
  /** RFC 3161 TimeStampToken DER, if the signer used a TSA. */
  timestampSignature?: Buffer;
  /** Protected-header entries beyond the Notary ones, with their criticality. */
  extendedAttributes: { key: string; value: unknown; critical: boolean }[];
}

// ---------------------------------------------------------------------------------------------------------
// Encoding helpers

const B64URL = /^[A-Za-z0-9_-]*$/;
const B64STD = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** base64url without padding, strictly: golang-jwt refuses padding and a 4n+1 length cannot be valid. */
function decodeB64Url(value: unknown, what: string): Buffer {
  if (typeof value !== 'string' || !B64URL.test(value) || value.length % 4 === 1) {
    throw new SignatureError('MALFORMED_ENVELOPE', `${what} is not unpadded base64url`);
  }
  return Buffer.from(value, 'base64url');
}

/** Go's []byte JSON form: standard base64 with padding (Go's decoder skips CR/LF). */
function decodeB64Std(value: unknown, what: string): Buffer {
  const s = typeof value === 'string' ? value.replace(/[\r\n]/g, '') : undefined;
  if (s === undefined || !B64STD.test(s)) {
    throw new SignatureError('MALFORMED_ENVELOPE', `${what} is not standard padded base64`);
  }
  return Buffer.from(s, 'base64');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses one of the envelope's JSON documents for reading by exact key: strictly, and only when Go (notation)
 * would decode the same document into its struct with the same values (go-json.ts). So a case variant of a
 * field (`Digest`, `IO.CNCF.NOTARY.EXPIRY`), a duplicate key or a value Go cannot decode is refused here,
 * rather than read one way by Tether and another by notation.
 */
function parseJsonObject(
  bytes: Buffer,
  what: string,
  code: SignatureErrorCode,
  shape: GoType,
): Record<string, unknown> {
  let value: unknown;
  try {
    value = parseGoJson(bytes);
  } catch (err) {
    throw new SignatureError(code, `${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(value)) throw new SignatureError(code, `${what} must be a JSON object`);
  try {
    checkGoShape(value, shape, what);
  } catch (err) {
    if (!(err instanceof GoJsonError)) throw err;
    throw new SignatureError(code, `${err.message}; refused so that it has one reading`);
  }
  return value;
}

/** notation-core-go's jwsEnvelope, with its unprotected header, as Go decodes them. */
const GO_ENVELOPE: GoType = {
  struct: {
    payload: 'string',
    protected: 'string',
    header: {
      struct: {
        [HEADER.timestampSignature]: 'bytes',
        x5c: { array: 'bytes' },
        [HEADER.signingAgent]: 'string',
      },
    },
    signature: 'string',
  },
};

/** notation-core-go's jwsProtectedHeader (times are `*time.Time`, JSON strings). */
const GO_PROTECTED_HEADER: GoType = {
  struct: {
    alg: 'string',
    cty: 'string',
    crit: { array: 'string' },
    [HEADER.expiry]: 'string',
    [HEADER.signingScheme]: 'string',
    [HEADER.signingTime]: 'string',
    [HEADER.authenticSigningTime]: 'string',
  },
};

/** notation-go's envelope.Payload: `{"targetArtifact": ocispec.Descriptor}`. */
const GO_PAYLOAD: GoType = { struct: { targetArtifact: GO_DESCRIPTOR } };

/** RFC 3339 `date-time`, any offset, optional fraction (Go's time.Time JSON form). */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export function parseRfc3339(value: unknown, what: string): Date {
  const m = typeof value === 'string' ? value.match(RFC3339) : null;
  if (!m) throw new SignatureError('INVALID_HEADER', `${what} is not an RFC 3339 date-time`);
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const base = Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!);
  const check = new Date(base);
  // Date.UTC rolls over out-of-range fields; a real RFC 3339 time round-trips.
  if (
    check.getUTCMonth() !== +mo! - 1 ||
    check.getUTCDate() !== +d! ||
    check.getUTCHours() !== +h! ||
    check.getUTCMinutes() !== +mi! ||
    check.getUTCSeconds() !== +s!
  ) {
    throw new SignatureError('INVALID_HEADER', `${what} is not a valid date-time`);
  }
  let offsetMinutes = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone!.startsWith('-') ? -1 : 1;
    const [oh, om] = zone!.slice(1).split(':').map(Number);
    if (oh! > 23 || om! > 59)
      throw new SignatureError('INVALID_HEADER', `${what} has an invalid zone offset`);
    offsetMinutes = sign * (oh! * 60 + om!);
  }
  const ms = frac ? Math.floor(Number(`0${frac}`) * 1000) : 0;
  return new Date(base - offsetMinutes * 60_000 + ms);
}

const RFC3339_EARLIEST = Date.parse('0000-01-01T00:00:00Z');
const RFC3339_LATEST = Date.parse('9999-12-31T23:59:59Z');

/** `2026-11-22T14:30:31Z`: whole seconds, UTC, as notation writes (after truncation). */
export function formatRfc3339(date: Date): string {
  return new Date(Math.floor(date.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** JSON with object keys sorted, as Go's encoding of maps produces (golang-jwt marshals the payload from a map). */
function sortedJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(sortedJson).join(',')}]`;
  if (isObject(value)) {
    const keys = Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${sortedJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** notation's `SanitizeTargetArtifact`: only mediaType, digest, size and (non-empty) annotations are signed. */
export function sanitizeTarget(target: Descriptor): Descriptor {
  const out: Descriptor = { mediaType: target.mediaType, digest: target.digest, size: target.size };
  if (target.annotations && Object.keys(target.annotations).length > 0)
    out.annotations = { ...target.annotations };
  return out;
}

/** The payload bytes notation would sign for `target`. */
export function encodePayload(target: Descriptor): Buffer {
  return Buffer.from(sortedJson({ targetArtifact: sanitizeTarget(target) }), 'utf8');
}

// ---------------------------------------------------------------------------------------------------------
// Signature primitives

function signBytes(alg: JwsAlgorithm, key: KeyObject, data: Buffer): Buffer {
  const { type, hash } = JWS_ALGORITHMS[alg];
  return type === 'rsa'
    ? sign(hash, data, {
        key,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
      })
    : sign(hash, data, { key, dsaEncoding: 'ieee-p1363' });
}

/** golang-jwt's verification: the key family and size must fit `alg`; PSS salt length is auto-detected. */
function verifyBytes(alg: JwsAlgorithm, key: KeyObject, data: Buffer, signature: Buffer): boolean {
  const { type, hash, size } = JWS_ALGORITHMS[alg];
  if (type === 'rsa') {
    if (key.asymmetricKeyType !== 'rsa') return false;
    return verify(
      hash,
      data,
      { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
      signature,
    );
  }
  if (key.asymmetricKeyType !== 'ec') return false;
  let spec: ReturnType<typeof keySpecOf>;
  try {
    spec = keySpecOf(key);
  } catch {
    return false;
  }
  // golang-jwt: the curve must be the alg's curve and the signature exactly 2 × the key byte size (raw r‖s).
  if (spec.size !== size || signature.length !== 2 * Math.ceil(size / 8)) return false;
  return verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
}

// ---------------------------------------------------------------------------------------------------------
// Sign

/** Produces a JWS envelope `notation verify` accepts. */
export function signJwsEnvelope(options: SignJwsOptions): Buffer {
  const privateKey = loadPrivateKey(options.privateKeyPem);
  const chain = parseCertificates(
    typeof options.certificateChainPem === 'string'
      ? options.certificateChainPem
      : options.certificateChainPem.toString('latin1'),
  );
  if (chain.length === 0) throw new SignatureError('INVALID_CERTIFICATE_CHAIN', 'certificate chain is empty');
  const leaf = chain[0]!;
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new SignatureError('INVALID_KEY', 'the private key does not match the leaf certificate');
  }
  const spec = keySpecOf(leaf.publicKey);
  const signingTime = new Date(Math.floor((options.signingTime ?? new Date()).getTime() / 1000) * 1000);
  const expiry = options.expiry ? new Date(Math.floor(options.expiry.getTime() / 1000) * 1000) : undefined;
  for (const [what, time] of [
    ['signing time', signingTime],
    ['expiry', expiry],
  ] as const) {
    // RFC 3339 (and Go's time parser, notation's) take four-digit years only.
    if (time && !(time.getTime() >= RFC3339_EARLIEST && time.getTime() <= RFC3339_LATEST)) {
      throw new SignatureError('INVALID_HEADER', `the ${what} must fall in the years 0000 to 9999`);
    }
  }
  if (expiry && expiry <= signingTime) {
    throw new SignatureError('INVALID_HEADER', 'expiry cannot be equal or before the signing time');
  }
  // notation refuses to sign with a chain it would refuse to verify.
  validateCodeSigningChain(chain, signingTime);
  const target = options.target;
  if (
    typeof target?.mediaType !== 'string' ||
    typeof target.digest !== 'string' ||
    !Number.isSafeInteger(target.size) ||
    target.size < 0
  ) {
    throw new SignatureError(
      'INVALID_PAYLOAD',
      'target must be a descriptor with mediaType, digest and size',
    );
  }

  const protectedHeader: Record<string, unknown> = {
    alg: spec.alg,
    crit: expiry ? [HEADER.signingScheme, HEADER.expiry] : [HEADER.signingScheme],
    cty: NOTARY_PAYLOAD_MEDIA_TYPE,
    [HEADER.signingScheme]: SIGNING_SCHEME_X509,
    [HEADER.signingTime]: formatRfc3339(signingTime),
  };
  if (expiry) protectedHeader[HEADER.expiry] = formatRfc3339(expiry);
  const protectedB64 = Buffer.from(sortedJson(protectedHeader), 'utf8').toString('base64url');
  const payloadB64 = encodePayload(target).toString('base64url');
  const signature = signBytes(spec.alg, privateKey, Buffer.from(`${protectedB64}.${payloadB64}`, 'ascii'));
  // Member order follows notation-core-go's jwsEnvelope struct.
  const envelope = {
    payload: payloadB64,
    protected: protectedB64,
    header: {
      x5c: chain.map((c) => c.raw.toString('base64')),
      [HEADER.signingAgent]: options.signingAgent ?? DEFAULT_SIGNING_AGENT,
    },
    signature: signature.toString('base64url'),
  };
  return Buffer.from(JSON.stringify(envelope), 'utf8');
}

// ---------------------------------------------------------------------------------------------------------
// Parse + verify

function malformed(message: string): never {
  throw new SignatureError('MALFORMED_ENVELOPE', message);
}

function parseTargetArtifact(payload: Record<string, unknown>): Descriptor {
  const t = payload.targetArtifact;
  if (!isObject(t)) throw new SignatureError('INVALID_PAYLOAD', 'payload has no targetArtifact object');
  const { mediaType, digest, size, annotations } = t;
  if (typeof mediaType !== 'string' || typeof digest !== 'string') {
    throw new SignatureError('INVALID_PAYLOAD', 'targetArtifact needs string mediaType and digest');
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new SignatureError('INVALID_PAYLOAD', 'targetArtifact size must be a non-negative integer');
  }
  const out: Descriptor = { mediaType, digest, size };
  if (annotations !== undefined && annotations !== null) {
    if (!isObject(annotations) || Object.values(annotations).some((v) => typeof v !== 'string')) {
      throw new SignatureError('INVALID_PAYLOAD', 'targetArtifact annotations must be an object of strings');
    }
    out.annotations = annotations as Record<string, string>;
  }
  return out;
}

/** A time header: JSON null reads as absent, as with Go's `*time.Time`. */
function optionalTime(header: Record<string, unknown>, key: string): Date | undefined {
  const v = header[key];
  return v === undefined || v === null ? undefined : parseRfc3339(v, `"${key}" header`);
}

function optionalString(header: Record<string, unknown>, key: string): string | undefined {
  const v = header[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new SignatureError('INVALID_HEADER', `"${key}" header must be a string`);
  return v;
}

/**
 * Parses a JWS envelope and verifies it the way notation's integrity step does: structure, signature with
 * the x5c leaf key, protected headers and `crit`, payload content type, the certificate chain's shape and
 * profile, and `alg` against the leaf key. Throws SignatureError naming the failed rule.
 */
export function parseJwsEnvelope(bytes: Uint8Array): ParsedJwsEnvelope {
  const env = parseJsonObject(Buffer.from(bytes), 'signature envelope', 'MALFORMED_ENVELOPE', GO_ENVELOPE);
  if ('signatures' in env)
    malformed('general JWS JSON serialization is not supported; expected the flattened form');
  const header = env.header;
  if (header !== undefined && !isObject(header)) malformed('unprotected header must be a JSON object');
  const x5c = header?.x5c;
  if (x5c !== undefined && x5c !== null && !Array.isArray(x5c)) malformed('x5c must be an array');
  if (!Array.isArray(x5c) || x5c.length === 0) malformed('certificate chain is not present');
  const chainDer = x5c.map((c, i) => decodeB64Std(c, `x5c[${i}]`));
  let chain: X509Certificate[];
  try {
    chain = chainDer
      .map((der) => parseCertificates(der))
      .map((certs) => {
        if (certs.length !== 1) throw new Error('x5c entry must hold exactly one certificate');
        return certs[0]!;
      });
  } catch (err) {
    throw new SignatureError('MALFORMED_ENVELOPE', `malformed certificate in x5c: ${(err as Error).message}`);
  }
  const leaf = chain[0]!;

  // golang-jwt: compact form of the stored strings, header and claims decoded before the signature.
  const protectedBytes = decodeB64Url(env.protected, 'protected header');
  const payloadBytes = decodeB64Url(env.payload, 'payload');
  const signature = decodeB64Url(env.signature, 'signature');
  const protectedHeader = parseJsonObject(
    protectedBytes,
    'protected header',
    'MALFORMED_ENVELOPE',
    GO_PROTECTED_HEADER,
  );
  const payload = parseJsonObject(payloadBytes, 'payload', 'INVALID_PAYLOAD', GO_PAYLOAD);
  const algValue = protectedHeader.alg;
  if (typeof algValue !== 'string') {
    throw new SignatureError('UNSUPPORTED_ALGORITHM', 'signing method (alg) is unspecified');
  }
  if (!Object.hasOwn(JWS_ALGORITHMS, algValue)) {
    throw new SignatureError('UNSUPPORTED_ALGORITHM', `signing method ${algValue} is invalid`);
  }
  const alg = algValue as JwsAlgorithm;
  if (signature.length === 0) throw new SignatureError('INVALID_SIGNATURE', 'signature is empty');
  const signingInput = Buffer.from(`${env.protected}.${env.payload}`, 'ascii');
  if (!verifyBytes(alg, leaf.publicKey, signingInput, signature)) {
    throw new SignatureError(
      'INVALID_SIGNATURE',
      'signature is invalid: it does not verify with the x5c leaf key',
    );
  }

  // notation-core-go parseProtectedHeaders + validateProtectedHeaders.
  const cty = optionalString(protectedHeader, 'cty');
  const scheme = optionalString(protectedHeader, HEADER.signingScheme);
  const signingTime = optionalTime(protectedHeader, HEADER.signingTime);
  const authenticSigningTime = optionalTime(protectedHeader, HEADER.authenticSigningTime);
  const expiry = optionalTime(protectedHeader, HEADER.expiry);
  const critValue = protectedHeader.crit;
  if (
    critValue !== undefined &&
    critValue !== null &&
    (!Array.isArray(critValue) || critValue.some((c) => typeof c !== 'string'))
  ) {
    throw new SignatureError('INVALID_HEADER', '"crit" header must be an array of strings');
  }
  const crit = (critValue ?? []) as string[];
  const extended = Object.keys(protectedHeader).filter((k) => !KNOWN_PROTECTED.has(k));

  if (scheme === SIGNING_SCHEME_X509) {
    if (authenticSigningTime) {
      throw new SignatureError(
        'INVALID_HEADER',
        `"${HEADER.authenticSigningTime}" header must not be present for notary.x509 signing scheme`,
      );
    }
  } else if (scheme === SIGNING_SCHEME_SIGNING_AUTHORITY) {
    if (signingTime) {
      throw new SignatureError(
        'INVALID_HEADER',
        `"${HEADER.signingTime}" header must not be present for notary.x509.signingAuthority signing scheme`,
      );
    }
    if (!authenticSigningTime) {
      throw new SignatureError(
        'INVALID_HEADER',
        `"${HEADER.authenticSigningTime}" header must be present for notary.x509.signingAuthority signing scheme`,
      );
    }
  } else {
    throw new SignatureError('INVALID_HEADER', `unsupported signingScheme: ${JSON.stringify(scheme ?? '')}`);
  }

  // validateCriticalHeaders: non-empty; the required ones listed; every other listed key must be an extended
  // attribute that is present (so listing a typed header like signingTime, or a duplicate, is an error).
  if (crit.length === 0) throw new SignatureError('INVALID_HEADER', 'missing "crit" header');
  const mustBeCritical = new Set<string>([HEADER.signingScheme]);
  if (expiry) mustBeCritical.add(HEADER.expiry);
  if (scheme === SIGNING_SCHEME_SIGNING_AUTHORITY) mustBeCritical.add(HEADER.authenticSigningTime);
  for (const key of crit) {
    if (mustBeCritical.has(key)) mustBeCritical.delete(key);
    else if (!extended.includes(key)) {
      throw new SignatureError('INVALID_HEADER', `"${key}" header is marked critical but not present`);
    }
  }
  if (mustBeCritical.size > 0) {
    throw new SignatureError(
      'INVALID_HEADER',
      `these required headers are not marked as critical: ${[...mustBeCritical].join(', ')}`,
    );
  }
  // ⚠ Like notation v1.3.2 (checked against the binary), other critical extended attributes are accepted and
  // left to the caller (see `extendedAttributes`); a verification plugin, critical or not, fails, since
  // notation then needs that plugin (or rejects a non-critical one) and we run none.
  if (extended.includes(HEADER.verificationPlugin)) {
    throw new SignatureError(
      'INVALID_HEADER',
      crit.includes(HEADER.verificationPlugin)
        ? `the signature requires verification plugin ${JSON.stringify(protectedHeader[HEADER.verificationPlugin])}, and plugins are not supported`
        : `${HEADER.verificationPlugin} is not a critical Extended attribute`,
    );
  }

  const effectiveSigningTime = scheme === SIGNING_SCHEME_X509 ? signingTime : authenticSigningTime;
  if (!effectiveSigningTime) throw new SignatureError('INVALID_HEADER', 'signing-time not present');
  if (expiry && expiry <= effectiveSigningTime) {
    throw new SignatureError('INVALID_HEADER', 'expiry cannot be equal or before the signing time');
  }
  // The chain's shape and profile, without the signing time: notation's verifier passes none (notation-core-go
  // validateSignerInfo), as the spec's integrity step has none. A notary.x509 signing time is the signer's
  // own claim, proving nothing; the chain must be valid *now* (authenticTimestamp), and a
  // signingAuthority's authentic signing time must fall inside it (also authenticTimestamp, verify.ts).
  validateCodeSigningChain(chain);
  const spec = keySpecOf(leaf.publicKey);
  if (spec.alg !== alg) {
    throw new SignatureError(
      'ALGORITHM_MISMATCH',
      `mismatch between signature algorithm derived from signing certificate (${spec.alg}) and signing algorithm specified (${alg})`,
    );
  }
  if (cty !== NOTARY_PAYLOAD_MEDIA_TYPE) {
    throw new SignatureError(
      'INVALID_PAYLOAD',
      `payload content type ${JSON.stringify(cty ?? '')} not supported`,
    );
  }

  const signingAgent = header && optionalHeaderString(header, HEADER.signingAgent);
  const tsValue = header?.[HEADER.timestampSignature];
  const timestampSignature =
    tsValue === undefined || tsValue === null || tsValue === ''
      ? undefined
      : decodeB64Std(tsValue, HEADER.timestampSignature);

  const result: ParsedJwsEnvelope = {
    payload: { targetArtifact: parseTargetArtifact(payload) },
    payloadBytes,
    contentType: cty,
    certificateChain: chain,
    signingTime: effectiveSigningTime,
    signingScheme: scheme,
    alg,
    extendedAttributes: extended.map((key) => ({
      key,
      value: protectedHeader[key],
      critical: crit.includes(key),
    })),
  };
  if (expiry) result.expiry = expiry;
  if (signingAgent) result.signingAgent = signingAgent;
  if (timestampSignature) result.timestampSignature = timestampSignature;
  return result;
}

function optionalHeaderString(header: Record<string, unknown>, key: string): string | undefined {
  const v = header[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') malformed(`"${key}" must be a string`);
  return v;
}
