/**
 * Distinguished names the way notation compares them (notation-go internal/pkix): a DN becomes a map of
 * attribute type → value; it must hold C, ST and O; multi-valued RDNs and repeated attributes are errors; a
 * trusted identity matches when its map is a subset of the leaf subject's map (so order never matters).
 * Parsing follows go-ldap v3 `ParseDN` (RFC 4514 with its quirks: whitespace around types and values trimmed).
 */
import type { X509Certificate } from 'node:crypto';
import { certificateInfo } from './cert-info.ts';
import { decodeDer, decodeString } from './der.ts';

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

/** go-ldap v3 ParseDN, returning RDNs as lists of attributes. */
function parseRfc4514(input: string): RawAttribute[][] {
  const bytes = Buffer.from(input, 'utf8');
  const rdns: RawAttribute[][] = [];
  let rdn: RawAttribute[] = [];
  let buffer: number[] = [];
  let type: string | undefined;
  const take = () => {
    const s = Buffer.from(buffer).toString('utf8').trim();
    buffer = [];
    return s;
  };
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === 0x5c /* \ */) {
      const next = bytes[i + 1];
      if (next === undefined) throw new DistinguishedNameError('got corrupted escaped character');
      const hex = bytes.subarray(i + 1, i + 3).toString('latin1');
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        buffer.push(Number.parseInt(hex, 16));
        i += 2;
      } else {
        buffer.push(next);
        i += 1;
      }
    } else if (c === 0x3d /* = */ && type === undefined) {
      type = take();
      if (bytes[i + 1] === 0x23 /* # */) {
        // `#hex` is a BER-encoded value: decode it to its string.
        let j = i + 2;
        while (j < bytes.length && /[0-9a-fA-F]/.test(String.fromCharCode(bytes[j]!))) j++;
        const hex = bytes.subarray(i + 2, j).toString('latin1');
        try {
          buffer = [...Buffer.from(decodeString(decodeDer(Buffer.from(hex, 'hex'))), 'utf8')];
        } catch {
          throw new DistinguishedNameError('failed to decode BER encoding');
        }
        i = j - 1;
      }
    } else if (c === 0x2c /* , */ || c === 0x2b /* + */ || c === 0x3b /* ; */) {
      if (!type) throw new DistinguishedNameError('incomplete type, value pair');
      rdn.push({ type, value: take() });
      type = undefined;
      if (c !== 0x2b) {
        rdns.push(rdn);
        rdn = [];
      }
    } else {
      buffer.push(c);
    }
  }
  if (buffer.length > 0 || type !== undefined) {
    if (!type) throw new DistinguishedNameError('DN ended with incomplete type, value pair');
    rdn.push({ type, value: take() });
    rdns.push(rdn);
  }
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
 * whitespace-trimmed because go-ldap trims them.
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
    attrs.map((a) => [{ type: a.type, value: a.value.trim() }]),
    'of the certificate subject',
  );
}

/** True when every attribute of `subset` has the same value in `dn`. */
export function isSubsetDN(subset: DistinguishedName, dn: DistinguishedName): boolean {
  return Object.entries(subset).every(([k, v]) => dn[k] === v);
}
