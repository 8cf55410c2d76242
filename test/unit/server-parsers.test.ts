import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AccessPolicy } from '../../src/auth/access.ts';
import { parseHtpasswd } from '../../src/auth/htpasswd.ts';
import { parseScope } from '../../src/auth/scope.ts';
import { LoginThrottle } from '../../src/auth/throttle.ts';
import { loadConfig, parseListen } from '../../src/config.ts';
import { ConfigError } from '../../src/config-error.ts';
import type { OciError } from '../../src/oci/errors.ts';
import { KeyedLock } from '../../src/registry/keyed-lock.ts';
import { globToRegExp, PolicyResolver } from '../../src/registry/policy.ts';
import { nextLink, parseEntityTags, parsePageSize } from '../../src/server/http.ts';
import { matchRoute } from '../../src/server/router.ts';
import { parseRange } from '../../src/server/routes/blobs.ts';
import { parseContentRange } from '../../src/server/routes/uploads.ts';

describe('HTTP parsers', () => {
  test('Range (RFC 9110 single ranges)', () => {
    assert.deepEqual(parseRange('bytes=500-1499', 2048), { start: 500, end: 1499 });
    assert.deepEqual(parseRange('bytes=500-', 2048), { start: 500, end: 2047 });
    assert.deepEqual(parseRange('bytes=-500', 2048), { start: 1548, end: 2047 });
    assert.deepEqual(parseRange('bytes=-5000', 2048), { start: 0, end: 2047 });
    assert.deepEqual(parseRange('bytes=2000-5000', 2048), { start: 2000, end: 2047 });
    // 5-2 is invalid rather than unsatisfiable; RFC 9110 lets a server reject it, the OCI conformance
    // suite wants it rejected.
    for (const r of ['bytes=5000-10000', 'bytes=2048-', 'bytes=-0', 'bytes=5-2', 'bytes=500-0'])
      assert.equal(parseRange(r, 2048), 'unsatisfiable', r);
    assert.equal(parseRange('bytes=0-0', 0), 'unsatisfiable');
    for (const r of [undefined, 'bytes=0-1,3-4', 'items=0-1', 'bytes=-', 'garbage'])
      assert.equal(parseRange(r, 10), undefined, r);
  });
  test('Content-Range of chunks', () => {
    assert.deepEqual(parseContentRange('0-21'), { start: 0, end: 21 });
    assert.deepEqual(parseContentRange('bytes 22-41/*'), { start: 22, end: 41 });
    assert.equal(parseContentRange(undefined), undefined);
    for (const bad of ['abc', '5-2', '-1-2'])
      assert.throws(
        () => parseContentRange(bad),
        (e: OciError) => e.status === 400,
      );
  });
  test('entity tags, page sizes, Link', () => {
    assert.deepEqual(parseEntityTags('"sha256:a", W/"b" , *'), ['sha256:a', 'b', '*']);
    assert.equal(parseEntityTags(undefined), undefined);
    assert.equal(parsePageSize(null, 7, 100), 7);
    assert.equal(parsePageSize('100000', 7, 100), 100);
    assert.equal(parsePageSize('0', 7, 100), 0);
    for (const bad of ['-1', '1e3'])
      assert.throws(() => parsePageSize(bad, 7, 100), {
        status: 400,
        message: 'n must be a non-negative integer',
      });
    assert.equal(
      nextLink('/v2/a/tags/list', { n: '2', last: 'b', x: undefined }),
      '</v2/a/tags/list?n=2&last=b>; rel="next"',
    );
  });
});

describe('router', () => {
  test('routes are found from the right: names may contain endpoint words', () => {
    assert.deepEqual(matchRoute('GET', '/v2/a/blobs/blobs/sha256:x'), {
      route: 'blob',
      name: 'a/blobs',
      ref: 'sha256:x',
    });
    assert.deepEqual(matchRoute('POST', '/v2/a/manifests/b/blobs/uploads/'), {
      route: 'uploadStart',
      name: 'a/manifests/b',
      ref: '',
    });
    assert.equal(matchRoute('PATCH', '/v2/x/blobs/uploads/some-id').route, 'upload');
    assert.equal(matchRoute('GET', '/v2/x/manifests/sha256%3Aabc').ref, 'sha256:abc');
    assert.equal(matchRoute('GET', '/v2/').route, 'base');
    assert.equal(matchRoute('GET', '/v2/_catalog').route, 'catalog');
  });
  test('errors: invalid names 400, unknown paths 404, wrong methods 405 with Allow', () => {
    assert.throws(
      () => matchRoute('GET', '/v2/UP/tags/list'),
      (e: OciError) => e.code === 'NAME_INVALID',
    );
    assert.throws(
      () => matchRoute('GET', '/v3/x'),
      (e: OciError) => e.status === 404,
    );
    assert.throws(
      () => matchRoute('PUT', '/v2/x/tags/list'),
      (e: OciError) => e.status === 405 && e.headers.Allow === 'GET, HEAD',
    );
    assert.throws(
      () => matchRoute('GET', '/v2/x/manifests/%E0%A4%A'),
      (e: OciError) => e.status === 400,
    );
  });
});

