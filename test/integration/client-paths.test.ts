/**
 * File paths in artifacts (notes/audit-cli.md, finding 10): `push` titles files by their relative
 * paths as oras does, and `pull` writes them into subdirectories of the output directory, refusing any
 * title that would land outside it, before anything is written.
 */
import assert from 'node:assert/strict';
import { access, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { RegistryClient } from '../../src/client/client.ts';
import { END_OF_ARCHIVE, encodeHeader, padding } from '../../src/client/tar.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { runCli } from '../helpers/cli.ts';
import { describeTree } from '../helpers/file-tree.ts';
import { pushBlob, pushManifest, sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const TITLE = 'org.opencontainers.image.title';
const EMPTY = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
};

let dir: string;
let cleanup: () => Promise<void>;
let reg: RunningRegistry;
const client = new RegistryClient({ credentials: async () => undefined });

const tether = (args: string[], cwd: string) =>
  runCli(args, { cwd, env: { HOME: dir, DOCKER_CONFIG: join(dir, '.docker') } });

/** Pushes an artifact whose layers carry exactly these titles (no client in between to clean them). */
async function pushTitles(repo: string, titles: string[]): Promise<void> {
  const layers = [];
  for (const [i, title] of titles.entries()) {
    const bytes = `content ${i} of ${title}\n`;
    const digest = await pushBlob(reg.url, repo, bytes);
    layers.push({
      mediaType: 'text/plain',
      digest,
      size: Buffer.byteLength(bytes),
      annotations: { [TITLE]: title },
    });
  }
  await pushBlob(reg.url, repo, '{}');
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: 'application/x.test',
    config: EMPTY,
    layers,
  };
  assert.equal((await pushManifest(reg.url, repo, 'v1', manifest)).response.status, 201);
}

/** Pushes an artifact of one layer marked for unpacking: `tar` gzipped, annotated as oras annotates it. */
async function pushArchive(repo: string, title: string, tar: Buffer, tarDigest = sha256(tar)): Promise<void> {
  const gzipped = gzipSync(tar);
  const digest = await pushBlob(reg.url, repo, gzipped);
  await pushBlob(reg.url, repo, '{}');
  const layer = {
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest,
    size: gzipped.length,
    annotations: {
      'io.deis.oras.content.digest': tarDigest,
      'io.deis.oras.content.unpack': 'true',
      [TITLE]: title,
    },
  };
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: 'application/x.test',
    config: EMPTY,
    layers: [layer],
  };
  assert.equal((await pushManifest(reg.url, repo, 'v1', manifest)).response.status, 201);
}

const tarFile = (name: string, text: string) =>
  Buffer.concat([
    encodeHeader({ name, type: 'file', mode: 0o644, size: Buffer.byteLength(text) }),
    Buffer.from(text),
    padding(Buffer.byteLength(text)),
  ]);
const tarDirectory = (name: string) => encodeHeader({ name, type: 'directory', mode: 0o755, size: 0 });

/** Every path under `root`, relative and sorted; directories end in `/`. */
async function tree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1) + (e.isDirectory() ? '/' : ''))
    .sort();
}

before(async () => {
  ({ dir, cleanup } = await tempDataDir());
  reg = await startRegistry();
});

after(async () => {
  await reg.close();
  await cleanup();
});

