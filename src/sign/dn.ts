/**
 * Distinguished names the way notation compares them (notation-go internal/pkix): a DN becomes a map of
 * attribute type → value; it must hold C, ST and O; multi-valued RDNs and repeated attributes are errors; a
 * trusted identity matches when its map is a subset of the leaf subject's map (so order never matters).
 * Parsing is go-ldap v3.4.10 `ParseDN`, the version notation v1.3.2 is built with: RFC 4514 with its quirks.
 * Unescaped spaces around a type or value are dropped; escaped ones (`\ `, `\20`) are part of the value,
 * and values are then compared byte for byte, so `O=Example\ ` is not `O=Example`.
 */
import { isUtf8 } from 'node:buffer';
import type { X509Certificate } from 'node:crypto';
import { certificateInfo } from './cert-info.ts';

export type DistinguishedName = Record<string, string>;

const MANDATORY = ['C', 'ST', 'O'] as const;

export class DistinguishedNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DistinguishedNameError';
  }
}

interface RawAttribute {
  type: string;
  value: string;
}

/**
 * A decoded DN string as a JS string. go-ldap's `\XX` escapes write raw bytes, so a value need not be UTF-8;
 * Go compares the bytes. Valid UTF-8 becomes its text (certificate values always are), anything else a
 * string that starts with a lone surrogate (which decoded UTF-8 never holds) followed by the bytes as
 * Latin-1: equal exactly when the bytes are equal, and never equal to a certificate value.
 */
function bytesToDnString(bytes: Buffer): string {
  return isUtf8(bytes) ? bytes.toString('utf8') : `\udfff${bytes.toString('latin1')}`;
}

/** go-ldap `stripLeadingAndTrailingSpaces`: strings.Trim(" "), then a trailing space written `\ ` comes back. */
function stripSpaces(input: string): string {
  let s = input.replace(/^ +/, '').replace(/ +$/, '');
  if (s.endsWith('\\') && input.endsWith(' ')) s += ' ';
  return s;
}

/** The characters go-ldap unescapes as themselves after a backslash; anything else must be `\XX` hex. */
const ESCAPED_AS_ITSELF = new Set([' ', '"', '#', '+', ',', ';', '<', '=', '>', '\\']);

/** go-ldap v3.4.10 `decodeString`: strip unescaped outer spaces, then unescape, over runes. */
function decodeLdapString(input: string): Buffer {
  const s = [...stripSpaces(input)];
  const out: Buffer[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out.push(Buffer.from(c, 'utf8'));
      continue;
    }
    if (i + 1 >= s.length)
      throw new DistinguishedNameError(`got corrupted escaped character: '${s.join('')}'`);
    const next = s[i + 1]!;
    if (ESCAPED_AS_ITSELF.has(next)) {
      out.push(Buffer.from(next, 'utf8'));
      i++;
      continue;
    }
    if (i + 2 >= s.length) {
      throw new DistinguishedNameError(
        `failed to decode escaped character: encoding/hex: invalid byte: ${next}`,
      );
    }
    const pair = next + s[i + 2]!;
    if (!/^[0-9A-Fa-f]{2}$/.test(pair)) {
      throw new DistinguishedNameError(`failed to decode escaped character: invalid hex escape "\\${pair}"`);
    }
    out.push(Buffer.from([Number.parseInt(pair, 16)]));
    i += 2;
  }
  return Buffer.concat(out);
}

/** Go's unicode.IsSpace, for ParseDN's "blank DN" test (strings.TrimSpace). */
const GO_BLANK = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;

/**
 * go-ldap v3.4.10 `ParseDN` (what notation-go v1.3.2 calls), returning RDNs as lists of attributes. It scans
 * for unescaped `=` (the first one ends the type), `,` `;` (end of RDN) and `+` (next attribute of the RDN);
 * types and values are then unescaped by `decodeLdapString`, which trims only *unescaped* outer spaces.
 * Splitting on ASCII code units of the JS string finds the same positions as Go's byte scan.
 */
