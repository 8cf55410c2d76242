/**
 * How the client words a registry's refusal (notes/audit-cli.md, nits N3 and N4): the error names the
 * repository and reference, and a login without the rights is not told to log in again.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { editHtpasswd, hashPassword } from '../../src/auth/htpasswd.ts';
import { bufferSource } from '../../src/client/blob-source.ts';
import { RegistryClient } from '../../src/client/client.ts';
import { ClientError } from '../../src/client/errors.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const PASSWORD = 'errors-secret';
const DIGEST = `sha256:${'1'.repeat(64)}`;

let dir: string;
let cleanup: () => Promise<void>;

before(async () => {
  ({ dir, cleanup } = await tempDataDir());
  const hash = await hashPassword(PASSWORD, 4);
  await editHtpasswd(join(dir, 'htpasswd'), (users) => {
    users.set('alice', hash);
    users.set('bob', hash);
  });
});
after(() => cleanup());

/** alice may push anywhere; bob may only pull, and only under ro/. */
function authRegistry(mode: 'basic' | 'token'): Promise<RunningRegistry> {
  return startRegistry({
    storage: { data: join(dir, mode) },
    settings: {
      'auth.mode': mode,
      'auth.htpasswd': join(dir, 'htpasswd'),
      'auth.access': [
        { repositories: '**', users: ['alice'], actions: ['pull', 'push', 'delete'] },
        { repositories: 'ro/**', users: ['bob'], actions: ['pull'] },
      ],
    },
  });
}

const as = (username: string) =>
  new RegistryClient({ credentials: async () => ({ username, password: PASSWORD }) });

/** The message of what `promise` rejects with, which must be a ClientError. */
async function failure(promise: Promise<unknown>): Promise<ClientError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ClientError, String(err));
    return err;
  }
  assert.fail('expected a failure');
}

describe('errors name the repository and reference (N4)', () => {
  let reg: RunningRegistry;
  before(async () => {
    reg = await startRegistry();
  });
  after(() => reg.close());

  test('not found: manifests, blobs, tags, by tag and by digest', async () => {
    const client = new RegistryClient();
    const nope = { host: reg.host, repository: 'nope' };
    const tag = await failure(client.resolve({ ...nope, tag: 'v1' }));
    assert.equal(tag.message, `get manifest ${reg.host}/nope:v1: not found (NAME_UNKNOWN)`);
    assert.equal(tag.status, 404);
    const byDigest = await failure(client.getManifest({ ...nope, digest: DIGEST }));
    assert.equal(byDigest.message, `get manifest ${reg.host}/nope@${DIGEST}: not found (NAME_UNKNOWN)`);
    await client.uploadBlob({ ...nope, repository: 'there' }, bufferSource(Buffer.from('x')));
    const blob = await failure(client.getBlob({ host: reg.host, repository: 'there' }, DIGEST));
    assert.equal(blob.message, `get blob ${reg.host}/there@${DIGEST}: not found (BLOB_UNKNOWN)`);
    const tags = await failure(client.listTags(nope));
    assert.equal(tags.message, `list tags of ${reg.host}/nope: not found (NAME_UNKNOWN)`);
  });

  test('the CLI prints the same line', async () => {
    const run = await new Promise<{ code: number; err: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'resolve', `${reg.host}/nope:v1`], (err, _out, stderr) =>
        resolve({ code: (err as { code?: number } | null)?.code ?? 0, err: stderr }),
      ),
    );
    assert.equal(run.code, 1);
    assert.equal(run.err, `tether: get manifest ${reg.host}/nope:v1: not found (NAME_UNKNOWN)\n`);
  });

  test('errors that say the same are said once, with the digests their details name', async () => {
    const client = new RegistryClient();
    const ref = { host: reg.host, repository: 'sizes' };
    const layers = [];
    for (let i = 0; i < 5; i++) {
      const source = bufferSource(Buffer.from(`layer ${i}`));
      await client.uploadBlob(ref, source);
      // Each layer declared one byte longer than it is: five refusals with one code and one message.
      layers.push({ mediaType: 'application/octet-stream', digest: source.digest, size: source.size + 1 });
    }
    const config = bufferSource(Buffer.from('{}'));
    await client.uploadBlob(ref, config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: 2 },
        layers,
      }),
    );
    const err = await failure(
      client.putManifest(ref, 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json'),
    );
    const named = layers.slice(0, 3).map((l) => l.digest);
    assert.match(
      err.message,
      /^put manifest .*: HTTP 400 \(MANIFEST_INVALID: descriptor size does not match[^;]*: /,
    );
    assert.ok(err.message.includes(`${named.join(', ')} and 2 more)`), err.message);
    assert.equal(err.message.split('MANIFEST_INVALID').length, 2, 'the code is said once');
  });

  test("other statuses quote the registry's errors on one line, cut short", async (t) => {
    const server = http.createServer((_req, res) => {
      const message = `line one\nline two ${'x'.repeat(500)}`;
      res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message }] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise((resolve) => server.close(resolve)));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const err = await failure(
      new RegistryClient().deleteBlob({ host, repository: 'a/b' }, DIGEST).catch((e) => Promise.reject(e)),
    );
    assert.match(
      err.message,
      new RegExp(`^delete blob ${host}/a/b@${DIGEST}: HTTP 500 \\(UNKNOWN: line one line two x+…\\)$`),
    );
    assert.ok(err.message.length < 400, err.message);
  });
});