describe('push titles files by their relative paths', () => {
  test('files of the same name in different directories stay apart, and pull recreates the tree', async () => {
    const work = join(dir, 'push-nested');
    await mkdir(join(work, 'd', 'sub'), { recursive: true });
    await writeFile(join(work, 'd', 'y.txt'), 'y\n');
    await writeFile(join(work, 'd', 'sub', 'y.txt'), 'other y\n');
    const ref = `${reg.host}/paths/nested:v1`;
    const push = await tether(
      ['push', ref, 'd/y.txt', './d//sub/y.txt:text/plain', '--artifact-type', 'a/b'],
      work,
    );
    assert.equal(push.code, 0, push.stderr);
    const { json } = await client.getManifest({ host: reg.host, repository: 'paths/nested', tag: 'v1' });
    const layers = json.layers as { annotations: Record<string, string> }[];
    assert.deepEqual(
      layers.map((l) => l.annotations[TITLE]),
      ['d/y.txt', 'd/sub/y.txt'],
    );
    const out = join(dir, 'pull-nested');
    const pull = await tether(['pull', ref, '-o', out], work);
    assert.equal(pull.code, 0, pull.stderr);
    assert.deepEqual(await tree(out), ['d/', 'd/sub/', 'd/sub/y.txt', 'd/y.txt']);
    assert.equal(await readFile(join(out, 'd', 'y.txt'), 'utf8'), 'y\n');
    assert.equal(await readFile(join(out, 'd', 'sub', 'y.txt'), 'utf8'), 'other y\n');
  });

  test('an absolute path is refused unless --disable-path-validation; a name given twice is refused', async () => {
    const work = join(dir, 'push-refused');
    await mkdir(join(work, 'd'), { recursive: true });
    await writeFile(join(work, 'd', 'y.txt'), 'y\n');
    const ref = `${reg.host}/paths/refused:v1`;
    const absolute = await tether(['push', ref, join(work, 'd', 'y.txt'), '--artifact-type', 'a/b'], work);
    assert.equal(absolute.code, 2);
    assert.match(absolute.stderr, /absolute path .*--disable-path-validation/);
    const twice = await tether(['push', ref, 'd/y.txt', './d/y.txt', '--artifact-type', 'a/b'], work);
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /d\/y\.txt: duplicate name/);
    const attach = await tether(['attach', ref, join(work, 'd', 'y.txt'), '--artifact-type', 'a/b'], work);
    assert.equal(attach.code, 2, 'attach titles files the same way');
    await assert.rejects(
      client.resolve({ host: reg.host, repository: 'paths/refused', tag: 'v1' }),
      /not found/,
    );
    const allowed = await tether(
      ['push', ref, join(work, 'd', 'y.txt'), '--artifact-type', 'a/b', '--disable-path-validation'],
      work,
    );
    assert.equal(allowed.code, 0, allowed.stderr);
    const { json } = await client.getManifest({ host: reg.host, repository: 'paths/refused', tag: 'v1' });
    assert.equal(
      (json.layers as { annotations: Record<string, string> }[])[0]!.annotations[TITLE],
      join(work, 'd', 'y.txt'),
    );
  });

  test('the library refuses two files of one title', async () => {
    await assert.rejects(
      client.pushArtifact(
        { host: reg.host, repository: 'paths/library' },
        {
          artifactType: 'a/b',
          files: [
            { mediaType: 'text/plain', title: 'd/y.txt', bytes: Buffer.from('1') },
            { mediaType: 'text/plain', title: 'd/./y.txt', bytes: Buffer.from('2') },
          ],
          tag: 'v1',
        },
      ),
      /d\/y\.txt: duplicate name/,
    );
  });
});

describe('pull writes titles inside the output directory only', () => {
  test('titles that leave the directory are refused and nothing is written', async () => {
    const outside = join(dir, 'outside');
    await mkdir(outside, { recursive: true });
    const escapes = [
      '../escape.txt',
      'd/../../escape.txt',
      `${outside}/escape.txt`,
      '/escape.txt',
      '..',
      '.',
      'd/..',
      'a\\..\\..\\escape.txt',
      'nul\0.txt',
    ];
    for (const [i, title] of escapes.entries()) {
      const repo = `paths/escape${i}`;
      await pushTitles(repo, ['fine.txt', title]);
      const out = join(dir, `escape-out-${i}`);
      await assert.rejects(
        client.pullArtifact({ host: reg.host, repository: repo, tag: 'v1' }, out),
        /refusing to write/,
        title,
      );
      await assert.rejects(
        access(out),
        { code: 'ENOENT' },
        'nothing written, the output directory not even created',
      );
    }
    assert.deepEqual(await readdir(outside), []);
    await assert.rejects(access(join(dir, 'escape.txt')), { code: 'ENOENT' });
  });

  test('a title that cleans to one inside is written there', async () => {
    await pushTitles('paths/inner-dots', ['d/../x.txt', 'd/./sub//y.txt']);
    const out = join(dir, 'inner-dots');
    await client.pullArtifact({ host: reg.host, repository: 'paths/inner-dots', tag: 'v1' }, out);
    assert.deepEqual(await tree(out), ['d/', 'd/sub/', 'd/sub/y.txt', 'x.txt']);
  });

  test('two layers of one path are refused (duplicate name), nothing written', async () => {
    await pushTitles('paths/dup', ['d/y.txt', 'd//y.txt']);
    const out = join(dir, 'dup');
    await assert.rejects(
      client.pullArtifact({ host: reg.host, repository: 'paths/dup', tag: 'v1' }, out),
      /d\/y\.txt: duplicate name/,
    );
    await assert.rejects(access(out), { code: 'ENOENT' });
  });

  test('a symbolic link in the output directory is never followed out of it', async () => {
    const outside = join(dir, 'link-target');
    await mkdir(outside, { recursive: true });
    await writeFile(join(outside, 'kept.txt'), 'not yours\n');
    const out = join(dir, 'with-links');
    await mkdir(out, { recursive: true });
    await symlink(outside, join(out, 'd'));
    await pushTitles('paths/through-link', ['d/x.txt']);
    await assert.rejects(
      client.pullArtifact({ host: reg.host, repository: 'paths/through-link', tag: 'v1' }, out),
      /refusing to write through the symbolic link/,
    );
    assert.deepEqual(await readdir(outside), ['kept.txt']);
    assert.deepEqual(await readdir(out), ['d'], 'no staging directory left behind');

    // A link where the file goes is replaced, not written through.
    await symlink(join(outside, 'kept.txt'), join(out, 'f.txt'));
    await pushTitles('paths/onto-link', ['f.txt']);
    await client.pullArtifact({ host: reg.host, repository: 'paths/onto-link', tag: 'v1' }, out);
    assert.equal(await readFile(join(outside, 'kept.txt'), 'utf8'), 'not yours\n');
    assert.equal(await readFile(join(out, 'f.txt'), 'utf8'), 'content 0 of f.txt\n');
    await assert.rejects(readlink(join(out, 'f.txt')), { code: 'EINVAL' }, 'a file now, not a link');
  });
});