describe('config', () => {
  test('defaults < file < env < flags < overrides, and errors that name the key and source', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tether-config-'));
    try {
      const yaml = join(dir, 'c.yaml');
      await writeFile(yaml, 'listen: 127.0.0.1:6000\ndata: /from-file\nlog:\n  level: warn\n');
      const json = join(dir, 'c.json');
      await writeFile(json, JSON.stringify({ delete: { enabled: false } }));
      assert.equal(loadConfig().listen, '127.0.0.1:5000');
      assert.equal(loadConfig().data, './data');
      const fromFile = loadConfig({ file: yaml });
      assert.equal(fromFile.listen, '127.0.0.1:6000');
      assert.equal(fromFile.log.level, 'warn');
      assert.equal(loadConfig({ file: json }).delete.enabled, false);
      const env = loadConfig({
        file: yaml,
        env: { TETHER_LISTEN: '127.0.0.1:7000', TETHER_DATA: '/from-env' },
      });
      assert.equal(env.listen, '127.0.0.1:7000');
      const flags = loadConfig({
        file: yaml,
        env: { TETHER_LISTEN: '127.0.0.1:7000' },
        flags: { listen: '127.0.0.1:8000' },
      });
      assert.equal(flags.listen, '127.0.0.1:8000');
      assert.equal(
        loadConfig({ flags: { listen: '127.0.0.1:8000' }, overrides: { listen: '127.0.0.1:9' } }).listen,
        '127.0.0.1:9',
      );
      await writeFile(yaml, 'nope: 1\n');
      assert.throws(
        () => loadConfig({ file: yaml }),
        (e: Error) => e instanceof ConfigError && /unknown setting "nope"/.test(e.message),
      );
      assert.throws(
        () => loadConfig({ env: { TETHER_LIMITS_MANIFEST_MAX_BYTES: 'many' } }),
        /TETHER_LIMITS_MANIFEST_MAX_BYTES/,
      );
      assert.throws(() => loadConfig({ env: { TETHER_DELETE_ENABLED: 'maybe' } }), /true or false/);
      assert.throws(() => loadConfig({ env: { TETHER_AUTH_MODE: 'ldap' } }), /none, basic, token/);
      assert.throws(
        () =>
          loadConfig({
            env: { TETHER_REFERRERS_POLICIES: '[{"repositories":"a","subjectPolicy":"maybe"}]' },
          }),
        /subjectPolicy/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  test('limits.sendIdleSeconds: 60 by default, set from a file or the environment, a whole number of seconds ≥ 1', async () => {
    assert.equal(loadConfig().limits.sendIdleSeconds, 60);
    assert.equal(loadConfig({ env: { TETHER_LIMITS_SEND_IDLE_SECONDS: '5' } }).limits.sendIdleSeconds, 5);
    const dir = await mkdtemp(join(tmpdir(), 'tether-config-'));
    try {
      const yaml = join(dir, 'c.yaml');
      await writeFile(yaml, 'limits:\n  sendIdleSeconds: 300\n');
      assert.equal(loadConfig({ file: yaml }).limits.sendIdleSeconds, 300);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    for (const bad of ['0', '-1', '1.5', 'soon'])
      assert.throws(
        () => loadConfig({ env: { TETHER_LIMITS_SEND_IDLE_SECONDS: bad } }),
        (e: Error) =>
          e instanceof ConfigError &&
          /limits\.sendIdleSeconds \(from TETHER_LIMITS_SEND_IDLE_SECONDS\) must be an integer ≥ 1/.test(
            e.message,
          ),
        bad,
      );
  });
  test('listen addresses', () => {
    assert.deepEqual(parseListen('127.0.0.1:5000'), { host: '127.0.0.1', port: 5000 });
    assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
    for (const bad of ['5000', 'host:', ':5000', 'h:70000', '::1:5000'])
      assert.throws(() => parseListen(bad), ConfigError, bad);
  });
});

describe('policies and auth logic', () => {
  test('globs: * within a segment, ** across', () => {
    assert.ok(globToRegExp('team/*').test('team/app'));
    assert.ok(!globToRegExp('team/*').test('team/app/sub'));
    assert.ok(globToRegExp('team/**').test('team/app/sub'));
    assert.ok(!globToRegExp('a.b').test('axb'), 'dots are literal');
  });
  test('referrer policies: first match wins, defaults otherwise', () => {
    const p = new PolicyResolver([
      { repositories: 'strict/**', subjectPolicy: 'require' },
      { repositories: '**', onSubjectDelete: 'cascade' },
    ]);
    assert.deepEqual(p.for('strict/x'), { subjectPolicy: 'require', onSubjectDelete: 'keep' });
    assert.deepEqual(p.for('other'), { subjectPolicy: 'accept', onSubjectDelete: 'cascade' });
  });
  test('access: union of matching rules; groups, authenticated, anonymous, admins', () => {
    const policy = new AccessPolicy(
      [
        { repositories: 'team/**', groups: ['devs'], actions: ['pull'] },
        { repositories: 'team/**', users: ['alice'], actions: ['push'] },
        { repositories: 'pub/**', anonymous: true, actions: ['pull'] },
        { repositories: 'pub/**', authenticated: true, actions: ['*'] },
      ],
      [{ name: 'devs', users: ['alice', 'bob'] }],
      ['root'],
    );
    assert.deepEqual([...policy.allowed({ user: 'alice' }, 'team/x')].sort(), ['pull', 'push']);
    assert.deepEqual([...policy.allowed({ user: 'bob' }, 'team/x')], ['pull']);
    assert.deepEqual([...policy.allowed({}, 'team/x')], []);
    assert.deepEqual([...policy.allowed({}, 'pub/x')], ['pull']);
    assert.deepEqual([...policy.allowed({ user: 'carol' }, 'pub/x')].sort(), ['delete', 'pull', 'push']);
    assert.deepEqual([...policy.allowed({ user: 'root' }, 'anything')].sort(), ['delete', 'pull', 'push']);
  });
  test('scopes and htpasswd parsing', () => {
    assert.deepEqual(parseScope('repository:a/b:pull,push'), {
      type: 'repository',
      name: 'a/b',
      actions: ['pull', 'push'],
    });
    assert.deepEqual(parseScope('repository(plugin):a:pull'), {
      type: 'repository',
      name: 'a',
      actions: ['pull'],
    });
    assert.deepEqual(parseScope('registry:catalog:*'), { type: 'registry', name: 'catalog', actions: ['*'] });
    assert.equal(parseScope('nonsense'), undefined);
    const hash = `$2y$10$${'a'.repeat(53)}`;
    const users = parseHtpasswd(`# comment\nalice:${hash}\nbob:{SHA}weak=\n bad line\ncarol:${hash}\r\n`);
    assert.deepEqual([...users.keys()], ['alice', 'carol']);
  });
  test('login throttle: client lockout grows, a failing user stays reachable from clean clients', () => {
    const throttle = new LoginThrottle({ clientFailures: 3, userFailures: 5 });
    const t0 = 1_000_000;
    for (let i = 0; i < 3; i++) throttle.fail('1.1.1.1', 'alice', t0);
    assert.ok(throttle.retryAfterMs('1.1.1.1', 'anyone', t0) > 0);
    assert.equal(throttle.retryAfterMs('2.2.2.2', 'alice', t0), 0);
    for (let i = 0; i < 5; i++) throttle.fail('3.3.3.3', 'bob', t0);
    assert.ok(throttle.retryAfterMs('3.3.3.3', 'bob', t0) > 0);
    assert.equal(throttle.retryAfterMs('4.4.4.4', 'bob', t0), 0, 'a clean client can still log in as bob');
    assert.equal(
      throttle.retryAfterMs('1.1.1.1', 'alice', t0 + 60 * 60_000),
      0,
      'forgotten after a quiet period',
    );
  });
  test('login throttle: logging in as oneself between guesses forgives none of them', () => {
    const throttle = new LoginThrottle({ clientFailures: 10, userFailures: 5 });
    const t0 = 1_000_000;
    // One guess at the victim, one good login as the attacker's own account, again and again.
    let refused = 0;
    for (let i = 0; i < 30; i++) {
      if (throttle.retryAfterMs('6.6.6.6', 'victim', t0) > 0) refused++;
      else throttle.fail('6.6.6.6', 'victim', t0);
      throttle.succeed('6.6.6.6', 'mallory');
    }
    // Before, each login wiped the client's record and every guess got through (30 of 30).
    assert.equal(30 - refused, 5, 'five guesses, then locked out of the victim (its threshold)');
    assert.equal(throttle.retryAfterMs('7.7.7.7', 'victim', t0), 0, 'the victim, from a clean client');
    // A user's own typos are forgiven by their login.
    throttle.fail('8.8.8.8', 'carol', t0);
    throttle.fail('8.8.8.8', 'carol', t0);
    throttle.succeed('8.8.8.8', 'carol');
    for (let i = 0; i < 9; i++) throttle.fail('8.8.8.8', `typo${i}`, t0);
    assert.equal(throttle.retryAfterMs('8.8.8.8', 'carol', t0), 0, 'carol typos no longer count');
  });
});

describe('keyed lock', () => {
  test('serialises per key, runs keys independently, releases after a throw', async () => {
    const lock = new KeyedLock();
    const order: string[] = [];
    const slow = (tag: string, ms: number) =>
      lock.run('k', async () => {
        order.push(`${tag}+`);
        await new Promise((r) => setTimeout(r, ms));
        order.push(`${tag}-`);
      });
    const other = lock.run('other', async () => {
      order.push('o');
    });
    await Promise.all([slow('a', 30), slow('b', 1), other]);
    assert.deepEqual(
      order.filter((x) => x !== 'o'),
      ['a+', 'a-', 'b+', 'b-'],
    );
    assert.ok(order.indexOf('o') < order.indexOf('a-'), 'another key did not wait');
    await assert.rejects(
      lock.run('k', async () => {
        throw new Error('boom');
      }),
      /^Error: boom$/,
    );
    assert.equal(await lock.run('k', async () => 42), 42);
  });
});
