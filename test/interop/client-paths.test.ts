/**
 * File paths and directories in artifacts, both ways with oras (notes/audit-cli.md, finding 10): what
 * one client pushes, the other pulls into the same tree.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { describeTree } from '../helpers/file-tree.ts';
import { runTether, runTool } from '../helpers/interop.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

/**
 * What is pushed: two files of one name in different directories, and a directory with a
 * subdirectory, an empty one, an executable file and a link.
 */
async function sources(work: string): Promise<string[]> {
  await mkdir(join(work, 'd', 'sub'), { recursive: true });
  await writeFile(join(work, 'd', 'y.txt'), 'y\n');
  await writeFile(join(work, 'd', 'sub', 'y.txt'), 'another y\n');
  await mkdir(join(work, 'site', 'css'), { recursive: true });
  await mkdir(join(work, 'site', 'empty'));
  await mkdir(join(work, 'site', 'bin'));
  await writeFile(join(work, 'site', 'index.html'), '<h1>hi</h1>\n');
  await writeFile(join(work, 'site', 'css', 'a.css'), 'h1 { color: red }\n');
  await writeFile(join(work, 'site', 'bin', 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(work, 'site', 'bin', 'run.sh'), 0o755);
  await symlink('../index.html', join(work, 'site', 'css', 'home.html'));
  return ['d/y.txt', 'd/sub/y.txt', 'site'];
}

describe('file paths and directories with oras', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let reg: RunningRegistry;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    env = { HOME: dir, DOCKER_CONFIG: join(dir, 'docker') };
    reg = await startRegistry({ storage: { data: join(dir, 'data') } });
  });
  after(async () => {
    await reg.close();
    await cleanup();
  });

  test('tether push of nested paths and a directory: oras pull gets the same tree', async () => {
    const work = join(dir, 'tether-push');
    await mkdir(work);
    const paths = await sources(work);
    const ref = `${reg.host}/paths/from-tether:v1`;
    await runTether(
      ['push', '-q', ref, ...paths, '--artifact-type', 'application/vnd.example.tree'],
      env,
      work,
    );
    const out = join(dir, 'oras-out');
    await mkdir(out);
    await runTool('oras', ['pull', '--plain-http', ref, '-o', out], env);
    assert.deepEqual(await describeTree(out), await describeTree(work));
  });

  test('oras push of nested paths and a directory: tether pull gets the same tree', async () => {
    const work = join(dir, 'oras-push');
    await mkdir(work);
    const paths = await sources(work);
    const ref = `${reg.host}/paths/from-oras:v1`;
    await runTool(
      'oras',
      ['push', '--plain-http', ref, ...paths, '--artifact-type', 'application/vnd.example.tree'],
      env,
      work,
    );
    const out = join(dir, 'tether-out');
    await runTether(['pull', '-q', ref, '-o', out], env);
    assert.deepEqual(await describeTree(out), await describeTree(work));
  });

  test('in an OCI layout: tether push oci:DIR, then tether pull and oras pull --oci-layout get the same tree', async () => {
    const work = join(dir, 'tether-layout-push');
    await mkdir(work);
    const paths = await sources(work);
    const layout = join(dir, 'tether-layout');
    await runTether(
      ['push', '-q', `oci:${layout}:v1`, ...paths, '--artifact-type', 'application/vnd.example.tree'],
      env,
      work,
    );
    const orasOut = join(dir, 'oras-layout-out');
    await mkdir(orasOut);
    await runTool('oras', ['pull', '--oci-layout', `${layout}:v1`, '-o', orasOut], env);
    assert.deepEqual(await describeTree(orasOut), await describeTree(work));
    const tetherOut = join(dir, 'tether-layout-out');
    await runTether(['pull', '-q', `oci:${layout}:v1`, '-o', tetherOut], env);
    assert.deepEqual(await describeTree(tetherOut), await describeTree(work));
  });

  test('in an OCI layout: oras push --oci-layout, then tether pull oci:DIR gets the same tree', async () => {
    const work = join(dir, 'oras-layout-push');
    await mkdir(work);
    const paths = await sources(work);
    const layout = join(dir, 'oras-layout');
    await runTool(
      'oras',
      ['push', '--oci-layout', `${layout}:v1`, ...paths, '--artifact-type', 'application/vnd.example.tree'],
      env,
      work,
    );
    const out = join(dir, 'tether-from-oras-layout');
    await runTether(['pull', '-q', `oci:${layout}:v1`, '-o', out], env);
    assert.deepEqual(await describeTree(out), await describeTree(work));
  });

  test('a title that leads out of the output directory: oras and tether both push it, neither pulls it', async () => {
    const work = join(dir, 'dotdot', 'inner');
    await mkdir(work, { recursive: true });
    await writeFile(join(dir, 'dotdot', 'up.txt'), 'up\n');
    const ref = `${reg.host}/paths/dotdot:v1`;
    await runTether(['push', '-q', ref, '../up.txt', '--artifact-type', 'application/x'], env, work);
    // Pulled into work/out, `../up.txt` would be work/up.txt.
    await assert.rejects(
      runTool('oras', ['pull', '--plain-http', ref, '-o', join(work, 'out')], env),
      /path traversal disallowed/,
    );
    await assert.rejects(
      runTether(['pull', ref, '-o', join(work, 'out')], env),
      /refusing to write a file named "\.\.\/up\.txt": it leads out of the output directory/,
    );
    assert.deepEqual(
      (await describeTree(work)).filter((line) => line.includes('up.txt')),
      [],
    );
  });
});
