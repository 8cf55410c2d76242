/**
 * A notation trust policy document (`trustpolicy.json`) with one statement at level `strict`, as JSON
 * text: what the signing tests give `tether verify`, `discover --verify` and `notation verify`.
 */
export function strictTrustPolicy(statement: {
  name: string;
  registryScopes: string[];
  trustStores: string[];
  trustedIdentities: string[];
}): string {
  return JSON.stringify({
    version: '1.0',
    trustPolicies: [
      {
        name: statement.name,
        registryScopes: statement.registryScopes,
        signatureVerification: { level: 'strict' },
        trustStores: statement.trustStores,
        trustedIdentities: statement.trustedIdentities,
      },
    ],
  });
}
