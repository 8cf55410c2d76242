import assert from 'node:assert/strict';
import type { webcrypto } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';
import { editHtpasswd, hashPassword } from '../../src/auth/htpasswd.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { selfSignedCert } from '../helpers/certs.ts';
import { sha256 } from '../helpers/oci.ts';
import { spawnTether, tempDataDir } from '../helpers/tether-process.ts';

type CryptoKey = webcrypto.CryptoKey;

/** carol is authenticated but in no group: the group rule on team/** must not reach her. */
const USERS = { admin: 'admin-pw', alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw' } as const;
type User = keyof typeof USERS | 'anonymous';

const ACCESS = [
  { repositories: 'team/**', users: ['alice'], actions: ['pull', 'push', 'delete'] },
  { repositories: 'team/**', groups: ['readers'], actions: ['pull'] },
  { repositories: 'public/**', anonymous: true, actions: ['pull'] },
  { repositories: 'public/**', authenticated: true, actions: ['pull', 'push'] },
];
const GROUPS = [{ name: 'readers', users: ['bob'] }];

async function writeUsers(file: string): Promise<void> {
  const hashes = await Promise.all(Object.values(USERS).map((pw) => hashPassword(pw, 4)));
  await editHtpasswd(file, (users) => {
    Object.keys(USERS).forEach((u, i) => {
      users.set(u, hashes[i]!);
    });
  });
}

function basic(user: User): Record<string, string> {
  return user === 'anonymous'
    ? {}
    : { Authorization: `Basic ${Buffer.from(`${user}:${USERS[user]}`).toString('base64')}` };
}

async function startAuthRegistry(mode: 'basic' | 'token', dir: string, extra: Record<string, unknown> = {}) {
  await writeUsers(join(dir, 'htpasswd'));
  return startRegistry({
    storage: { data: dir },
    settings: {
      'auth.mode': mode,
      'auth.access': ACCESS,
      'auth.groups': GROUPS,
      'auth.admins': ['admin'],
      ...(extra as Record<string, string>),
    },
  });
}

async function token(reg: RunningRegistry, user: User, scopes: string[]): Promise<string> {
  const query = new URLSearchParams({ service: 'tether' });
  for (const s of scopes) query.append('scope', s);
  const res = await fetch(`${reg.url}/auth/token?${query}`, { headers: basic(user) });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { token: string }).token;
}

