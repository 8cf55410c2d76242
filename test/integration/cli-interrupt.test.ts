/**
 * Ctrl-C in the middle of a download leaves no temporary file behind: the real `tether` program pulls
 * from a registry that sends the first MiB of a layer and then stalls, is interrupted there, and must
 * end by SIGINT (status 130 in a shell) with its output directory holding no partial file.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { CLI } from '../helpers/cli.ts';
import { sha256 } from '../helpers/oci.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const LAYER_SIZE = 8 * 1024 * 1024;
const layerDigest = sha256(Buffer.alloc(LAYER_SIZE, 7));
const config = Buffer.from('{}');
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: 'application/x.interrupt',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(config), size: config.length },
    layers: [
      {
        mediaType: 'application/octet-stream',
        digest: layerDigest,
        size: LAYER_SIZE,
        annotations: { 'org.opencontainers.image.title': 'big.bin' },
      },
    ],
  }),
);

let home: string;
let removeHome: () => Promise<void>;
let server: Server;
let host: string;
/** Resolved once per layer request, when its first MiB is sent and the registry stalls. */
let stalled: () => void = () => {};

before(async () => {
  ({ dir: home, cleanup: removeHome } = await tempDataDir());
  await writeFile(join(home, 'placeholder'), '');
  server = createServer((req, res) => {
    const path = req.url ?? '';
    if (path === '/v2/') return res.writeHead(200, { 'content-length': 0 }).end();
    if (path.endsWith('/manifests/v1') || path.endsWith(`/manifests/${sha256(manifest)}`)) {
      res.writeHead(200, {
        'content-type': 'application/vnd.oci.image.manifest.v1+json',
        'content-length': manifest.length,
        'docker-content-digest': sha256(manifest),
      });
      return res.end(req.method === 'HEAD' ? undefined : manifest);
    }
    if (path.endsWith(`/blobs/${sha256(config)}`)) {
      res.writeHead(200, { 'content-length': config.length });
      return res.end(req.method === 'HEAD' ? undefined : config);
    }
    if (path.endsWith(`/blobs/${layerDigest}`)) {
      res.writeHead(200, { 'content-length': LAYER_SIZE });
      if (req.method === 'HEAD') return res.end();
      // The first MiB, then nothing: the download is under way and will not finish.
      res.write(Buffer.alloc(1024 * 1024, 7), () => stalled());
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'no such thing' }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await removeHome();
});

/** Every file and directory under `dir`, relative to it. */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true }).catch(() => []);
  return entries.map((entry) => relative(dir, join(dir, entry))).sort();
}

/**
 * Runs tether until the registry has stalled mid-layer and `underWay` holds for the files under the home
 * directory (the partial file it must remove exists), then interrupts it; answers how it ended.
 */
async function interruptMidLayer(
  args: string[],
  underWay: (names: string[]) => boolean,
): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  const layerStarted = new Promise<void>((resolve) => {
    stalled = resolve;
  });
  const child = spawn(process.execPath, [CLI, ...args], { cwd: home, env: { ...process.env, HOME: home } });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const ended = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('close', (_code, signal) => resolve(signal)),
  );
  await layerStarted;
  // Interrupted before its partial file exists, the client would leave none behind whatever it does.
  const deadline = performance.now() + 10_000;
  let names = await tree(home);
  while (!underWay(names)) {
    if (performance.now() > deadline) {
      child.kill('SIGKILL');
      assert.fail(`the download never got under way: ${names.join(', ')}\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    names = await tree(home);
  }
  child.kill('SIGINT');
  return { signal: await ended, stderr };
}

test('an interrupted copy into a layout leaves no partial blob', async () => {
  const configBlob = join('copied', 'blobs', 'sha256', sha256(config).slice(7));
  const { signal, stderr } = await interruptMidLayer(
    ['cp', `${host}/app:v1`, 'oci:copied:v1'],
    (names) =>
      names.includes(configBlob) && names.some((name) => /^copied\/blobs\/sha256\/\.tmp-/.test(name)),
  );
  assert.equal(signal, 'SIGINT', stderr);
  const left = await tree(join(home, 'copied'));
  assert.deepEqual(
    left.filter((name) => /\.tmp-|\.index\.json\./.test(name)),
    [],
    `left behind: ${left.join(', ')}`,
  );
  // The blobs that did arrive stay: a later copy does not fetch them again.
  assert.ok(left.includes(relative('copied', configBlob)), left.join(', '));
});

test('an interrupted pull leaves no staging directory', async () => {
  const { signal, stderr } = await interruptMidLayer(['pull', `${host}/app:v1`, '-o', 'pulled'], (names) =>
    names.some((name) => /^pulled\/\.tether-pull-[^/]+\/./.test(name)),
  );
  assert.equal(signal, 'SIGINT', stderr);
  assert.deepEqual(await tree(join(home, 'pulled')), []);
});

test('an interrupted blob get leaves no partial file', async () => {
  const { signal, stderr } = await interruptMidLayer(
    ['blob', 'get', `${host}/app@${layerDigest}`, '-o', 'one.bin'],
    (names) => names.includes('one.bin.tether-partial'),
  );
  assert.equal(signal, 'SIGINT', stderr);
  assert.deepEqual(
    (await tree(home)).filter((name) => name.startsWith('one.bin')),
    [],
  );
});
