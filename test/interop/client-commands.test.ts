import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, '.tools/bin');

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env: { ...process.env, PATH: `${BIN}:${process.env.PATH}`, ...env }, ...(cwd ? { cwd } : {}) },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

describe('client commands', () => {
  let reg: RunningRegistry;
  let dir: string;
  let cleanup: () => Promise<void>;
  let env: NodeJS.ProcessEnv;
  // In `dir`, so that files are named by relative paths, as push titles them.
  const tether = (...args: string[]) =>
    run(process.execPath, [join(ROOT, 'src/cli/main.ts'), ...args], env, dir);

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    env = { HOME: dir, DOCKER_CONFIG: join(dir, 'docker') };
    reg = await startRegistry({ storage: { data: join(dir, 'data') } });
  });
  after(async () => {
    await reg.close();
    await cleanup();
  });

  test('push and pull an artifact; crane reads what tether pushed; repo ls/tags; tag; resolve', async () => {
    await writeFile(join(dir, 'hello.txt'), 'hello tether\n');
    await writeFile(join(dir, 'data.bin'), Buffer.from([1, 2, 3]));
    const ref = `${reg.host}/demo/files:v1`;
    const digest = (
      await tether(
        'push',
        ref,
        'hello.txt:text/plain',
        'data.bin',
        '--artifact-type',
        'application/vnd.example.files',
      )
    ).trim();
    assert.equal((await tether('resolve', ref)).trim(), digest);
    await tether('pull', ref, '-o', join(dir, 'out'));
    assert.equal(await readFile(join(dir, 'out', 'hello.txt'), 'utf8'), 'hello tether\n');
    assert.deepEqual([...(await readFile(join(dir, 'out', 'data.bin')))], [1, 2, 3]);
    assert.equal((await run('crane', ['--insecure', 'digest', ref], env)).trim(), digest);
    const manifest = JSON.parse(await run('crane', ['--insecure', 'manifest', ref], env)) as {
      layers: { digest: string }[];
    };
    assert.equal(
      await run('crane', ['--insecure', 'blob', `${reg.host}/demo/files@${manifest.layers[0]!.digest}`], env),
      'hello tether\n',
    );
    await tether('tag', ref, 'stable');
    assert.deepEqual((await tether('repo', 'tags', `${reg.host}/demo/files`)).trim().split('\n'), [
      'stable',
      'v1',
    ]);
    assert.ok((await tether('repo', 'ls', reg.host)).split('\n').includes('demo/files'));
  });

  test('blob put/get/delete and manifest get/put/delete round-trip, digests verified', async () => {
    await writeFile(join(dir, 'blob.bin'), 'raw blob');
    const digest = (await tether('blob', 'put', `${reg.host}/demo/raw`, join(dir, 'blob.bin'))).trim();
    assert.equal(digest, sha256('raw blob'));
    await tether('blob', 'get', `${reg.host}/demo/raw@${digest}`, '-o', join(dir, 'blob.out'));
    assert.equal(await readFile(join(dir, 'blob.out'), 'utf8'), 'raw blob');
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [],
    });
    await writeFile(join(dir, 'index.json'), index);
    const md = (await tether('manifest', 'put', `${reg.host}/demo/raw:idx`, join(dir, 'index.json'))).trim();
    assert.equal(md, sha256(index));
    assert.equal(await tether('manifest', 'get', `${reg.host}/demo/raw:idx`), index);
    await tether('manifest', 'delete', `${reg.host}/demo/raw:idx`);
    await assert.rejects(
      tether('manifest', 'get', `${reg.host}/demo/raw:idx`),
      new RegExp(`get manifest ${reg.host}/demo/raw:idx: not found`),
    );
    await tether('blob', 'delete', `${reg.host}/demo/raw@${digest}`);
    await assert.rejects(
      tether('blob', 'get', `${reg.host}/demo/raw@${digest}`),
      new RegExp(`get blob ${reg.host}/demo/raw@${digest}: not found`),
    );
  });

  test('deleting a referrer in tag mode removes its fallback entry', async () => {
    await writeFile(join(dir, 'sig.txt'), 'sig');
    const subject = (
      await tether('push', `${reg.host}/demo/signed:v1`, 'hello.txt', '--artifact-type', 'application/x')
    ).trim();
    const a = (
      await tether(
        'attach',
        `${reg.host}/demo/signed:v1`,
        'sig.txt',
        '--artifact-type',
        'application/sig',
        '--referrers-mode',
        'tag',
      )
    ).trim();
    const b = (
      await tether(
        'attach',
        `${reg.host}/demo/signed:v1`,
        'sig.txt',
        '--artifact-type',
        'application/sig2',
        '--referrers-mode',
        'tag',
      )
    ).trim();
    const entries = async () =>
      (
        (await (await fetch(`${reg.url}/v2/demo/signed/manifests/${subject.replace(':', '-')}`)).json()) as {
          manifests: { digest: string }[];
        }
      ).manifests
        .map((m) => m.digest)
        .sort();
    assert.deepEqual(await entries(), [a, b].sort());
    await tether('manifest', 'delete', `${reg.host}/demo/signed@${a}`, '--referrers-mode', 'tag');
    assert.deepEqual(await entries(), [b]);
  });
});