/** Content the matrix reads: an image with a referrer in each repository, pushed by the admin. */
async function seed(
  reg: RunningRegistry,
  headers: (repo: string) => Promise<Record<string, string>>,
  repo: string,
) {
  const h = await headers(repo);
  const put = async (data: string) => {
    const digest = sha256(data);
    const res = await fetch(`${reg.url}/v2/${repo}/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      body: data,
      headers: h,
    });
    assert.equal(res.status, 201, `seed blob in ${repo}: ${res.status}`);
    return digest;
  };
  const config = await put('{}');
  const layer = await put(`layer of ${repo}`);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 2 },
    layers: [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer, size: `layer of ${repo}`.length },
    ],
  });
  const res = await fetch(`${reg.url}/v2/${repo}/manifests/v1`, {
    method: 'PUT',
    body: manifest,
    headers: { ...h, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(res.status, 201);
  return { layer, manifest: sha256(manifest) };
}

type Family =
  | 'blob-get'
  | 'blob-head'
  | 'manifest-get'
  | 'tags'
  | 'referrers'
  | 'upload'
  | 'manifest-put'
  | 'manifest-delete'
  | 'blob-delete'
  | 'tag-delete';
const FAMILIES: Family[] = [
  'blob-get',
  'blob-head',
  'manifest-get',
  'tags',
  'referrers',
  'upload',
  'manifest-put',
  'manifest-delete',
  'blob-delete',
  'tag-delete',
];
const NEEDS: Record<Family, 'pull' | 'push' | 'delete'> = {
  'blob-get': 'pull',
  'blob-head': 'pull',
  'manifest-get': 'pull',
  tags: 'pull',
  referrers: 'pull',
  upload: 'push',
  'manifest-put': 'push',
  'manifest-delete': 'delete',
  'blob-delete': 'delete',
  'tag-delete': 'delete',
};

function policyAllows(user: User, repo: string, action: 'pull' | 'push' | 'delete'): boolean {
  if (user === 'admin') return true;
  if (repo.startsWith('team/')) return user === 'alice' || (user === 'bob' && action === 'pull');
  if (repo.startsWith('public/')) return action === 'pull' || (user !== 'anonymous' && action === 'push');
  return false;
}

/** One request of a family; deletes target content that does not exist, so allowed means 404. */
async function call(
  reg: RunningRegistry,
  family: Family,
  repo: string,
  layer: string,
  headers: Record<string, string>,
) {
  const v2 = `${reg.url}/v2/${repo}`;
  const missing = sha256(randomUUID());
  switch (family) {
    case 'blob-get':
      return fetch(`${v2}/blobs/${layer}`, { headers });
    case 'blob-head':
      return fetch(`${v2}/blobs/${layer}`, { method: 'HEAD', headers });
    case 'manifest-get':
      return fetch(`${v2}/manifests/v1`, { headers });
    case 'tags':
      return fetch(`${v2}/tags/list`, { headers });
    case 'referrers':
      return fetch(`${v2}/referrers/${missing}`, { headers });
    case 'upload':
      return fetch(`${v2}/blobs/uploads/`, { method: 'POST', headers });
    case 'manifest-put':
      return fetch(`${v2}/manifests/matrix`, {
        method: 'PUT',
        headers: { ...headers, 'Content-Type': 'application/vnd.oci.image.index.v1+json' },
        body: JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [],
        }),
      });
    case 'manifest-delete':
      return fetch(`${v2}/manifests/${missing}`, { method: 'DELETE', headers });
    case 'blob-delete':
      return fetch(`${v2}/blobs/${missing}`, { method: 'DELETE', headers });
    case 'tag-delete':
      return fetch(`${v2}/manifests/no-such-tag`, { method: 'DELETE', headers });
  }
}

const OK_STATUS: Record<Family, number[]> = {
  'blob-get': [200],
  'blob-head': [200],
  'manifest-get': [200],
  tags: [200],
  referrers: [200],
  upload: [202],
  'manifest-put': [201],
  'manifest-delete': [404],
  'blob-delete': [404],
  'tag-delete': [404],
};

for (const mode of ['basic', 'token'] as const) {
  describe(`auth ${mode}: scope matrix`, () => {
    let reg: RunningRegistry;
    let cleanup: () => Promise<void>;
    const layers: Record<string, string> = {};
    const REPOS = ['team/app', 'public/lib', 'secret/vault'];
    const headersFor = async (user: User, repo: string): Promise<Record<string, string>> => {
      if (mode === 'basic') return basic(user);
      const t = await token(reg, user, [`repository:${repo}:pull,push,delete`, 'registry:catalog:*']);
      return { Authorization: `Bearer ${t}` };
    };

    before(async () => {
      const tmp = await tempDataDir();
      cleanup = tmp.cleanup;
      reg = await startAuthRegistry(mode, tmp.dir);
      for (const repo of REPOS) layers[repo] = (await seed(reg, (r) => headersFor('admin', r), repo)).layer;
    });
    after(async () => {
      await reg.close();
      await cleanup();
    });

    for (const user of ['admin', 'alice', 'bob', 'carol', 'anonymous'] as const) {
      test(`${user}: every endpoint family on every repository is allowed or refused as the policy says`, async () => {
        for (const repo of [...REPOS, 'secret/missing']) {
          const headers =
            mode === 'token' && user === 'anonymous'
              ? await headersFor(user, repo)
              : await headersFor(user, repo);
          for (const family of FAMILIES) {
            const allowed = policyAllows(user, repo, NEEDS[family]);
            // The admin may do anything in a missing repository too; that is not an auth question.
            if (allowed && repo === 'secret/missing') continue;
            const res = await call(reg, family, repo, layers[repo] ?? sha256('x'), headers);
            const where = `${mode} ${user} ${family} ${repo}`;
            if (allowed) {
              assert.ok(
                OK_STATUS[family].includes(res.status),
                `${where}: expected ${OK_STATUS[family]}, got ${res.status}`,
              );
              continue;
            }
            const expectStatus = mode === 'token' || user === 'anonymous' ? 401 : 403;
            const text = await res.text();
            assert.equal(res.status, expectStatus, `${where}: ${text}`);
            if (family !== 'blob-head') {
              const code = (JSON.parse(text) as { errors: { code: string }[] }).errors[0]!.code;
              assert.equal(code, expectStatus === 401 ? 'UNAUTHORIZED' : 'DENIED', where);
            }
            if (expectStatus === 401)
              assert.match(
                res.headers.get('www-authenticate') ?? '',
                mode === 'basic' ? /^Basic / : /^Bearer realm=/,
              );
          }
        }
      });
    }

    test('refusals never reveal existence: an existing and a missing repository answer alike', async () => {
      for (const user of ['alice', 'anonymous'] as const) {
        for (const family of FAMILIES) {
          const a = await call(
            reg,
            family,
            'secret/vault',
            layers['secret/vault']!,
            await headersFor(user, 'secret/vault'),
          );
          const b = await call(
            reg,
            family,
            'secret/missing',
            layers['secret/vault']!,
            await headersFor(user, 'secret/missing'),
          );
          assert.equal(a.status, b.status, `${user} ${family}`);
          const norm = (s: string) => s.replaceAll('secret/vault', 'R').replaceAll('secret/missing', 'R');
          assert.equal(norm(await a.text()), norm(await b.text()), `${user} ${family}`);
        }
      }
    });

    test('mounts: only from repositories the caller may read, automatic mount included', async () => {
      const alice = await headersFor('alice', 'team/app');
      const mount = (digest: string, from?: string) =>
        fetch(`${reg.url}/v2/team/app/blobs/uploads/?mount=${digest}${from ? `&from=${from}` : ''}`, {
          method: 'POST',
          headers: alice,
        });
      assert.equal(
        (await mount(layers['secret/vault']!, 'secret/vault')).status,
        202,
        'no pull on the source',
      );
      assert.equal(
        (await mount(layers['secret/vault']!)).status,
        202,
        'automatic mount does not look into unreadable repositories',
      );
      assert.equal(
        (await fetch(`${reg.url}/v2/team/app/blobs/${layers['secret/vault']}`, { headers: alice })).status,
        404,
      );
      assert.equal((await mount(layers['public/lib']!, 'public/lib')).status, 201);
      assert.equal(
        (await fetch(`${reg.url}/v2/team/app/blobs/${layers['public/lib']}`, { headers: alice })).status,
        200,
      );
    });

    test('the catalog lists only what the caller may pull', async () => {
      const list = async (user: User) => {
        const res = await fetch(`${reg.url}/v2/_catalog`, { headers: await headersFor(user, 'public/lib') });
        assert.equal(res.status, 200, `${user}: ${res.status}`);
        return ((await res.json()) as { repositories: string[] }).repositories;
      };
      assert.deepEqual(await list('admin'), ['public/lib', 'secret/vault', 'team/app']);
      assert.deepEqual(await list('bob'), ['public/lib', 'team/app']);
      assert.deepEqual(await list('carol'), ['public/lib'], 'a group rule lists nothing to a non-member');
      assert.deepEqual(await list('anonymous'), ['public/lib']);
    });
  });
}

/**
 * GET /v2/ on 127.0.0.1:`port` with Basic credentials, from `localAddress` (a loopback address of its
 * own, so the throttle sees a client of its own), on a connection of its own; the status and any
 * Retry-After.
 */
function basicFrom(
  port: number,
  localAddress: string,
  user: string,
  password: string,
): Promise<{ status: number; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: '/v2/',
        localAddress,
        agent: false,
        headers: { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            ...(res.headers['retry-after'] ? { retryAfter: res.headers['retry-after'] } : {}),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('auth token: tokens that must be refused, refresh tokens, external issuers', () => {
  let reg: RunningRegistry;
  let dir: string;
  let cleanup: () => Promise<void>;
  let jwksFile: string;
  let externalKey: CryptoKey;
  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    const external = await generateKeyPair('ES256', { extractable: true });
    externalKey = external.privateKey as CryptoKey;
    jwksFile = join(dir, 'external-jwks.json');
    writeFileSync(
      jwksFile,
      JSON.stringify({ keys: [{ ...(await exportJWK(external.publicKey)), alg: 'ES256', kid: 'ext' }] }),
    );
    reg = await startAuthRegistry('token', dir, {
      'auth.token.trustedIssuers': [{ issuer: 'https://issuer.example', jwksFile, audience: 'tether' }],
    });
    await seed(
      reg,
      async (repo) => ({
        Authorization: `Bearer ${await token(reg, 'admin', [`repository:${repo}:pull,push`])}`,
      }),
      'team/app',
    );
  });
  after(async () => {
    await reg.close();
    await cleanup();
  });

  const pull = (t: string) =>
    fetch(`${reg.url}/v2/team/app/manifests/v1`, { headers: { Authorization: `Bearer ${t}` } });
  const ownKey = async () => {
    const jwk = JSON.parse(readFileSync(join(dir, 'auth', 'token-key.jwk'), 'utf8'));
    return importJWK(jwk, 'ES256');
  };
  const access = [{ type: 'repository', name: 'team/app', actions: ['pull'] }];

  test('a valid token works; expired, forged, wrong-audience, wrong-issuer and garbage tokens get 401 invalid_token', async () => {
    assert.equal((await pull(await token(reg, 'alice', ['repository:team/app:pull']))).status, 200);
    const key = await ownKey();
    const sign = (claims: { aud?: string; iss?: string; exp?: number }, signingKey = key) =>
      new SignJWT({ access })
        .setProtectedHeader({ alg: 'ES256' })
        .setIssuer(claims.iss ?? 'tether')
        .setAudience(claims.aud ?? 'tether')
        .setSubject('alice')
        .setIssuedAt()
        .setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 60)
        .sign(signingKey);
    assert.equal((await pull(await sign({}))).status, 200, 'control: our own key, right claims');
    const forgedKey = (await generateKeyPair('ES256')).privateKey;
    for (const [label, t] of [
      ['expired', await sign({ exp: Math.floor(Date.now() / 1000) - 120 })],
      ['forged', await sign({}, forgedKey as CryptoKey)],
      ['wrong audience', await sign({ aud: 'other-registry' })],
      ['wrong issuer', await sign({ iss: 'mallory' })],
      ['garbage', 'not.a.jwt'],
    ] as const) {
      const res = await pull(t);
      assert.equal(res.status, 401, label);
      assert.match(res.headers.get('www-authenticate')!, /error="invalid_token"/, label);
      assert.equal(((await res.json()) as { errors: { code: string }[] }).errors[0]!.code, 'UNAUTHORIZED');
    }
  });

  test('a request for another service is refused with 400 before any password is checked', async () => {
    const wrong = await fetch(`${reg.url}/auth/token?service=other-registry&scope=repository:team/app:pull`, {
      headers: basic('alice'),
    });
    assert.equal(wrong.status, 400);
    const body = (await wrong.json()) as { errors: { code: string; message: string }[] };
    assert.equal(body.errors[0]?.code, 'UNSUPPORTED');
    assert.match(body.errors[0]!.message, /this token service is "tether", not "other-registry"/);
    const form = await fetch(`${reg.url}/auth/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        service: 'elsewhere',
        grant_type: 'password',
        username: 'alice',
        password: 'x',
      }),
    });
    assert.equal(form.status, 400, 'refused before the wrong password could count');
    // No service named (some clients send none) is taken as this one.
    const unnamed = await fetch(`${reg.url}/auth/token?scope=repository:team/app:pull`, {
      headers: basic('alice'),
    });
    assert.equal(unnamed.status, 200);
  });

  test('a token without the needed scope gets a challenge naming it (scope upgrade pull → pull,push)', async () => {
    const pullOnly = await token(reg, 'alice', ['repository:team/app:pull']);
    const res = await fetch(`${reg.url}/v2/team/app/blobs/uploads/`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${pullOnly}` },
    });
    assert.equal(res.status, 401);
    const challenge = res.headers.get('www-authenticate')!;
    assert.match(challenge, /scope="repository:team\/app:pull,push"/);
    assert.match(challenge, /error="insufficient_scope"/);
    const upgraded = await token(reg, 'alice', ['repository:team/app:pull,push']);
    assert.equal(
      (
        await fetch(`${reg.url}/v2/team/app/blobs/uploads/`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${upgraded}` },
        })
      ).status,
      202,
    );
    // Asking for more than the policy allows grants only what is allowed.
    const bobs = await fetch(
      `${reg.url}/auth/token?service=tether&scope=repository:team/app:pull,push,delete`,
      { headers: basic('bob') },
    );
    assert.equal(((await bobs.json()) as { scope: string }).scope, 'repository:team/app:pull');
  });

  test('OAuth2 form: password grant with offline access, refresh grant, refusal once the user is gone', async () => {
    const form = (fields: Record<string, string>) =>
      fetch(`${reg.url}/auth/token`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ service: 'tether', client_id: 'test', ...fields }),
      });
    const first = await form({
      grant_type: 'password',
      username: 'alice',
      password: USERS.alice,
      access_type: 'offline',
      scope: 'repository:team/app:pull',
    });
    assert.equal(first.status, 200);
    const { refresh_token, access_token } = (await first.json()) as {
      refresh_token: string;
      access_token: string;
    };
    assert.ok(refresh_token);
    assert.equal((await pull(access_token)).status, 200);
    assert.equal((await pull(refresh_token)).status, 401, 'a refresh token is not an access token');
    const refreshed = await form({
      grant_type: 'refresh_token',
      refresh_token,
      scope: 'repository:team/app:pull',
    });
    assert.equal(refreshed.status, 200);
    assert.equal(
      (await pull(((await refreshed.json()) as { access_token: string }).access_token)).status,
      200,
    );
    assert.equal((await form({ grant_type: 'password', username: 'alice', password: 'wrong' })).status, 401);
    await editHtpasswd(join(dir, 'htpasswd'), (users) => {
      users.delete('alice');
    });
    await new Promise((r) => setTimeout(r, 1100)); // the file is re-checked at most once a second
    assert.equal((await form({ grant_type: 'refresh_token', refresh_token })).status, 401);
    // The same name added again (the same password, a new salt) is someone the old token never met.
    await writeUsers(join(dir, 'htpasswd'));
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(
      (await form({ grant_type: 'refresh_token', refresh_token })).status,
      401,
      'name added again',
    );
    // And a password change ends the refresh tokens issued against the old one.
    const again = (await (
      await form({ grant_type: 'password', username: 'alice', password: USERS.alice, access_type: 'offline' })
    ).json()) as { refresh_token: string };
    assert.equal(
      (await form({ grant_type: 'refresh_token', refresh_token: again.refresh_token })).status,
      200,
    );
    const changed = await hashPassword('alice-new-pw', 4);
    await editHtpasswd(join(dir, 'htpasswd'), (users) => {
      users.set('alice', changed);
    });
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(
      (await form({ grant_type: 'refresh_token', refresh_token: again.refresh_token })).status,
      401,
      'password changed',
    );
    await writeUsers(join(dir, 'htpasswd'));
  });

  test('tokens from a trusted external issuer are accepted for the scopes they carry', async () => {
    const sign = (iss: string, expires = true) => {
      const jwt = new SignJWT({ access })
        .setProtectedHeader({ alg: 'ES256', kid: 'ext' })
        .setIssuer(iss)
        .setAudience('tether')
        .setSubject('ci-bot');
      return (expires ? jwt.setExpirationTime('1m') : jwt).sign(externalKey);
    };
    assert.equal((await pull(await sign('https://issuer.example'))).status, 200);
    assert.equal((await pull(await sign('https://other.example'))).status, 401);
    // Without an expiry, a token would be good forever (audit-sec #12).
    assert.equal((await pull(await sign('https://issuer.example', false))).status, 401);
    const keys = (await (await fetch(`${reg.url}/auth/jwks.json`)).json()) as {
      keys: { kty: string; d?: string }[];
    };
    assert.equal(keys.keys[0]!.kty, 'EC');
    assert.equal(keys.keys[0]!.d, undefined, 'never the private part');
  });

  test("an external token's subject is not a local user: it gets what it grants, not that user's rights", async () => {
    const { layer } = await seed(
      reg,
      async (repo) => ({
        Authorization: `Bearer ${await token(reg, 'admin', [`repository:${repo}:pull,push`])}`,
      }),
      'secret/vault',
    );
    // `admin` is an admin here; in the issuer's world it is someone granted team/app and ext/x only.
    const external = await new SignJWT({
      access: [
        ...access,
        { type: 'repository', name: 'ext/x', actions: ['pull', 'push'] },
        { type: 'registry', name: 'catalog', actions: ['*'] },
      ],
    })
      .setProtectedHeader({ alg: 'ES256', kid: 'ext' })
      .setIssuer('https://issuer.example')
      .setAudience('tether')
      .setSubject('admin')
      .setExpirationTime('1m')
      .sign(externalKey);
    const headers = { Authorization: `Bearer ${external}` };
    const catalog = await fetch(`${reg.url}/v2/_catalog`, { headers });
    assert.deepEqual(((await catalog.json()) as { repositories: string[] }).repositories, ['team/app']);
    const mount = await fetch(`${reg.url}/v2/ext/x/blobs/uploads/?mount=${layer}&from=secret/vault`, {
      method: 'POST',
      headers,
    });
    assert.equal(mount.status, 202, 'no mount from a repository the token does not grant');
    assert.equal((await fetch(`${reg.url}/v2/ext/x/blobs/${layer}`, { headers })).status, 404);
    // The same subject in a token of our own is the local admin.
    const own = await token(reg, 'admin', ['registry:catalog:*']);
    const all = await fetch(`${reg.url}/v2/_catalog`, { headers: { Authorization: `Bearer ${own}` } });
    assert.deepEqual(((await all.json()) as { repositories: string[] }).repositories, [
      'secret/vault',
      'team/app',
    ]);
  });
});

