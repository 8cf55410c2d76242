/**
 * Go's case folding as encoding/json applies it when it matches object keys to ASCII field names: ASCII
 * case, plus ſ (U+017F) → s and the Kelvin sign (U+212A) → k, the two non-ASCII letters that fold to ASCII
 * ones. Two keys with the same fold are the same field to a Go client (containerd, go-containerregistry,
 * Distribution, notation), the last one winning.
 */
export function goFoldKey(key: string): string {
  return key
    .replace(/[A-Z]/g, (c) => c.toLowerCase())
    .replace(/\u017f/g, 's')
    .replace(/\u212a/g, 'k');
}
