/**
 * The one error type of the signing library. `code` says which rule failed so callers (and tests) can act on
 * the reason without matching message text; the message mirrors notation's wording where that helps users
 * compare the two tools' output.
 */
export type SignatureErrorCode =
  /** The envelope is not the JSON/base64 structure the JWS envelope spec requires. */
  | 'MALFORMED_ENVELOPE'
  /** A protected header is missing, has the wrong type, or breaks the `crit` rules. */
  | 'INVALID_HEADER'
  /** `alg` is not one notation supports, or does not fit the leaf certificate's key. */
  | 'UNSUPPORTED_ALGORITHM'
  | 'ALGORITHM_MISMATCH'
  /** The cryptographic signature does not verify. */
  | 'INVALID_SIGNATURE'
  /** The payload is not a Notary Project payload or does not describe the expected target. */
  | 'INVALID_PAYLOAD'
  /** The x5c chain or one of its certificates breaks the Notary Project certificate requirements. */
  | 'INVALID_CERTIFICATE_CHAIN'
  /** Key material the library cannot use (unsupported type/size, key does not match certificate). */
  | 'INVALID_KEY'
  | 'TRUST_STORE'
  | 'TRUST_POLICY'
  | 'NO_APPLICABLE_POLICY';

export class SignatureError extends Error {
  readonly code: SignatureErrorCode;

  constructor(code: SignatureErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SignatureError';
    this.code = code;
  }
}