describe('brute force', () => {
  test('1000 wrong passwords from one address are refused fast (429) and do not slow another user', async (t) => {
    const { dir, cleanup } = await tempDataDir();
    const reg = await startAuthRegistry('basic', dir);
    t.after(async () => {
      await reg.close();
      await cleanup();
    });
    const port = Number(reg.host.split(':')[1]);
    const request = (localAddress: string, user: string, password: string) =>
      basicFrom(port, localAddress, user, password);
    let attackerDone = false;
    const attacker = (async () => {
      const statuses: number[] = [];
      for (let batch = 0; batch < 20; batch++) {
        const results = await Promise.all(
          Array.from({ length: 50 }, () => request('127.0.0.2', 'alice', `guess-${randomUUID()}`)),
        );
        statuses.push(...results.map((r) => r.status));
        if (batch === 19) assert.ok(Number(results[0]!.retryAfter) >= 1, 'Retry-After on refusals');
      }
      attackerDone = true;
      return statuses;
    })();
    // Meanwhile a legitimate user on another address works normally, many times over.
    let legit = 0;
    while (!attackerDone) {
      assert.equal((await request('127.0.0.3', 'bob', USERS.bob)).status, 200);
      legit++;
    }
    const statuses = await attacker;
    assert.equal(statuses.length, 1000);
    const checked = statuses.filter((s) => s === 401).length;
    const refused = statuses.filter((s) => s === 429).length;
    assert.equal(checked + refused, 1000, 'only 401 and 429');
    assert.ok(checked <= 60, `bcrypt ran for at most the threshold plus in-flight attempts, ran ${checked}`);
    assert.ok(legit > 0, 'the legitimate user was served during the burst');
    // Even the right password from the locked-out address is refused for now…
    assert.equal((await request('127.0.0.2', 'alice', USERS.alice)).status, 429);
    // …but alice herself, from her own machine, is not locked out by the attacker.
    assert.equal((await request('127.0.0.4', 'alice', USERS.alice)).status, 200);
  });

  test('wrong passwords sent all at once run bcrypt at most clientFailures times; the right one, once', async (t) => {
    // A server process of its own: in this one, the requests' sending and the server's bcrypt runs
    // take turns on one event loop and hardly overlap.
    const { dir, cleanup } = await tempDataDir();
    // bcrypt's usual cost, so a check takes tens of milliseconds and requests overlap.
    const hash = await hashPassword('carol-pw', 10);
    await editHtpasswd(join(dir, 'htpasswd'), (users) => {
      users.set('carol', hash);
    });
    mkdirSync(join(dir, 'data'));
    const reg = await spawnTether(join(dir, 'data'), ['--log-level', 'error'], {
      TETHER_AUTH_MODE: 'basic',
      TETHER_AUTH_HTPASSWD: join(dir, 'htpasswd'),
    });
    t.after(async () => {
      await reg.stop();
      await cleanup();
    });
    const port = Number(reg.host.split(':')[1]);
    const request = async (localAddress: string, password: string) =>
      (await basicFrom(port, localAddress, 'carol', password)).status;
    // Counted only once bcrypt had answered, 300 guesses at once got 230 bcrypt runs (audit-sec #2).
    const guesses = await Promise.all(
      Array.from({ length: 300 }, () => request('127.0.0.6', `guess-${randomUUID()}`)),
    );
    const checked = guesses.filter((s) => s === 401).length;
    assert.equal(checked + guesses.filter((s) => s === 429).length, 300, 'only 401 and 429');
    assert.ok(checked <= 10, `bcrypt ran ${checked} times for one address's burst`);
    // Parallel requests with the right credentials share one check: none is refused as a burst.
    const logins = await Promise.all(Array.from({ length: 40 }, () => request('127.0.0.7', 'carol-pw')));
    assert.deepEqual(new Set(logins), new Set([200]));
  });

  test('behind a trusted reverse proxy, failures count against the forwarded client, not the proxy', async (t) => {
    const { dir, cleanup } = await tempDataDir();
    mkdirSync(join(dir, 'a'));
    mkdirSync(join(dir, 'b'));
    const behind = await startAuthRegistry('basic', join(dir, 'a'), { 'auth.trustedProxies': ['127.0.0.1'] });
    const direct = await startAuthRegistry('basic', join(dir, 'b'));
    t.after(async () => {
      await behind.close();
      await direct.close();
      await cleanup();
    });
    const login = (reg: RunningRegistry, forwardedFor: string, password: string) =>
      fetch(`${reg.url}/v2/`, {
        headers: {
          Authorization: `Basic ${Buffer.from(`alice:${password}`).toString('base64')}`,
          'X-Forwarded-For': forwardedFor,
        },
      }).then((res) => res.status);
    for (const reg of [behind, direct]) {
      for (let i = 0; i < 12; i++) await login(reg, '198.51.100.7', 'wrong');
      assert.equal(await login(reg, '198.51.100.7', USERS.alice), 429, 'the guessing client is locked out');
    }
    // Another client through the same proxy: its own record counts, not the first one's.
    assert.equal(await login(behind, '198.51.100.8', USERS.alice), 200);
    // Without the setting the header is nobody's word: every client behind 127.0.0.1 is one client.
    assert.equal(await login(direct, '198.51.100.8', USERS.alice), 429);
  });
});

