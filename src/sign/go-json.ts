/**
 * JSON that means the same to Tether as to notation. notation decodes envelopes, payloads, protected headers,
 * signature manifests and trust policies with Go's encoding/json into structs, and that decoder
 *   - matches object keys to struct fields case-insensitively (Unicode simple folding: `Digest`, `DIGEST`,
 *     `ſize` and `\u212aey` all count), preferring no exact match;
 *   - lets the last of several matching keys win, duplicates included;
 *   - fails the whole document on a value of the wrong type for a field (`"size": 1.0`, `"urls": 5`), even
 *     in fields nobody reads afterwards;
 *   - turns an unpaired UTF-16 surrogate escape (`"\ud800"`) into U+FFFD.
 * Reading such JSON by exact key in JS can therefore see another document than notation does (another
 * digest, another expiry). Rather than emulate all of it, Tether refuses what could be read two ways:
 * `parseGoJson` rejects duplicate keys at any depth, unpaired surrogate escapes and a byte order mark, and
 * `checkGoShape` rejects, in the objects Go decodes into structs, any key that is a case variant of a field
 * name, and any field value Go would fail to decode. What passes both has exactly one reading, the same in
 * Go and in JS. (Refusing is stricter than notation, which accepts, say, a duplicate annotation key; no
 * notation-produced JSON has any of these.)
 */

import { goFieldMatcher } from '../oci/go-fold.ts';
import { decodeStrictUtf8 } from '../oci/utf8.ts';

export class GoJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GoJsonError';
  }
}

/** The literal text of every number, by container and key, for the integer checks Go makes. */
const numberLiterals = new WeakMap<object, Map<string, string>>();

const MAX_DEPTH = 1000;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

class Parser {
  i = 0;
  readonly s: string;
  constructor(s: string) {
    this.s = s;
  }

  fail(what: string): never {
    throw new GoJsonError(`${what} at offset ${this.i}`);
  }

  ws(): void {
    for (;;) {
      const c = this.s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++;
      else return;
    }
  }

  string(): string {
    STRING.lastIndex = this.i;
    const m = STRING.exec(this.s);
    if (!m) this.fail('invalid JSON string');
    this.i += m[0].length;
    const value = JSON.parse(m[0]) as string;
    if (UNPAIRED_SURROGATE.test(value)) {
      this.fail(`string ${m[0]} holds an unpaired UTF-16 surrogate escape, which Go reads as U+FFFD`);
    }
    return value;
  }

  value(depth: number, container?: object, key?: string): unknown {
    if (depth > MAX_DEPTH) this.fail('JSON nested too deeply');
    this.ws();
    const c = this.s[this.i];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    for (const [word, value] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return value;
      }
    }
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.s);
    if (!m) this.fail('invalid JSON value');
    this.i += m[0].length;
    if (container && key !== undefined) {
      const literals = numberLiterals.get(container) ?? new Map<string, string>();
      numberLiterals.set(container, literals);
      literals.set(key, m[0]);
    }
    return Number(m[0]);
  }

  object(depth: number): Record<string, unknown> {
    this.i++;
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail('expected an object key');
      const key = this.string();
      if (seen.has(key)) {
        throw new GoJsonError(
          `duplicate key ${JSON.stringify(key)} (Go's decoder keeps the last one, a JS reader may keep another)`,
        );
      }
      seen.add(key);
      this.ws();
      if (this.s[this.i] !== ':') this.fail("expected ':'");
      this.i++;
      // defineProperty: a `__proto__` key stays an ordinary own property, as with JSON.parse.
      Object.defineProperty(out, key, {
        value: this.value(depth + 1, out, key),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.ws();
      const next = this.s[this.i++];
      if (next === '}') return out;
      if (next !== ',') this.fail("expected ',' or '}'");
    }
  }

  array(depth: number): unknown[] {
    this.i++;
    const out: unknown[] = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1, out, String(out.length)));
      this.ws();
      const next = this.s[this.i++];
      if (next === ']') return out;
      if (next !== ',') this.fail("expected ',' or ']'");
    }
  }
}

/**
 * Parses UTF-8 JSON text strictly (see the module comment). Throws GoJsonError. A leading byte order mark
 * is an error, as in Go (TextDecoder would silently drop it).
 */