describe('a login without the rights is told so, not to log in again (N3)', () => {
  for (const mode of ['token', 'basic'] as const) {
    test(`${mode} auth`, async (t) => {
      const reg = await authRegistry(mode);
      t.after(() => reg.close());
      const ro = { host: reg.host, repository: 'ro/x' };
      const blob = bufferSource(Buffer.from('no rights'));
      const bob = await failure(as('bob').uploadBlob(ro, blob));
      const why =
        mode === 'token' ? 'insufficient scope' : 'DENIED: requested access to the resource is denied';
      assert.equal(bob.message, `upload blob ${reg.host}/ro/x@${blob.digest}: not allowed to push (${why})`);
      assert.doesNotMatch(bob.message, /login/);
      // bob may pull there, and alice may push: the same calls, with rights, work.
      await as('alice').uploadBlob(ro, blob);
      assert.equal((await as('bob').getBlob(ro, blob.digest)).toString(), 'no rights');
      // Without credentials, logging in is the answer.
      const anonymous = await failure(
        new RegistryClient({ credentials: async () => undefined }).uploadBlob(ro, blob),
      );
      assert.equal(
        anonymous.message,
        `upload blob ${reg.host}/ro/x@${blob.digest}: authentication required; run \`tether login ${reg.host}\``,
      );
    });
  }

  test('the CLI, logged in as a user who may only pull (the audit case)', async (t) => {
    const reg = await authRegistry('token');
    t.after(() => reg.close());
    const docker = join(dir, 'docker-bob');
    await mkdir(docker, { recursive: true });
    const auth = Buffer.from(`bob:${PASSWORD}`).toString('base64');
    await writeFile(join(docker, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth } } }));
    await writeFile(join(dir, 'a.txt'), 'a');
    // In `dir`: push titles a file by the (relative) path it is named by.
    const run = await new Promise<{ code: number; err: string }>((resolve) =>
      execFile(
        process.execPath,
        [CLI, 'push', `${reg.host}/ro/x:v1`, 'a.txt', '--artifact-type', 't/x'],
        { env: { ...process.env, DOCKER_CONFIG: docker }, cwd: dir },
        (err, _out, stderr) => resolve({ code: (err as { code?: number } | null)?.code ?? 0, err: stderr }),
      ),
    );
    assert.equal(run.code, 1, run.err);
    assert.match(
      run.err,
      /^tether: upload blob .*\/ro\/x@sha256:[0-9a-f]{64}: not allowed to push \(insufficient scope\)\n$/,
    );
  });
});
