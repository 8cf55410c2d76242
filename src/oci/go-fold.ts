/**
 * Go's case folding as encoding/json applies it when it matches object keys to ASCII field names: ASCII
 * case, plus ſ (U+017F) → s and the Kelvin sign (U+212A) → k, the two non-ASCII letters that fold to ASCII
 * ones. Two keys with the same fold are the same field to a Go client (containerd, go-containerregistry,
 * Distribution, notation), the last one winning.
 */
function goFoldKey(key: string): string {
  return key
    .replace(/[A-Z]/g, (c) => c.toLowerCase())
    .replace(/\u017f/g, 's')
    .replace(/\u212a/g, 'k');
}

/**
 * For a Go struct's JSON field names: which field a Go decoder fills from an object key, if any (the one
 * spelled exactly so, else the one whose fold is the key's). A key it maps to a field spelled otherwise
 * is a case variant, which a JS reader does not see as that field.
 */
export function goFieldMatcher(fields: Iterable<string>): (key: string) => string | undefined {
  const exact = new Set(fields);
  const byFold = new Map([...exact].map((field) => [goFoldKey(field), field]));
  return (key) => (exact.has(key) ? key : byFold.get(goFoldKey(key)));
}