describe('directories: push packs them, pull unpacks them', () => {
  test('push DIR and pull recreate the tree: nested, at a path, and the current directory', async () => {
    const work = join(dir, 'dirs');
    await mkdir(join(work, 'w', 'd', 'sub', 'deeper'), { recursive: true });
    await mkdir(join(work, 'w', 'd', 'empty'));
    await writeFile(join(work, 'w', 'd', 'y.txt'), 'y\n');
    await writeFile(join(work, 'w', 'd', 'sub', 'y.txt'), 'other y\n');
    await writeFile(join(work, 'w', 'd', 'sub', 'deeper', 'z.txt'), 'z\n');
    await symlink('../y.txt', join(work, 'w', 'd', 'sub', 'up'));
    await writeFile(join(work, 'top.txt'), 'top\n');
    const source = await describeTree(join(work, 'w', 'd'));
    const ref = `${reg.host}/paths/dir:v1`;
    const push = await tether(['push', ref, './w/d/', 'top.txt', '--artifact-type', 'a/b'], work);
    assert.equal(push.code, 0, push.stderr);
    const { json } = await client.getManifest({ host: reg.host, repository: 'paths/dir', tag: 'v1' });
    const layer = (json.layers as { mediaType: string; annotations: Record<string, string> }[])[0]!;
    assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    assert.equal(layer.annotations[TITLE], 'w/d');
    assert.equal(layer.annotations['io.deis.oras.content.unpack'], 'true');
    assert.match(layer.annotations['io.deis.oras.content.digest']!, /^sha256:[0-9a-f]{64}$/);

    const out = join(dir, 'dirs-out');
    const pull = await tether(['pull', ref, '-o', out], work);
    assert.equal(pull.code, 0, pull.stderr);
    assert.deepEqual(await describeTree(join(out, 'w', 'd')), source);
    assert.deepEqual(await readdir(out), ['top.txt', 'w'], 'no staging directory left');

    const again = await tether(
      ['push', `${reg.host}/paths/dir:again`, './w/d/', 'top.txt', '--artifact-type', 'a/b'],
      work,
    );
    assert.equal(again.stdout, push.stdout, 'the same tree packs to the same bytes: the same manifest');

    const dot = await tether(
      ['push', `${reg.host}/paths/dir:dot`, '.', '--artifact-type', 'a/b'],
      join(work, 'w', 'd'),
    );
    assert.equal(dot.code, 0, dot.stderr);
    const dotOut = join(dir, 'dirs-dot');
    await client.pullArtifact({ host: reg.host, repository: 'paths/dir', tag: 'dot' }, dotOut);
    assert.deepEqual(
      await describeTree(dotOut),
      source,
      'a directory titled "." unpacks into the output directory',
    );
  });

  test('a pull into a directory already there merges: files replaced, others kept', async () => {
    await pushArchive(
      'paths/merge',
      'd',
      Buffer.concat([
        tarDirectory('d'),
        tarFile('d/new.txt', 'new'),
        tarFile('d/y.txt', 'y2'),
        END_OF_ARCHIVE,
      ]),
    );
    const out = join(dir, 'merge');
    await mkdir(join(out, 'd'), { recursive: true });
    await writeFile(join(out, 'd', 'y.txt'), 'y1');
    await writeFile(join(out, 'd', 'mine.txt'), 'mine');
    await client.pullArtifact({ host: reg.host, repository: 'paths/merge', tag: 'v1' }, out);
    assert.deepEqual(await describeTree(out), ['d/', 'd/mine.txt = mine', 'd/new.txt = new', 'd/y.txt = y2']);
  });

  test('an archive with an entry that leaves the directory, or of another digest, writes nothing', async () => {
    const outside = join(dir, 'archive-outside');
    await mkdir(outside, { recursive: true });
    const cases: [string, Buffer, string?][] = [
      [
        'above',
        Buffer.concat([
          tarDirectory('d'),
          tarFile('d/ok.txt', 'ok'),
          tarFile('d/../../archive-outside/evil.txt', 'evil'),
          END_OF_ARCHIVE,
        ]),
      ],
      [
        'beside',
        Buffer.concat([
          tarDirectory('d'),
          tarFile('d/ok.txt', 'ok'),
          tarFile('e/evil.txt', 'evil'),
          END_OF_ARCHIVE,
        ]),
      ],
      [
        'digest',
        Buffer.concat([tarDirectory('d'), tarFile('d/ok.txt', 'ok'), END_OF_ARCHIVE]),
        sha256('another tar'),
      ],
    ];
    for (const [name, tar, tarDigest] of cases) {
      await pushArchive(`paths/archive-${name}`, 'd', tar, tarDigest);
      const out = join(dir, `archive-${name}`);
      await assert.rejects(
        client.pullArtifact({ host: reg.host, repository: `paths/archive-${name}`, tag: 'v1' }, out),
        name,
      );
      assert.deepEqual(await readdir(out), [], `${name}: nothing written, no staging left`);
    }
    assert.deepEqual(await readdir(outside), []);
  });

  test('a symbolic link where the directory goes is not followed', async () => {
    const outside = join(dir, 'dir-link-target');
    await mkdir(outside, { recursive: true });
    const out = join(dir, 'dir-link');
    await mkdir(out, { recursive: true });
    await symlink(outside, join(out, 'd'));
    await pushArchive(
      'paths/dir-link',
      'd',
      Buffer.concat([tarDirectory('d'), tarFile('d/x.txt', 'x'), END_OF_ARCHIVE]),
    );
    await assert.rejects(
      client.pullArtifact({ host: reg.host, repository: 'paths/dir-link', tag: 'v1' }, out),
      /refusing to write through the symbolic link/,
    );
    assert.deepEqual(await readdir(outside), []);
    assert.deepEqual(await readdir(out), ['d']);
  });
});

