import { ClientError } from './errors.ts';

/**
 * The tar format, as much of it as directory artifacts need (oras packs a pushed directory as a gzipped
 * tar): writing USTAR headers (with a PAX header for what does not fit), and reading USTAR, PAX and GNU
 * archives incrementally. What the entries mean for the file system is `directory-archive.ts`'s job.
 */

const BLOCK = 512;
/** The largest size a USTAR header holds (11 octal digits); larger files get a PAX `size`. */
const MAX_USTAR_SIZE = 0o77777777777;
/** PAX and GNU long-name data is held in memory: a bound, so an archive cannot fill it. */
const MAX_META_BYTES = 1024 * 1024;

/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

export interface TarEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink';
  /** Permission bits. */
  mode: number;
  size: number;
  linkname?: string;
}

/** Zeros from `size` bytes of data up to the next block. */
export function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/**
 * The header of `entry`: one USTAR block, preceded by a PAX extended header when the name or link does
 * not fit USTAR's fields or is not ASCII, or the size is over 8 GiB (as Go's archive/tar, which oras
 * uses, decides). Owner and group are 0 without names and the time is 0: the archive depends only on
 * the entries' names, types, modes, sizes and links.
 */
export function encodeHeader(entry: TarEntry): Buffer {
  const name = Buffer.from(entry.name);
  const link = Buffer.from(entry.linkname ?? '');
  const split = isAscii(entry.name) ? splitName(name) : undefined;
  const pax: [string, string][] = [];
  if (!split) pax.push(['path', entry.name]);
  if (link.length > 100 || !isAscii(entry.linkname ?? '')) pax.push(['linkpath', entry.linkname!]);
  if (entry.size > MAX_USTAR_SIZE) pax.push(['size', String(entry.size)]);
  const header = ustar({
    name: split?.name ?? asciiStandIn(entry.name),
    prefix: split?.prefix ?? Buffer.alloc(0),
    mode: entry.mode,
    size: entry.size > MAX_USTAR_SIZE ? 0 : entry.size,
    type: { file: '0', directory: '5', symlink: '2' }[entry.type],
    link: link.length > 100 ? asciiStandIn(entry.linkname!) : link,
  });
  if (pax.length === 0) return header;
  const records = Buffer.from(pax.map(([key, value]) => paxRecord(key, value)).join(''));
  const paxHeader = ustar({
    name: Buffer.from('././@PaxHeader'),
    prefix: Buffer.alloc(0),
    mode: 0o644,
    size: records.length,
    type: 'x',
    link: Buffer.alloc(0),
  });
  return Buffer.concat([paxHeader, records, padding(records.length), header]);
}

function ustar(fields: {
  name: Buffer;
  prefix: Buffer;
  mode: number;
  size: number;
  type: string;
  link: Buffer;
}): Buffer {
  const block = Buffer.alloc(BLOCK);
  fields.name.copy(block, 0);
  block.write(octal(fields.mode, 7), 100, 'ascii');
  block.write(octal(0, 7), 108, 'ascii');
  block.write(octal(0, 7), 116, 'ascii');
  block.write(octal(fields.size, 11), 124, 'ascii');
  block.write(octal(0, 11), 136, 'ascii');
  block.write(fields.type, 156, 'ascii');
  fields.link.copy(block, 157);
  block.write('ustar\u000000', 257, 'ascii');
  block.write(octal(0, 7), 329, 'ascii');
  block.write(octal(0, 7), 337, 'ascii');
  fields.prefix.copy(block, 345);
  block.write(`${checksum(block).toString(8).padStart(6, '0')}\u0000 `, 148, 'ascii');
  return block;
}

/** `digits` octal digits and a NUL. */
function octal(value: number, digits: number): string {
  return `${value.toString(8).padStart(digits, '0')}\u0000`;
}

/** The sum of the header's bytes, its checksum field counted as spaces. */
function checksum(block: Buffer): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += block[i]!;
  return sum;
}

/** A name over 100 bytes split at a `/` into USTAR's prefix (≤ 155) and name (≤ 100), if it can be. */
function splitName(name: Buffer): { prefix: Buffer; name: Buffer } | undefined {
  if (name.length <= 100) return { prefix: Buffer.alloc(0), name };
  for (let i = Math.min(155, name.length - 2); i > 0; i--)
    if (name[i] === 0x2f && name.length - i - 1 <= 100)
      return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
  return undefined;
}

