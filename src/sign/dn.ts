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
import { derPrintableString, derUtf8String } from './der.ts';

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
      // As notation: only a non-empty earlier value is a duplicate (`OU=, OU=x` reads OU=x).
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

/**
 * notation-go's `ParseDistinguishedName`: a DN string (a trusted identity, or a leaf subject as Go prints
 * it) → notation's map. A DN containing `=#` anywhere is refused outright, as notation refuses it: that is
 * how Go prints an attribute it has no short name for (`1.2.840.113549.1.9.1=#0c…`), and how RFC 4514 writes
 * a BER-encoded value.
 */
export function parseDistinguishedName(name: string): DistinguishedName {
  if (name.includes('=#')) {
    throw new DistinguishedNameError(
      `unsupported distinguished name (DN) ${JSON.stringify(name)}: notation does not support x509.subject identities containing "=#"`,
    );
  }
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

/** The attributes Go's pkix.Name parses into named fields (CN, SERIALNUMBER, C, L, ST, STREET, O, OU, POSTALCODE). */
const STANDARD = new Set([
  '2.5.4.3',
  '2.5.4.5',
  '2.5.4.6',
  '2.5.4.7',
  '2.5.4.8',
  '2.5.4.9',
  '2.5.4.10',
  '2.5.4.11',
  '2.5.4.17',
]);

/** encoding/asn1's PrintableString test when it marshals a Go string (no `*`, no `&`). */
const ASN1_PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** Go's `RDNSequence.String()` escaping of one value. */
function goEscape(value: string): string {
  const chars = [...value];
  return chars
    .map((c, k) => {
      const escaped =
        ',+"\\<>;'.includes(c) ||
        (c === ' ' && (k === 0 || k === chars.length - 1)) ||
        (c === '#' && k === 0);
      return escaped ? `\\${c}` : c;
    })
    .join('');
}

/**
 * Go's `cert.Subject.String()`, which notation parses to match trusted identities: attributes Go has no
 * name for come last, as `OID=#<hex DER>`; the standard ones are regrouped as `ToRDNSequence` writes them,
 * each type's values in one RDN (C, ST, L, STREET, POSTALCODE, O, OU), then CN and SERIALNUMBER, of which
 * Go keeps only the last value and drops an empty one; the sequence is printed in reverse, `,`-separated.
 */
export function notationSubjectString(cert: X509Certificate): string {
  const attrs = certificateInfo(cert).subject.flat();
  const rdns: string[][] = [];
  for (const a of attrs) {
    if (STANDARD.has(a.oid)) continue;
    // Go re-marshals the string: PrintableString when it can, else UTF8String.
    const der = ASN1_PRINTABLE.test(a.value) ? derPrintableString(a.value) : derUtf8String(a.value);
    rdns.push([`${a.oid}=#${der.toString('hex')}`]);
  }
  const values = (oid: string) => attrs.filter((a) => a.oid === oid).map((a) => a.value);
  const group = (name: string, list: string[]) => {
    if (list.length > 0) rdns.push(list.map((v) => `${name}=${goEscape(v)}`));
  };
  for (const [oid, name] of [
    ['2.5.4.6', 'C'],
    ['2.5.4.8', 'ST'],
    ['2.5.4.7', 'L'],
    ['2.5.4.9', 'STREET'],
    ['2.5.4.17', 'POSTALCODE'],
    ['2.5.4.10', 'O'],
    ['2.5.4.11', 'OU'],
  ] as const) {
    group(name, values(oid));
  }
  for (const [oid, name] of [
    ['2.5.4.3', 'CN'],
    ['2.5.4.5', 'SERIALNUMBER'],
  ] as const) {
    const last = values(oid).at(-1);
    if (last) group(name, [last]);
  }
  return rdns
    .reverse()
    .map((rdn) => rdn.join('+'))
    .join(',');
}

/**
 * The leaf subject as notation sees it: `notationSubjectString` parsed by `parseDistinguishedName`. So a
 * standard attribute that occurs twice (two OUs) is a multi-valued RDN and an error, a second CN replaces
 * the first, an attribute Go has no name for (emailAddress, UID, title, …) makes the `=#` refusal, and
 * values keep their spaces: Go escapes a leading or trailing one, so `O=Example ` stays `Example ` and
 * matches only an identity that writes the space escaped.
 */
export function certificateSubjectDN(cert: X509Certificate): DistinguishedName {
  return parseDistinguishedName(notationSubjectString(cert));
}

/**
 * notation's `IsSubsetDN`: every attribute of `subset` has the same value in `dn`, an attribute `dn` lacks
 * counting as the empty string (Go's map zero value). So an identity `…, OU=` matches a leaf without OU (or
 * with an empty one), never a leaf with a non-empty OU.
 */
export function isSubsetDN(subset: DistinguishedName, dn: DistinguishedName): boolean {
  return Object.entries(subset).every(([k, v]) => (Object.hasOwn(dn, k) ? dn[k] : '') === v);
}
