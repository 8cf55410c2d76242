import { errors } from './errors.ts';

/**
 * A pass over a manifest's JSON text before `JSON.parse`, refusing what would cost the event loop
 * seconds or what another parser would read differently (400 MANIFEST_INVALID):
 *
 * - Nesting deeper than MAX_DEPTH, or more than MAX_CONTAINERS objects and arrays. JSON.parse builds
 *   every one of them on the event loop: 4 MiB of `[` took 1.5 s, 4 MiB of `{},` 1.8 s, while a real
 *   4 MiB manifest (44 000 layer descriptors) takes under 0.1 s. Go's encoding/json stops at depth 10 000.
 * - More than MAX_MEMBERS members in one object (annotations are the only open-ended map).
 * - A member name twice in one object. JSON.parse keeps the last; a first-wins or strict parser (Go's is
 *   last-wins, serde's refuses) would validate, or serve, something else than Tether stored.
 * - `size` or `schemaVersion` written as anything but an integer (`10.0`, `1e1`): the same number to
 *   JSON.parse, a decoding error to Go clients, which read them into integers.
 *
 * The text is not validated as JSON here (JSON.parse does that after): on anything malformed the scan
 * stops and leaves the verdict to it. Strings are skipped with `indexOf`, so the cost is in the
 * structure, not in the digests and media types that make up most of a manifest.
 */
export const MAX_DEPTH = 64;
export const MAX_CONTAINERS = 100_000;
/** Members of one object (an annotation map of 290 000 keys cost 0.5 s). */
export const MAX_MEMBERS = 10_000;
const INTEGER_MEMBERS = new Set(['size', 'schemaVersion']);

interface Frame {
  /** Member names seen so far; undefined for an array. */
  names: Set<string> | undefined;
  /** An object expecting a member name next. */
  expectName: boolean;
  /** The member whose value comes next. */
  member: string | undefined;
}

export function scanJson(text: string): void {
  const stack: Frame[] = [];
  let containers = 0;
  const length = text.length;
  let i = 0;
  while (i < length) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const end = stringEnd(text, i);
      if (end < 0) return;
      const top = stack[stack.length - 1];
      if (top?.names !== undefined && top.expectName) {
        const raw = text.slice(i + 1, end);
        let name: string;
        try {
          name = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
        } catch {
          return;
        }
        if (top.names.has(name)) {
          throw errors.manifestInvalid('a member name appears twice in one object', {
            name: name.slice(0, 100),
          });
        }
        top.names.add(name);
        if (top.names.size > MAX_MEMBERS) {
          throw errors.manifestInvalid(`an object of the manifest has more than ${MAX_MEMBERS} members`);
        }
        top.member = name;
        top.expectName = false;
      }
      i = end + 1;
      continue;
    }
    switch (c) {
      case 0x7b /* { */:
      case 0x5b /* [ */:
        if (stack.length >= MAX_DEPTH) {
          throw errors.manifestInvalid(`manifest JSON is nested deeper than ${MAX_DEPTH} levels`);
        }
        if (++containers > MAX_CONTAINERS) {
          throw errors.manifestInvalid(`manifest JSON has more than ${MAX_CONTAINERS} objects and arrays`);
        }
        stack.push(
          c === 0x7b
            ? { names: new Set(), expectName: true, member: undefined }
            : { names: undefined, expectName: false, member: undefined },
        );
        break;
      case 0x7d /* } */:
      case 0x5d /* ] */:
        if (stack.pop() === undefined) return;
        break;
      case 0x2c /* , */:
        {
          const top = stack[stack.length - 1];
          if (top?.names !== undefined) {
            top.expectName = true;
            top.member = undefined;
          }
          break;
        }
      default:
        if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
          let end = i + 1;
          while (end < length && isNumberChar(text.charCodeAt(end))) end++;
          const top = stack[stack.length - 1];
          if (top?.member !== undefined && INTEGER_MEMBERS.has(top.member)) {
            const literal = text.slice(i, end);
            if (!/^-?(?:0|[1-9]\d*)$/.test(literal)) {
              throw errors.manifestInvalid(`${top.member} must be written as an integer`, {
                [top.member]: literal.slice(0, 50),
              });
            }
          }
          i = end;
          continue;
        }
    }
    i++;
  }
}

/** The index of the quote that ends the string starting at `start`, or -1 (unterminated). */
function stringEnd(text: string, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = text.indexOf('"', from);
    if (quote < 0) return -1;
    // Escaped when preceded by an odd number of backslashes.
    let backslashes = 0;
    for (let b = quote - 1; b > start && text.charCodeAt(b) === 0x5c; b--) backslashes++;
    if (backslashes % 2 === 0) return quote;
    from = quote + 1;
  }
}

function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
}
