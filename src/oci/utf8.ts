/**
 * Strict UTF-8 decoding for JSON that Go programs also read (manifests, signature envelopes).
 *
 * `fatal`: invalid UTF-8 is an error, not U+FFFD, because Go's encoding/json would read replaced bytes
 * differently. `ignoreBOM`: a leading byte order mark is kept in the text rather than dropped, so the
 * caller sees it and refuses it, as Go does. One decoder is shared: decoding without `stream` keeps no
 * state between calls, and constructing one per manifest PUT is needless work on the hot path.
 */
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes `bytes` as UTF-8, keeping any byte order mark. Returns undefined for invalid UTF-8. */
export function decodeStrictUtf8(bytes: Uint8Array): string | undefined {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return undefined;
  }
}