/** What readers that do not know PAX see instead of a name the PAX header carries. */
function asciiStandIn(name: string): Buffer {
  return Buffer.from(name.replace(/[^\x20-\x7e]/g, '_')).subarray(0, 100);
}

function isAscii(value: string): boolean {
  return /^[\x01-\x7f]*$/.test(value);
}

/** `LEN key=value\n`, LEN counting its own digits. */
function paxRecord(key: string, value: string): string {
  const rest = Buffer.byteLength(` ${key}=${value}\n`);
  let length = rest + String(rest).length;
  if (String(length).length > String(rest).length) length = rest + String(length).length;
  return `${length} ${key}=${value}\n`;
}

/** An entry as read: hard links, devices and FIFOs are reported too, for the reader's owner to judge. */
export interface ReadEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';
  /** The header's type flag, for messages about entries of type `other`. */
  typeflag: string;
  mode: number;
  size: number;
  linkname: string;
}

/** Where a `TarReader` sends entries: `open` for each; for a file, its bytes to `data`, then `close`. */
export interface EntrySink {
  open(entry: ReadEntry): Promise<void>;
  data(chunk: Buffer): Promise<void>;
  close(): Promise<void>;
}

/**
 * Reads a tar archive from the chunks given to `write`, in order, each awaited: that is the
 * backpressure. Knows USTAR (its name prefix), PAX extended headers (`path`, `linkpath`, `size`; global
 * ones are skipped) and GNU long names and links. Anything after the end of the archive is ignored.
 */
export class TarReader {
  readonly #sink: EntrySink;
  readonly #header = Buffer.alloc(BLOCK);
  #filled = 0;
  #state: 'header' | 'data' | 'meta' | 'skip' | 'end' = 'header';
  /** Bytes left of the current entry's data, then of its padding. */
  #remaining = 0;
  #padding = 0;
  #metaType = '';
  #meta: Buffer[] = [];
  /** What PAX or GNU headers said about the next entry. */
  #next: { path?: string; linkpath?: string; size?: number } = {};

  constructor(sink: EntrySink) {
    this.#sink = sink;
  }

