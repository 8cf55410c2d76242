import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseArgs } from 'node:util';
import { describeFailure } from '../../src/cli/failure.ts';
import { AuthError } from '../../src/client/auth.ts';
import { ClientError } from '../../src/client/errors.ts';
import { ConfigError } from '../../src/config-error.ts';
import { selfSignedCert } from '../helpers/certs.ts';

/** The error Node's HTTPS client raises for `https://127.0.0.1:PORT/` against `server`. */
async function httpsError(server: http.Server, options: https.RequestOptions = {}): Promise<Error> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    return await new Promise<Error>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/v2/', agent: false, ...options }, (res) => {
          res.resume();
          reject(new Error(`no TLS error: HTTP ${res.statusCode}`));
        })
        .on('error', resolve);
    });
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

function assertOneLine(message: string): void {
  assert.match(message, /^tether: /);
  assert.equal(message.split('\n').length, 1, message);
}

test("TLS failures are one line with what to do: a private CA's certificate, a name it lacks, plain HTTP", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-cli-failure-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const paths = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  selfSignedCert(paths, 'registry', 'DNS:registry.example');
  const tls = { cert: await readFile(paths.cert), key: await readFile(paths.key) };

  const untrusted = await httpsError(https.createServer(tls));
  assert.equal((untrusted as NodeJS.ErrnoException).code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
  const a = describeFailure(untrusted);
  assert.equal(a.exitCode, 1);
  assertOneLine(a.message);
  assert.match(a.message, /not trusted .*--ca-file \(or in NODE_EXTRA_CA_CERTS\)/);

  // Trusted, but issued for another name: a CA file would not help, and Node's error carries the whole
  // peer certificate, which must not be printed.
  const misnamed = await httpsError(https.createServer(tls), { ca: tls.cert });
  assert.equal((misnamed as NodeJS.ErrnoException).code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  const b = describeFailure(misnamed);
  assert.equal(b.exitCode, 1);
  assertOneLine(b.message);
  assert.match(b.message, /certificate was refused: .*altnames/);
  assert.doesNotMatch(b.message, /NODE_EXTRA_CA_CERTS|--ca-file/);

  const plain = await httpsError(http.createServer((_req, res) => res.end('{}')));
  assert.equal((plain as NodeJS.ErrnoException).code, 'EPROTO');
  const c = describeFailure(plain);
  assert.equal(c.exitCode, 1);
  assertOneLine(c.message);
  assert.match(c.message, /did not answer in TLS \(wrong version number\).*--plain-http/);
});

test('refusals, bad files and network failures are one line (exit 1); usage errors exit 2; bugs 70', () => {
  const stale = new AuthError(
    'rejected',
    'the registry refused the credentials (HTTP 401): run `tether login` again',
  );
  const cases: [unknown, 1 | 2 | 70, RegExp][] = [
    [stale, 1, /^tether: the registry refused the credentials/],
    [
      new ClientError('get manifest 127.0.0.1:5000/nope:v1: not found (NAME_UNKNOWN)', 404),
      1,
      /^tether: get manifest 127\.0\.0\.1:5000\/nope:v1: not found \(NAME_UNKNOWN\)$/,
    ],
    // What src/client/docker-config.ts throws for a config.json that is not JSON, or a missing helper.
    [new Error('cannot read /h/.docker/config.json: Expected property name'), 1, /^tether: cannot read /],
    [new SyntaxError('Unexpected token'), 1, /^tether: Unexpected token$/],
    [Object.assign(new Error('open x: ENOENT'), { code: 'ENOENT', syscall: 'open' }), 1, /ENOENT/],
    [
      // A host name with two addresses (localhost: ::1 and 127.0.0.1) that both refuse.
      Object.assign(new AggregateError([new Error('connect ECONNREFUSED ::1:5000')], ''), {
        code: 'ECONNREFUSED',
      }),
      1,
      /^tether: cannot reach the registry: connect ECONNREFUSED ::1:5000$/,
    ],
    [new ConfigError('--depth takes a positive integer'), 2, /^tether: --depth takes/],
    [new TypeError("Cannot read properties of undefined (reading 'x')"), 70, /a bug in tether/],
    ['a string thrown', 70, /a bug in tether/],
  ];
  try {
    parseArgs({ args: ['--bogus'], options: {}, strict: true });
  } catch (err) {
    cases.push([err, 2, /^tether: Unknown option '--bogus'/]);
  }
  for (const [err, exitCode, message] of cases) {
    const failure = describeFailure(err);
    assert.equal(failure.exitCode, exitCode, String(err));
    assert.match(failure.message, message);
    if (exitCode !== 70) assertOneLine(failure.message);
  }
  assert.match(describeFailure(new TypeError('boom')).message, /\n {4}at /, 'a bug comes with its stack');
});
