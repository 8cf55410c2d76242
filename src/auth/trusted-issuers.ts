/**
 * External token issuers whose tokens the registry accepts (configuration `auth.token.trustedIssuers`).
 * Kept apart from tokens.ts so reading the configuration does not load the JOSE library.
 */
export interface TrustedIssuer {
  issuer: string;
  jwksFile: string;
  audience?: string;
}

export function parseTrustedIssuers(value: unknown): TrustedIssuer[] {
  if (!Array.isArray(value)) throw new Error('must be a list of {issuer, jwksFile, audience?}');
  return value.map((entry, i) => {
    const { issuer, jwksFile, audience } = (entry ?? {}) as Record<string, unknown>;
    if (typeof issuer !== 'string' || typeof jwksFile !== 'string')
      throw new Error(`entry ${i}: issuer and jwksFile are required`);
    return { issuer, jwksFile, ...(typeof audience === 'string' ? { audience } : {}) };
  });
}