  async write(chunk: Buffer): Promise<void> {
    let at = 0;
    while (at < chunk.length && this.#state !== 'end') {
      if (this.#state === 'header') {
        const take = Math.min(BLOCK - this.#filled, chunk.length - at);
        chunk.copy(this.#header, this.#filled, at, at + take);
        this.#filled += take;
        at += take;
        if (this.#filled === BLOCK) {
          this.#filled = 0;
          await this.#onHeader();
        }
        continue;
      }
      const take = Math.min(this.#remaining, chunk.length - at);
      const piece = chunk.subarray(at, at + take);
      at += take;
      this.#remaining -= take;
      if (this.#state === 'data' && take > 0) await this.#sink.data(piece);
      if (this.#state === 'meta') this.#meta.push(Buffer.from(piece));
      if (this.#remaining === 0) await this.#bodyDone();
    }
  }

  /** Throws unless the archive ended where an entry could end. */
  finish(): void {
    if (this.#state !== 'end' && (this.#state !== 'header' || this.#filled !== 0))
      throw new ClientError('the tar archive ends in the middle of an entry');
  }

  async #onHeader(): Promise<void> {
    const h = this.#header;
    if (h.every((byte) => byte === 0)) {
      this.#state = 'end';
      return;
    }
    const recorded = readNumber(h, 148, 8);
    // Some old writers summed signed bytes; Go and GNU tar accept either sum, and so do we.
    if (recorded !== checksum(h) && recorded !== signedChecksum(h))
      throw new ClientError('not a tar archive (a header checksum does not match)');
    const flag = String.fromCharCode(h[156]!);
    const own = readNumber(h, 124, 12);
    if (flag === 'x' || flag === 'L' || flag === 'K') {
      if (own > MAX_META_BYTES) throw new ClientError(`a tar extended header of ${own} bytes is too large`);
      this.#metaType = flag;
      return this.#body('meta', own, padding(own).length);
    }
    if (flag === 'g') return this.#body('skip', own + padding(own).length, 0);
    // A PAX header's size stands for the entry's own (which cannot hold more than 8 GiB).
    const size = this.#next.size ?? own;
    const padded = size + padding(size).length;
    const magic = h.toString('latin1', 257, 263);
    const prefix = magic === 'ustar\u0000' ? field(h, 345, 155) : '';
    const headerName = prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100);
    const name = this.#next.path ?? headerName;
    const linkname = this.#next.linkpath ?? field(h, 157, 100);
    this.#next = {};
    const type =
      flag === '0' || flag === '7' || (flag === '\u0000' && !name.endsWith('/'))
        ? 'file'
        : flag === '5' || flag === '\u0000'
          ? 'directory'
          : flag === '2'
            ? 'symlink'
            : flag === '1'
              ? 'hardlink'
              : 'other';
    const mode = readNumber(h, 100, 8) & 0o7777;
    await this.#sink.open({ name, type, typeflag: flag, mode, size: type === 'file' ? size : 0, linkname });
    if (type === 'file') return this.#body('data', size, padded - size);
    return this.#body('skip', padded, 0);
  }

  async #body(state: 'data' | 'meta' | 'skip', bytes: number, pad: number): Promise<void> {
    this.#state = state;
    this.#remaining = bytes;
    this.#padding = pad;
    if (bytes === 0) await this.#bodyDone();
  }

  async #bodyDone(): Promise<void> {
    if (this.#state === 'data') await this.#sink.close();
    if (this.#state === 'meta') this.#readMeta(Buffer.concat(this.#meta));
    this.#meta = [];
    if (this.#state !== 'skip' && this.#padding > 0) {
      this.#state = 'skip';
      this.#remaining = this.#padding;
      this.#padding = 0;
      return;
    }
    this.#state = 'header';
  }

  #readMeta(bytes: Buffer): void {
    if (this.#metaType === 'L') this.#next.path = cString(bytes);
    else if (this.#metaType === 'K') this.#next.linkpath = cString(bytes);
    else
      for (const [key, value] of paxRecords(bytes)) {
        if (key === 'path') this.#next.path = value;
        else if (key === 'linkpath') this.#next.linkpath = value;
        else if (key === 'size') {
          if (!/^\d+$/.test(value)) throw new ClientError(`a tar PAX header has the size "${value}"`);
          this.#next.size = Number(value);
        }
      }
  }
}

function signedChecksum(block: Buffer): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += (block[i]! << 24) >> 24;
  return sum;
}

/** A NUL-terminated field, as UTF-8. */
function field(block: Buffer, offset: number, length: number): string {
  return cString(block.subarray(offset, offset + length));
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.toString('utf8', 0, end < 0 ? bytes.length : end);
}

/** An octal number field (spaces and NULs around it), or base-256 when its first byte has the high bit. */
function readNumber(block: Buffer, offset: number, length: number): number {
  if (block[offset]! & 0x80) {
    if (block[offset] === 0xff) throw new ClientError('a tar header holds a negative number');
    let value = block[offset]! & 0x7f;
    for (let i = offset + 1; i < offset + length; i++) value = value * 256 + block[i]!;
    if (!Number.isSafeInteger(value)) throw new ClientError('a tar header holds a number too large');
    return value;
  }
  const text = block
    .toString('latin1', offset, offset + length)
    .replace(/[\s\u0000]+/g, ' ')
    .trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new ClientError('not a tar archive (a header field is not a number)');
  return Number.parseInt(text, 8);
}

/** The records of a PAX extended header: `LEN key=value\n` each. */
function paxRecords(bytes: Buffer): [string, string][] {
  const out: [string, string][] = [];
  for (let at = 0; at < bytes.length; ) {
    const space = bytes.indexOf(0x20, at);
    const length = Number(bytes.toString('latin1', at, space));
    const record = bytes.subarray(space + 1, at + length);
    const eq = record.indexOf(0x3d);
    if (space < 0 || !Number.isInteger(length) || length <= 0 || eq < 0 || record.at(-1) !== 0x0a)
      throw new ClientError('a tar PAX header is malformed');
    out.push([record.toString('utf8', 0, eq), record.toString('utf8', eq + 1, record.length - 1)]);
    at += length;
  }
  return out;
}
