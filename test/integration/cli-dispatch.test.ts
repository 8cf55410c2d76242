import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function tether(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('commands load their modules on demand: help texts and dispatch still work', () => {
  const general = tether('help');
  assert.equal(general.status, 0);
  assert.match(general.stdout, /serve\s+Run the registry/);
  const client = tether('help', 'client');
  assert.equal(client.status, 0);
  assert.match(client.stdout, /discover/);
  assert.doesNotMatch(client.stdout, /serve\s+Run the registry/);
  const sign = tether('help', 'sign');
  assert.equal(sign.status, 0);
  assert.match(sign.stdout, /verify/);
  assert.doesNotMatch(sign.stdout, /serve\s+Run the registry/);
});

test('an unknown command exits 2 with the usage; a client command error is one line, exit 1 or 2', () => {
  const unknown = tether('frobnicate');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  const bad = tether('resolve', 'not a reference!');
  assert.ok(bad.status === 1 || bad.status === 2, `exit ${bad.status}`);
  assert.match(bad.stderr, /^tether: /);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
});
