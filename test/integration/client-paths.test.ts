/**
 * File paths in artifacts (notes/audit-cli.md, finding 10): `push` titles files by their relative
 * paths as oras does, and `pull` writes them into subdirectories of the output directory, refusing any
 * title that would land outside it, before anything is written.
 */
import assert from 'node:assert/strict';
import { access, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/client/client.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { runCli } from '../helpers/cli.ts';
import { pushBlob, pushManifest } from '../helpers/oci.ts';
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
      await assert.rejects(access(out), 'nothing written, the output directory not even created');
    }
    assert.deepEqual(await readdir(outside), []);
    await assert.rejects(access(join(dir, 'escape.txt')));
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
    await assert.rejects(access(out));
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
    await assert.rejects(readlink(join(out, 'f.txt')), 'a file now, not a link');
  });
});