function parseRfc4514(input: string): RawAttribute[][] {
  if (GO_BLANK.test(input)) return [];
  const rdns: RawAttribute[][] = [];
  let rdn: RawAttribute[] = [];
  let type = '';
  let escaping = false;
  let start = 0;
  const value = (raw: string) => {
    // notation refuses "=#" before parsing, so a BER `#hex` value never gets here.
    if (raw.startsWith('#')) throw new DistinguishedNameError('BER-encoded (#hex) values are not supported');
    return bytesToDnString(decodeLdapString(raw));
  };
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    if (escaping) escaping = false;
    else if (c === '\\') escaping = true;
    else if (c === '=' && type === '') {
      type = bytesToDnString(decodeLdapString(input.slice(start, i)));
      start = i + 1;
    } else if (c === ',' || c === '+' || c === ';') {
      if (type === '') throw new DistinguishedNameError('incomplete type, value pair');
      rdn.push({ type, value: value(input.slice(start, i)) });
      type = '';
      start = i + 1;
      if (c !== '+') {
        rdns.push(rdn);
        rdn = [];
      }
    }
  }
  if (type === '') throw new DistinguishedNameError('DN ended with incomplete type, value pair');
  rdn.push({ type, value: value(input.slice(start)) });
  rdns.push(rdn);
  return rdns;
}

/** Turns RDNs into notation's map, applying its rules. `label` names the DN in error messages. */
function toMap(rdns: RawAttribute[][], label: string): DistinguishedName {
  // No prototype, so attribute types like `__proto__` or `constructor` are plain keys.
  const map: DistinguishedName = Object.create(null);
  for (const rdn of rdns) {
    if (rdn.length > 1) {
      throw new DistinguishedNameError(
        `distinguished name (DN) ${label} has multi-valued RDN attributes, remove multi-valued RDN attributes as they are not supported`,
      );
    }
    for (const attr of rdn) {
      // stateOrProvinceName may be written `S`; notation treats it as `ST`.
      const type = attr.type === 'S' ? 'ST' : attr.type;
      if (map[type]) {
        throw new DistinguishedNameError(
          `distinguished name (DN) ${label} has duplicate RDN attribute for "${type}", DN can only have unique RDN attributes`,
        );
      }
      map[type] = attr.value;
    }
  }
  for (const field of MANDATORY) {
    if (!map[field]) {
      throw new DistinguishedNameError(
        `distinguished name (DN) ${label} has no mandatory RDN attribute for "${field}", it must contain 'C', 'ST', and 'O' RDN attributes at a minimum`,
      );
    }
  }
  return map;
}

/** Parses a trusted-identity DN (`C=US, ST=WA, O=Example, CN=signer`) under notation's rules. */
export function parseDistinguishedName(name: string): DistinguishedName {
  let rdns: RawAttribute[][];
  try {
    rdns = parseRfc4514(name);
  } catch (err) {
    throw new DistinguishedNameError(
      `distinguished name (DN) "${name}" is not valid, it must contain 'C', 'ST', and 'O' RDN attributes at a minimum, and follow RFC 4514 standard: ${(err as Error).message}`,
    );
  }
  return toMap(rdns, JSON.stringify(name));
}

/**
 * The leaf subject as notation sees it. notation parses Go's `Subject.String()`, which regroups all values
 * of one standard attribute into one RDN and flattens the certificate's own multi-valued RDNs; so in effect
 * any attribute type that occurs twice is an error, and a certificate multi-valued RDN is fine. Values are
 * kept as they are: Go escapes a leading or trailing space, so go-ldap keeps it (`O=Example ` stays
 * `Example `, and matches only an identity that writes the space escaped).
 */
export function certificateSubjectDN(cert: X509Certificate): DistinguishedName {
  const attrs = certificateInfo(cert).subject.flat();
  const seen = new Set<string>();
  for (const a of attrs) {
    if (seen.has(a.type)) {
      throw new DistinguishedNameError(
        `the certificate subject has more than one "${a.type}" attribute, which notation does not support`,
      );
    }
    seen.add(a.type);
  }
  return toMap(
    attrs.map((a) => [{ type: a.type, value: a.value }]),
    'of the certificate subject',
  );
}

/** True when every attribute of `subset` has the same value in `dn`. */
export function isSubsetDN(subset: DistinguishedName, dn: DistinguishedName): boolean {
  return Object.entries(subset).every(([k, v]) => dn[k] === v);
}
