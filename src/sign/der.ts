/**
 * Minimal ASN.1 DER: enough to write X.509 v3 certificates and to read the few certificate fields that
 * `node:crypto`'s X509Certificate does not expose (extension criticality, key-usage bits, raw names).
 * Encoders return complete TLVs as Buffers so callers compose them like the ASN.1 they mirror.
 */

export const TagClass = { universal: 0, application: 1, context: 2, private: 3 } as const;

const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV with a single-byte identifier (tag numbers up to 30, which is all X.509 needs). */
export function derTlv(identifier: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([identifier]), encodeLength(content.length), content]);
}

export function derBoolean(value: boolean): Buffer {
  return derTlv(TAG.boolean, Buffer.from([value ? 0xff : 0x00]));
}

/** INTEGER from a bigint/number (two's complement, minimal) or from unsigned big-endian magnitude bytes. */
export function derInteger(value: bigint | number | Uint8Array): Buffer {
  let bytes: Buffer;
  if (value instanceof Uint8Array) {
    // Unsigned magnitude: drop redundant leading zeros, then add one back if the top bit would read as a sign.
    let start = 0;
    while (start < value.length - 1 && value[start] === 0) start++;
    bytes = Buffer.from(value.subarray(start));
    if (bytes.length === 0) bytes = Buffer.from([0]);
    if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  } else {
    let n = BigInt(value);
    const out: number[] = [];
    if (n >= 0n) {
      do {
        out.unshift(Number(n & 0xffn));
        n >>= 8n;
      } while (n > 0n);
      if (out[0]! & 0x80) out.unshift(0);
    } else {
      do {
        out.unshift(Number(n & 0xffn));
        n >>= 8n;
      } while (n < -1n || (out[0]! & 0x80) === 0);
    }
    bytes = Buffer.from(out);
  }
  return derTlv(TAG.integer, bytes);
}

export function derBitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (unusedBits < 0 || unusedBits > 7 || (bytes.length === 0 && unusedBits !== 0)) {
    throw new RangeError('invalid BIT STRING unused-bit count');
  }
  return derTlv(TAG.bitString, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/**
 * A named BIT STRING (like KeyUsage) from bit positions, bit 0 being the most significant bit of the first
 * byte. DER requires trailing zero bits to be removed, so the length and unused-bit count follow the highest set bit.
 */
export function derNamedBits(positions: number[]): Buffer {
  if (positions.length === 0) return derBitString(Buffer.alloc(0));
  const highest = Math.max(...positions);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const p of positions) bytes[Math.floor(p / 8)]! |= 0x80 >> (p % 8);
  return derBitString(bytes, 7 - (highest % 8));
}

export function derOctetString(bytes: Uint8Array): Buffer {
  return derTlv(TAG.octetString, bytes);
}

export function derNull(): Buffer {
  return Buffer.from([TAG.null, 0x00]);
}

export function derOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => {
    if (!/^\d+$/.test(a)) throw new RangeError(`invalid OID ${dotted}`);
    return BigInt(a);
  });
  if (arcs.length < 2 || arcs[0]! > 2n || (arcs[0]! < 2n && arcs[1]! > 39n)) {
    throw new RangeError(`invalid OID ${dotted}`);
  }
  const out: number[] = [];
  const values = [arcs[0]! * 40n + arcs[1]!, ...arcs.slice(2)];
  for (const v of values) {
    // Base-128, high bit set on every byte but the last.
    const group: number[] = [Number(v & 0x7fn)];
    for (let n = v >> 7n; n > 0n; n >>= 7n) group.unshift(Number(n & 0x7fn) | 0x80);
    out.push(...group);
  }
  return derTlv(TAG.oid, Buffer.from(out));
}

