import assert from 'node:assert/strict';
import { test } from 'node:test';
import { missingServerSettings, SERVER_ENV, SERVER_NODE_FLAGS } from '../../src/cli/server-runtime.ts';

test('all server settings are missing from a bare node command line and environment', () => {
  assert.deepEqual(missingServerSettings([]), { flags: [...SERVER_NODE_FLAGS], env: { ...SERVER_ENV } });
  assert.deepEqual(missingServerSettings(['--enable-source-maps'], { HOME: '/root' }), {
    flags: [...SERVER_NODE_FLAGS],
    env: { ...SERVER_ENV },
  });
});

test("an operator's own heap size wins, on the command line or in NODE_OPTIONS, in either spelling", () => {
  assert.deepEqual(missingServerSettings(['--max-old-space-size=512']).flags, ['--max-semi-space-size=1']);
  assert.deepEqual(missingServerSettings(['--max_old_space_size=512']).flags, ['--max-semi-space-size=1']);
  assert.deepEqual(
    missingServerSettings([], { NODE_OPTIONS: '--max-semi-space-size=8  --trace-warnings' }).flags,
    ['--max-old-space-size=128'],
  );
  assert.deepEqual(
    missingServerSettings(['--max-semi-space-size=2'], { NODE_OPTIONS: '--max-old-space-size=256' }).flags,
    [],
  );
});

test("an operator's own thread pool size wins, even an empty one", () => {
  assert.deepEqual(missingServerSettings([], { UV_THREADPOOL_SIZE: '8' }).env, {});
  assert.deepEqual(missingServerSettings([], { UV_THREADPOOL_SIZE: '' }).env, {});
  assert.deepEqual(missingServerSettings(SERVER_NODE_FLAGS, { UV_THREADPOOL_SIZE: '8' }), {
    flags: [],
    env: {},
  });
});
