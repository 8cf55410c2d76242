/**
 * The Notary Project's media types: a module without imports, so code that only needs to recognize a
 * signature (`tether discover`) does not load the signing code.
 */
export const JWS_ENVELOPE_MEDIA_TYPE = 'application/jose+json';
export const COSE_ENVELOPE_MEDIA_TYPE = 'application/cose';
export const NOTARY_PAYLOAD_MEDIA_TYPE = 'application/vnd.cncf.notary.payload.v1+json';
/** artifactType / config mediaType of a Notary Project signature manifest. */
export const NOTARY_SIGNATURE_ARTIFACT_TYPE = 'application/vnd.cncf.notary.signature';
