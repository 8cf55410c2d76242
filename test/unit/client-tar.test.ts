import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { BodySink } from '../../src/client/body-sink.ts';
import { packDirectory, unpackDirectory } from '../../src/client/directory-archive.ts';
import { END_OF_ARCHIVE, encodeHeader, padding, type TarEntry } from '../../src/client/tar.ts';
import { ContentMismatchError } from '../../src/client/verify-stream.ts';
import { describeTree } from '../helpers/file-tree.ts';
import { skipUnlessStrict } from '../helpers/skip.ts';

/** GNU tar is needed by two tests; they skip without it (fail under TETHER_TEST_STRICT=1). */
const tarSkip = skipUnlessStrict(!hasTar() && 'needs GNU tar');

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

let dir: string;
let count = 0;
/** A fresh, empty directory path under the test's temporary directory (not created). */
const fresh = (label: string) => join(dir, `${label}-${count++}`);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tether-tar-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An entry of a hand-made archive (names are not checked here: that is the point). */
function entry(e: TarEntry, content = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeHeader({ ...e, size: content.length }), content, padding(content.length)]);
}
const file = (name: string, text = 'x') =>
  entry({ name, type: 'file', mode: 0o644, size: 0 }, Buffer.from(text));
const directory = (name: string) => entry({ name, type: 'directory', mode: 0o755, size: 0 });
const link = (name: string, linkname: string) =>
  entry({ name, type: 'symlink', mode: 0o777, size: 0, linkname });

/** The same header with another type flag (hard links, devices), its checksum recomputed. */
function withTypeFlag(block: Buffer, flag: string): Buffer {
  const out = Buffer.from(block);
  out.write(flag, 156, 'ascii');
  out.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of out.subarray(0, 512)) sum += byte;
  out.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'ascii');
  return out;
}

const tarOf = (...entries: Buffer[]) => Buffer.concat([...entries, END_OF_ARCHIVE]);

async function unpack(gzipped: Buffer, name: string, tarDigest?: string): Promise<string> {
  const into = fresh('unpacked');
  await unpackDirectory(async (sink) => sink.write(gzipped), into, name, tarDigest);
  return into;
}

/** A tree with what an artifact directory holds, long and non-ASCII names included. */
async function sampleTree(): Promise<string> {
  const root = fresh('tree');
  const long = join('l'.repeat(60), 'm'.repeat(60));
  await mkdir(join(root, 'sub'), { recursive: true });
  await mkdir(join(root, 'empty'));
  await mkdir(join(root, long), { recursive: true });
  await writeFile(join(root, 'y.txt'), 'y\n');
  await writeFile(join(root, 'sub', 'x.txt'), 'x\n');
  await writeFile(join(root, 'sub', 'empty.txt'), '');
  await writeFile(join(root, 'run.sh'), '#!/bin/sh\n');
  await chmod(join(root, 'run.sh'), 0o755);
  await writeFile(join(root, long, `${'n'.repeat(90)}.txt`), 'splits into prefix and name\n');
  await writeFile(join(root, `${'p'.repeat(120)}.txt`), 'needs a PAX path\n');
  await writeFile(join(root, 'ünïcødé.txt'), 'needs a PAX path too\n');
  await symlink('y.txt', join(root, 'link'));
  await symlink('../y.txt', join(root, 'sub', 'up'));
  await symlink(`${'p'.repeat(120)}.txt`, join(root, 'long-link'));
  return root;
}

