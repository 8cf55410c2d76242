import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  missingServerSettings,
  nodeAccepts,
  SERVER_ENV,
  SERVER_NODE_FLAGS,
} from '../../src/cli/server-runtime.ts';

test('all server settings are missing from a bare node command line and environment', () => {
  assert.deepEqual(missingServerSettings([]), { flags: [...SERVER_NODE_FLAGS], env: { ...SERVER_ENV } });
  assert.deepEqual(missingServerSettings(['--enable-source-maps'], { HOME: '/root' }), {
    flags: [...SERVER_NODE_FLAGS],
    env: { ...SERVER_ENV },
  });
});

test("an operator's own heap size wins, on the command line or in NODE_OPTIONS, in either spelling", () => {
  const others = SERVER_NODE_FLAGS.filter((flag) => !flag.startsWith('--max-old-space-size'));
  assert.deepEqual(missingServerSettings(['--max-old-space-size=512']).flags, others);
  assert.deepEqual(missingServerSettings(['--max_old_space_size=512']).flags, others);
  assert.deepEqual(
    missingServerSettings([], { NODE_OPTIONS: '--max-semi-space-size=8  --trace-warnings' }).flags,
    SERVER_NODE_FLAGS.filter((flag) => !flag.startsWith('--max-semi-space-size')),
  );
  assert.deepEqual(
    missingServerSettings(['--max-semi-space-size=2', '--incremental-marking-soft-trigger=0'], {
      NODE_OPTIONS: '--max-old-space-size=256 --incremental_marking_hard_trigger=0 --heap-growing-percent=25',
    }).flags,
    [],
  );
});

test("an operator's own thread pool size and malloc arenas win, even empty ones", () => {
  assert.deepEqual(missingServerSettings([], { UV_THREADPOOL_SIZE: '8' }).env, { MALLOC_ARENA_MAX: '2' });
  assert.deepEqual(missingServerSettings([], { MALLOC_ARENA_MAX: '' }).env, { UV_THREADPOOL_SIZE: '64' });
  assert.deepEqual(
    missingServerSettings(SERVER_NODE_FLAGS, { UV_THREADPOOL_SIZE: '8', MALLOC_ARENA_MAX: '4' }),
    { flags: [], env: {} },
  );
});

test('the probe tells the V8 flags this node accepts from those it would refuse to start with', () => {
  assert.equal(nodeAccepts(SERVER_NODE_FLAGS), true);
  assert.equal(nodeAccepts(['--incremental-marking-soft-trigger-that-does-not-exist=1']), false);
});