describe('paths and directories in OCI layouts (artifacts on any target)', () => {
  test('push oci:DIR of nested paths and a directory, then pull oci:DIR, recreates the tree', async () => {
    const work = join(dir, 'layout-work');
    await mkdir(join(work, 'd', 'sub'), { recursive: true });
    await writeFile(join(work, 'd', 'y.txt'), 'y\n');
    await writeFile(join(work, 'd', 'sub', 'y.txt'), 'other y\n');
    await mkdir(join(work, 'site', 'css'), { recursive: true });
    await mkdir(join(work, 'site', 'empty'));
    await writeFile(join(work, 'site', 'index.html'), '<h1>hi</h1>\n');
    await writeFile(join(work, 'site', 'css', 'a.css'), 'h1 {}\n');
    await symlink('../index.html', join(work, 'site', 'css', 'home.html'));
    const layout = join(dir, 'layout-paths');
    const push = await tether(
      ['push', `oci:${layout}:v1`, 'd/y.txt', './d//sub/y.txt', 'site/', '--artifact-type', 'a/b'],
      work,
    );
    assert.equal(push.code, 0, push.stderr);
    const digest = push.stdout.trim();
    const manifest = JSON.parse(
      await readFile(join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)), 'utf8'),
    ) as { layers: { mediaType: string; annotations: Record<string, string> }[] };
    assert.deepEqual(
      manifest.layers.map((layer) => [layer.mediaType, layer.annotations[TITLE]]),
      [
        ['application/octet-stream', 'd/y.txt'],
        ['application/octet-stream', 'd/sub/y.txt'],
        ['application/vnd.oci.image.layer.v1.tar+gzip', 'site'],
      ],
    );
    assert.equal(manifest.layers[2]!.annotations['io.deis.oras.content.unpack'], 'true');
    assert.deepEqual(await readdir(work), ['d', 'site'], 'nothing left beside the sources');

    const out = join(dir, 'layout-out');
    const pull = await tether(['pull', `oci:${layout}:v1`, '-o', out], work);
    assert.equal(pull.code, 0, pull.stderr);
    assert.deepEqual(await describeTree(out), await describeTree(work));

    // The refusals hold for layouts as for registries: nothing is pushed.
    const twice = await tether(
      ['push', `oci:${layout}:v2`, 'd/y.txt', 'd/./y.txt', '--artifact-type', 'a/b'],
      work,
    );
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /d\/y\.txt: duplicate name/);
    const absolute = await tether(
      ['push', `oci:${join(dir, 'layout-absolute')}:v1`, join(work, 'd', 'y.txt'), '--artifact-type', 'a/b'],
      work,
    );
    assert.equal(absolute.code, 2);
    assert.match(absolute.stderr, /absolute path .*--disable-path-validation/);
    await assert.rejects(
      access(join(dir, 'layout-absolute')),
      { code: 'ENOENT' },
      'no layout made for a refused push',
    );
  });
});