describe('directory archives', () => {
  test('a packed tree unpacks to the same tree: long, PAX and non-ASCII names, links, empty directories, modes', async () => {
    const root = await sampleTree();
    const packed = join(fresh('packed'));
    const { digest, size, tarDigest } = await packDirectory(root, 'd', packed);
    const bytes = await readFile(packed);
    assert.equal(digest, sha256(bytes));
    assert.equal(size, bytes.length);
    assert.equal(tarDigest, sha256(gunzipSync(bytes)));
    const into = await unpack(bytes, 'd', tarDigest);
    assert.deepEqual(await describeTree(into), await describeTree(root));
  });

  test('GNU tar reads what we pack, names and links intact', { skip: tarSkip }, async () => {
    const root = await sampleTree();
    const packed = fresh('packed');
    await packDirectory(root, 'd', packed);
    const out = fresh('gnu-out');
    await mkdir(out);
    execFileSync('tar', ['-xzf', packed, '-C', out]);
    assert.deepEqual(await describeTree(join(out, 'd')), await describeTree(root));
  });

  test('we read what GNU tar writes, in its GNU and PAX formats', { skip: tarSkip }, async () => {
    const root = await sampleTree();
    for (const format of ['gnu', 'pax']) {
      const archive = fresh(`${format}.tar.gz`);
      execFileSync('tar', [`--format=${format}`, '-czf', archive, '-C', root, '.']);
      const into = await unpack(await readFile(archive), '.');
      assert.deepEqual(await describeTree(into), await describeTree(root), format);
    }
  });

  test('packing is deterministic: times, owners and umask-dependent modes do not change the bytes', async () => {
    const root = await sampleTree();
    const first = await packDirectory(root, 'd', fresh('packed'));
    await utimes(join(root, 'y.txt'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    await chmod(join(root, 'y.txt'), 0o664);
    await chmod(join(root, 'sub'), 0o775);
    const second = await packDirectory(root, 'd', fresh('packed'));
    assert.deepEqual(second, first);
  });

  test('packing refuses a link that leads out of the directory, and special files', async () => {
    for (const target of ['../../outside', '/etc/passwd', 'x/../../../outside', '../l/../..']) {
      const root = fresh('links');
      await mkdir(join(root, 'sub'), { recursive: true });
      await symlink(target, join(root, 'sub', 'l'));
      await assert.rejects(
        packDirectory(root, 'd', fresh('packed')),
        /outside .*pulls refuse such links/,
        target,
      );
    }
    const root = fresh('socket');
    await mkdir(root);
    const server = net.createServer().listen(join(root, 'sock'));
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      await assert.rejects(
        packDirectory(root, 'd', fresh('packed')),
        /only files, directories and symbolic links/,
      );
    } finally {
      server.close();
    }
  });
});

describe('unpacking refuses what would leave the tree', () => {
  const escapes: [string, string, Buffer][] = [
    ['a file above the tree', '.', tarOf(file('../evil.txt'))],
    ['a file above the prefix, once cleaned', 'd', tarOf(directory('d'), file('d/../../evil.txt'))],
    ['an absolute file', 'd', tarOf(directory('d'), file('/tmp/evil.txt'))],
    ['a file beside the prefix', 'd', tarOf(directory('d'), file('other/evil.txt'))],
    ['a prefix that is a file', 'd', tarOf(file('d'))],
    ['an absolute link', 'd', tarOf(directory('d'), link('d/l', '/etc'))],
    ['a link above the tree', 'd', tarOf(directory('d'), link('d/sub/l', '../../evil'))],
    // Each link alone stays inside; followed through the other, `x` leaves: sub/y is the root, root/.. is not ours.
    [
      'a link out through another link',
      'd',
      tarOf(directory('d/sub'), link('d/sub/y', '..'), link('d/sub/x', 'y/..')),
    ],
    ['a file below a link', 'd', tarOf(directory('d/sub'), link('d/l', 'sub'), file('d/l/evil.txt'))],
    ['a hard link', 'd', tarOf(directory('d'), file('d/x'), withTypeFlag(link('d/h', 'd/x'), '1'))],
  ];
  for (const [what, prefix, tar] of escapes) {
    test(what, async () => {
      const parent = fresh('escape');
      await mkdir(parent);
      await assert.rejects(
        unpackDirectory(async (sink) => sink.write(gzipSync(tar)), join(parent, 'into'), prefix, undefined),
        /refusing to (unpack|write)/,
      );
      assert.deepEqual(await readdir(parent), ['into'], 'nothing beside the tree');
      assert.deepEqual(
        (await describeTree(join(parent, 'into'))).filter((line) => line.includes('evil')),
        [],
      );
    });
  }

  test('a link to another link inside, a link to the tree itself, and devices (skipped) are fine', async () => {
    const device = withTypeFlag(entry({ name: 'd/null', type: 'file', mode: 0o666, size: 0 }), '3');
    const into = await unpack(
      gzipSync(
        tarOf(directory('d/sub'), link('d/sub/y', '..'), link('d/sub/z', 'y/sub'), device, file('d/a', 'a')),
      ),
      'd',
    );
    assert.deepEqual(await describeTree(into), ['a = a', 'sub/', 'sub/y -> ..', 'sub/z -> y/sub']);
  });

  test('the tar must match its digest, be gzipped, and end where an entry ends', async () => {
    const tar = tarOf(directory('d'), file('d/x.txt', 'content'));
    await assert.rejects(unpack(gzipSync(tar), 'd', sha256(Buffer.from('other'))), ContentMismatchError);
    await assert.rejects(unpack(tar, 'd', sha256(tar)), /not a gzipped tar/);
    const cut = tar.subarray(0, 512 + 512 + 3);
    await assert.rejects(unpack(gzipSync(cut), 'd'), /ends in the middle of an entry/);
    await assert.rejects(unpack(gzipSync(Buffer.alloc(700, 1)), 'd'), /not a tar archive/);
    // Bytes after the end of the archive (GNU tar pads to 10 KiB) are part of the digest, and ignored.
    const padded = Buffer.concat([tar, Buffer.alloc(8192)]);
    const into = await unpack(gzipSync(padded), 'd', sha256(padded));
    assert.deepEqual(await describeTree(into), ['x.txt = content']);
  });

  test('unpacking takes lent chunks: each is read before the next, and the first failure is reported', async () => {
    const big = randomBytes(3 * 1024 * 1024);
    const gzipped = gzipSync(
      tarOf(directory('d'), entry({ name: 'd/big', type: 'file', mode: 0o644, size: 0 }, big)),
    );
    /** Lends `bytes` from one buffer of 64 KiB, overwritten as soon as a write is done; fails at `failAt`. */
    const lend =
      (bytes: Buffer, failAt = Infinity) =>
      async (sink: BodySink) => {
        const buffer = Buffer.alloc(64 * 1024);
        for (let at = 0; at < bytes.length; at += buffer.length) {
          if (at >= failAt) throw new Error('the connection broke');
          const n = bytes.copy(buffer, 0, at);
          await sink.write(buffer.subarray(0, n));
          buffer.fill(0xee);
        }
      };
    const into = fresh('lent');
    await unpackDirectory(lend(gzipped), into, 'd', undefined);
    assert.ok((await readFile(join(into, 'big'))).equals(big));

    await assert.rejects(
      unpackDirectory(lend(gzipped, 1024 * 1024), fresh('broken'), 'd', undefined),
      /the connection broke/,
    );
    // Refused early, with megabytes still to come: the refusal, not the closed gunzip, is the error.
    const refused = gzipSync(
      tarOf(
        directory('d'),
        file('e/evil'),
        entry({ name: 'd/big', type: 'file', mode: 0o644, size: 0 }, big),
      ),
    );
    await assert.rejects(unpackDirectory(lend(refused), fresh('refused'), 'd', undefined), /outside d/);
    const corrupt = Buffer.from(gzipped);
    corrupt.fill(7, 1024 * 1024, 1024 * 1024 + 4096);
    await assert.rejects(
      unpackDirectory(lend(corrupt), fresh('corrupt'), 'd', undefined),
      /not a gzipped tar/,
    );
  });
});

function hasTar(): boolean {
  try {
    execFileSync('tar', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
