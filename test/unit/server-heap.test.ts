import assert from 'node:assert/strict';
import { test } from 'node:test';
import { missingServerFlags, SERVER_NODE_FLAGS } from '../../src/cli/server-heap.ts';

test('all server heap flags are missing from a bare node command line', () => {
  assert.deepEqual(missingServerFlags([]), [...SERVER_NODE_FLAGS]);
  assert.deepEqual(missingServerFlags(['--enable-source-maps'], ''), [...SERVER_NODE_FLAGS]);
});

test("an operator's own heap size wins, on the command line or in NODE_OPTIONS, in either spelling", () => {
  assert.deepEqual(missingServerFlags(['--max-old-space-size=512']), ['--max-semi-space-size=1']);
  assert.deepEqual(missingServerFlags(['--max_old_space_size=512']), ['--max-semi-space-size=1']);
  assert.deepEqual(missingServerFlags([], '--max-semi-space-size=8  --trace-warnings'), [
    '--max-old-space-size=128',
  ]);
  assert.deepEqual(missingServerFlags(['--max-semi-space-size=2'], '--max-old-space-size=256'), []);
});