export function derUtf8String(value: string): Buffer {
  return derTlv(TAG.utf8String, Buffer.from(value, 'utf8'));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export function derPrintableString(value: string): Buffer {
  if (!PRINTABLE.test(value)) throw new RangeError(`not a PrintableString: ${JSON.stringify(value)}`);
  return derTlv(TAG.printableString, Buffer.from(value, 'latin1'));
}

export function derIa5String(value: string): Buffer {
  if (!/^[\x00-\x7f]*$/.test(value)) throw new RangeError('not an IA5String');
  return derTlv(TAG.ia5String, Buffer.from(value, 'latin1'));
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** UTCTime `YYMMDDHHMMSSZ`; only meaningful for 1950..2049. Fractions of a second are dropped. */
export function derUtcTime(date: Date): Buffer {
  const y = date.getUTCFullYear();
  if (y < 1950 || y > 2049) throw new RangeError('UTCTime covers 1950..2049 only');
  const s = `${pad(y % 100)}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}Z`;
  return derTlv(TAG.utcTime, Buffer.from(s, 'latin1'));
}

/** GeneralizedTime `YYYYMMDDHHMMSSZ` without fractions, as RFC 5280 §4.1.2.5.2 requires. */
export function derGeneralizedTime(date: Date): Buffer {
  const s = `${pad(date.getUTCFullYear(), 4)}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}Z`;
  return derTlv(TAG.generalizedTime, Buffer.from(s, 'latin1'));
}

/** X.509 `Time`: RFC 5280 mandates UTCTime through 2049 and GeneralizedTime from 2050 on. */
export function derTime(date: Date): Buffer {
  const y = date.getUTCFullYear();
  return y >= 1950 && y <= 2049 ? derUtcTime(date) : derGeneralizedTime(date);
}

export function derSequence(...items: Uint8Array[]): Buffer {
  return derTlv(TAG.sequence, Buffer.concat(items));
}

/** SET OF: DER orders the elements by their encodings (X.690 §11.6). */
export function derSet(...items: Uint8Array[]): Buffer {
  const sorted = [...items].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return derTlv(TAG.set, Buffer.concat(sorted));
}

/** `[n] EXPLICIT`: a constructed context tag wrapping one complete TLV. */
export function derExplicit(tagNumber: number, inner: Uint8Array): Buffer {
  if (tagNumber > 30) throw new RangeError('high tag numbers are not supported');
  return derTlv(0xa0 | tagNumber, inner);
}

/** `[n] IMPLICIT`: replaces the tag; `constructed` must match the underlying type. */
export function derImplicit(tagNumber: number, content: Uint8Array, constructed = false): Buffer {
  if (tagNumber > 30) throw new RangeError('high tag numbers are not supported');
  return derTlv(0x80 | (constructed ? 0x20 : 0) | tagNumber, content);
}

// ---------------------------------------------------------------------------------------------------------
// Decoding

export interface DerNode {
  /** 0 universal, 1 application, 2 context-specific, 3 private. */
  cls: number;
  constructed: boolean;
  tagNumber: number;
  /** The content octets. */
  content: Buffer;
  /** The whole TLV, so callers can compare or hash exactly what was signed (e.g. the raw issuer Name). */
  raw: Buffer;
  /** Parsed children of a constructed node. */
  children: DerNode[];
}

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

function readNode(buf: Buffer, offset: number, depth: number): { node: DerNode; next: number } {
  if (depth > 64) throw new DerError('DER nesting too deep');
  if (offset + 2 > buf.length) throw new DerError('truncated DER');
  const first = buf[offset]!;
  const cls = first >> 6;
  const constructed = (first & 0x20) !== 0;
  let tagNumber = first & 0x1f;
  let pos = offset + 1;
  if (tagNumber === 0x1f) {
    tagNumber = 0;
    for (;;) {
      if (pos >= buf.length) throw new DerError('truncated DER tag');
      const b = buf[pos++]!;
      tagNumber = tagNumber * 128 + (b & 0x7f);
      if (tagNumber > 0xffffff) throw new DerError('DER tag number too large');
      if ((b & 0x80) === 0) break;
    }
  }
  if (pos >= buf.length) throw new DerError('truncated DER length');
  let length = buf[pos++]!;
  if (length === 0x80) throw new DerError('indefinite lengths are not DER');
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count > 4) throw new DerError('DER length too large');
    if (pos + count > buf.length) throw new DerError('truncated DER length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[pos++]!;
  }
  const end = pos + length;
  if (end > buf.length) throw new DerError('DER value runs past the end of its container');
  const content = buf.subarray(pos, end);
  const children: DerNode[] = [];
  if (constructed) {
    let p = 0;
    while (p < content.length) {
      const child = readNode(content, p, depth + 1);
      children.push(child.node);
      p = child.next;
    }
  }
  return {
    node: { cls, constructed, tagNumber, content, raw: buf.subarray(offset, end), children },
    next: end,
  };
}

/** Decodes exactly one DER value; trailing bytes are an error. */
export function decodeDer(bytes: Uint8Array): DerNode {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { node, next } = readNode(buf, 0, 0);
  if (next !== buf.length) throw new DerError('trailing bytes after DER value');
  return node;
}

/** Decodes a run of concatenated DER values (e.g. several DER certificates in one file). */
export function decodeDerAll(bytes: Uint8Array): DerNode[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: DerNode[] = [];
  let p = 0;
  while (p < buf.length) {
    const { node, next } = readNode(buf, p, 0);
    out.push(node);
    p = next;
  }
  return out;
}

export function isUniversal(node: DerNode, tag: keyof typeof TAG): boolean {
  const id = TAG[tag];
  return node.cls === 0 && node.tagNumber === (id & 0x1f) && node.constructed === ((id & 0x20) !== 0);
}

export function isContext(node: DerNode, tagNumber: number): boolean {
  return node.cls === TagClass.context && node.tagNumber === tagNumber;
}

export function decodeOid(node: DerNode): string {
  if (!isUniversal(node, 'oid') || node.content.length === 0)
    throw new DerError('expected an OBJECT IDENTIFIER');
  const values: bigint[] = [];
  let v = 0n;
  for (let i = 0; i < node.content.length; i++) {
    const b = node.content[i]!;
    v = (v << 7n) | BigInt(b & 0x7f);
    if ((b & 0x80) === 0) {
      values.push(v);
      v = 0n;
    } else if (i === node.content.length - 1) {
      throw new DerError('truncated OBJECT IDENTIFIER');
    }
  }
  const first = values[0]!;
  const head = first < 80n ? [first / 40n, first % 40n] : [2n, first - 80n];
  return [...head, ...values.slice(1)].map(String).join('.');
}

export function decodeBoolean(node: DerNode): boolean {
  if (!isUniversal(node, 'boolean') || node.content.length !== 1) throw new DerError('expected a BOOLEAN');
  return node.content[0] !== 0;
}

export function decodeInteger(node: DerNode): bigint {
  if (!isUniversal(node, 'integer') || node.content.length === 0) throw new DerError('expected an INTEGER');
  let v = 0n;
  for (const b of node.content) v = (v << 8n) | BigInt(b);
  if (node.content[0]! & 0x80) v -= 1n << BigInt(node.content.length * 8);
  return v;
}

/** BIT STRING as `{ bytes, unusedBits }`. */
export function decodeBitString(node: DerNode): { bytes: Buffer; unusedBits: number } {
  if (!isUniversal(node, 'bitString') || node.content.length === 0)
    throw new DerError('expected a BIT STRING');
  const unusedBits = node.content[0]!;
  if (unusedBits > 7) throw new DerError('invalid BIT STRING');
  return { bytes: node.content.subarray(1), unusedBits };
}

/** Named-bit positions set in a BIT STRING (bit 0 = MSB of the first byte). */
export function decodeNamedBits(node: DerNode): Set<number> {
  const { bytes, unusedBits } = decodeBitString(node);
  const set = new Set<number>();
  const total = bytes.length * 8 - unusedBits;
  for (let i = 0; i < total; i++) if (bytes[Math.floor(i / 8)]! & (0x80 >> (i % 8))) set.add(i);
  return set;
}

/** The text of any of the ASN.1 string types X.509 names use. */
export function decodeString(node: DerNode): string {
  if (node.cls !== 0) throw new DerError('expected a string type');
  switch (node.tagNumber) {
    case 0x0c: // UTF8String
      return node.content.toString('utf8');
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x14: // TeletexString (treated as Latin-1, as most decoders do)
    case 0x1a: // VisibleString
      return node.content.toString('latin1');
    case 0x1e: {
      // BMPString: UTF-16BE
      if (node.content.length % 2 !== 0) throw new DerError('invalid BMPString');
      const swapped = Buffer.from(node.content);
      swapped.swap16();
      return swapped.toString('utf16le');
    }
    case 0x1c: {
      // UniversalString: UTF-32BE
      let s = '';
      for (let i = 0; i + 3 < node.content.length; i += 4)
        s += String.fromCodePoint(node.content.readUInt32BE(i));
      return s;
    }
    default:
      throw new DerError(`unsupported string tag ${node.tagNumber}`);
  }
}