describe('TLS', () => {
  test('HTTPS over HTTP/2 and HTTP/1.1; a replaced certificate is picked up without a restart', async (t) => {
    const { dir, cleanup } = await tempDataDir();
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    const makeCert = (cn: string) => selfSignedCert({ cert, key }, cn, 'IP:127.0.0.1');
    makeCert('first');
    const reg = await startRegistry({ settings: { 'tls.cert': cert, 'tls.key': key } });
    t.after(async () => {
      await reg.close();
      await cleanup();
    });
    assert.match(reg.url, /^https:\/\//);
    const h2get = (ca: Buffer) =>
      new Promise<{ status: number; cn: string }>((resolve, reject) => {
        const session = http2.connect(reg.url, { ca });
        session.on('error', reject);
        const req = session.request({ ':path': '/v2/' });
        // Until the reload, the old certificate fails verification: that is an answer, not a crash.
        req.on('error', (err) => {
          session.destroy();
          reject(err);
        });
        req.on('response', (headers) => {
          const cn = (
            session.socket as unknown as { getPeerCertificate(): { subject: { CN: string } } }
          ).getPeerCertificate().subject.CN;
          req.resume();
          req.on('end', () => {
            session.close();
            resolve({ status: Number(headers[':status']), cn });
          });
        });
        req.end();
      });
    const first = h2get(readFileSync(cert));
    assert.deepEqual(await first, { status: 200, cn: 'first' });
    const h1 = await new Promise<number>((resolve, reject) => {
      https
        .get(`${reg.url}/v2/`, { ca: readFileSync(cert) }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        })
        .on('error', reject);
    });
    assert.equal(h1, 200);
    makeCert('second');
    const ca = readFileSync(cert);
    let seen = '';
    for (let i = 0; i < 50 && seen !== 'second'; i++) {
      await new Promise((r) => setTimeout(r, 200));
      seen = await h2get(ca).then(
        (r) => r.cn,
        () => '',
      );
    }
    assert.equal(seen, 'second');
  });
});