export function parseGoJson(bytes: Uint8Array): unknown {
  const text = decodeStrictUtf8(bytes);
  if (text === undefined) throw new GoJsonError('not valid UTF-8');
  const parser = new Parser(text);
  const value = parser.value(0);
  parser.ws();
  if (parser.i !== text.length) parser.fail('unexpected data after the JSON value');
  return value;
}

/** The Go types of the struct fields notation decodes into. `any` is `interface{}`. */
export type GoType =
  | 'string'
  | 'int'
  | 'bytes'
  | 'any'
  | { array: GoType }
  | { map: GoType }
  | { struct: Record<string, GoType> };

/** Each struct type's field matcher, built once per type rather than once per object checked. */
const fieldMatchers = new WeakMap<Record<string, GoType>, (key: string) => string | undefined>();

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const B64STD = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function typeName(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}

function check(value: unknown, type: GoType, path: string, container?: object, key?: string): void {
  // Go leaves a field untouched for a JSON null, whatever its type.
  if (value === null || type === 'any') return;
  const wrong = (want: string): never => {
    throw new GoJsonError(`${path} must be ${want}, not ${typeName(value)} (Go fails to decode it)`);
  };
  if (type === 'string') {
    if (typeof value !== 'string') wrong('a string');
  } else if (type === 'int') {
    const literal = container && key !== undefined ? numberLiterals.get(container)?.get(key) : undefined;
    if (typeof value !== 'number' || literal === undefined) wrong('an integer');
    if (
      !/^-?(?:0|[1-9][0-9]*)$/.test(literal!) ||
      BigInt(literal!) < INT64_MIN ||
      BigInt(literal!) > INT64_MAX
    ) {
      throw new GoJsonError(
        `${path} must be an integer literal within int64, not ${literal} (Go fails to decode it)`,
      );
    }
  } else if (type === 'bytes') {
    if (typeof value !== 'string' || !B64STD.test(value.replace(/[\r\n]/g, ''))) {
      wrong('a standard padded base64 string');
    }
  } else if ('array' in type) {
    if (!Array.isArray(value)) wrong('an array');
    (value as unknown[]).forEach((v, i) => {
      check(v, type.array, `${path}[${i}]`, value as object, String(i));
    });
  } else if ('map' in type) {
    if (typeof value !== 'object' || Array.isArray(value)) wrong('an object');
    for (const [k, v] of Object.entries(value as object)) {
      check(v, type.map, `${path}[${JSON.stringify(k)}]`, value as object, k);
    }
  } else {
    if (typeof value !== 'object' || Array.isArray(value)) wrong('an object');
    const fields = type.struct;
    let fieldFor = fieldMatchers.get(fields);
    if (!fieldFor) {
      fieldFor = goFieldMatcher(Object.keys(fields));
      fieldMatchers.set(fields, fieldFor);
    }
    for (const [k, v] of Object.entries(value as object)) {
      const field = fieldFor(k);
      if (field === undefined) continue; // unknown keys are ignored by Go too
      if (field !== k) {
        throw new GoJsonError(
          `${path} has the key ${JSON.stringify(k)}, which differs from the field ${JSON.stringify(field)} only in case: notation (Go's encoding/json) would read it as ${JSON.stringify(field)}`,
        );
      }
      check(v, fields[field]!, path === '' ? k : `${path}.${k}`, value as object, k);
    }
  }
}

/**
 * Throws GoJsonError unless `value` (from `parseGoJson`) decodes into a Go value of `type` exactly as a JS
 * reader sees it: no key that is only a case variant of a field name, no value Go would refuse. `path`
 * names the value in messages.
 */
export function checkGoShape(value: unknown, type: GoType, path: string): void {
  check(value, type, path);
}

/** OCI descriptor (image-spec v1.1 `ocispec.Descriptor`) as Go decodes it. */
export const GO_DESCRIPTOR: GoType = {
  struct: {
    mediaType: 'string',
    digest: 'string',
    size: 'int',
    urls: { array: 'string' },
    annotations: { map: 'string' },
    data: 'bytes',
    platform: {
      struct: {
        architecture: 'string',
        os: 'string',
        'os.version': 'string',
        'os.features': { array: 'string' },
        variant: 'string',
      },
    },
    artifactType: 'string',
  },
};
