import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GroupSync } from '../../src/storage/group-sync.ts';

/** A sync function the test completes by hand, recording when each call started. */
function manualSync() {
  const calls: { resolve: () => void; reject: (err: Error) => void }[] = [];
  const sync = () =>
    new Promise<void>((resolve, reject) => {
      calls.push({ resolve, reject });
    });
  return { calls, sync };
}

const settled = () => new Promise((resolve) => setImmediate(resolve));

/** Tracks whether a promise has settled yet, without letting a rejection go unhandled. */
function watch(promise: Promise<void>) {
  const state: { done: boolean; error?: unknown } = { done: false };
  promise.then(
    () => {
      state.done = true;
    },
    (err: unknown) => {
      state.done = true;
      state.error = err;
    },
  );
  return state;
}

describe('GroupSync', () => {
  test('a waiter that arrives during a sync is released only by the next sync', async () => {
    const { calls, sync } = manualSync();
    const group = new GroupSync(sync);
    const first = watch(group.after());
    assert.equal(calls.length, 1);
    const second = watch(group.after());
    assert.equal(calls.length, 1, 'the second sync waits for the first to end');
    calls[0]!.resolve();
    await settled();
    assert.equal(first.done, true);
    assert.equal(second.done, false, 'the first sync started before the second write');
    assert.equal(calls.length, 2);
    calls[1]!.resolve();
    await settled();
    assert.equal(second.done, true);
  });

  test('all waiters that arrive during one sync share a single next sync', async () => {
    const { calls, sync } = manualSync();
    const group = new GroupSync(sync);
    const first = watch(group.after());
    const waiters = Array.from({ length: 50 }, () => watch(group.after()));
    calls[0]!.resolve();
    await settled();
    assert.equal(first.done, true);
    assert.equal(calls.length, 2, '50 concurrent commits cost one more sync');
    assert.ok(waiters.every((w) => !w.done));
    calls[1]!.resolve();
    await settled();
    assert.ok(waiters.every((w) => w.done && w.error === undefined));
    assert.equal(calls.length, 2);
  });

  test('with no sync running, a waiter starts one at once', async () => {
    const { calls, sync } = manualSync();
    const group = new GroupSync(sync);
    const first = group.after();
    calls[0]!.resolve();
    await first;
    const second = watch(group.after());
    assert.equal(calls.length, 2);
    calls[1]!.resolve();
    await settled();
    assert.equal(second.done, true);
  });

  test('a failed sync fails its waiters, the queued ones and every later one', async () => {
    const { calls, sync } = manualSync();
    const group = new GroupSync(sync);
    const first = watch(group.after());
    const queued = watch(group.after());
    const failure = new Error('EIO: i/o error, fdatasync');
    calls[0]!.reject(failure);
    await settled();
    assert.equal(first.error, failure);
    assert.equal(queued.error, failure, 'the queued waiter must not be released by a later sync');
    assert.equal(calls.length, 1, 'no sync is started after a failure');
    await assert.rejects(group.after(), failure);
    assert.equal(calls.length, 1);
  });

  test('drain waits for the running and the queued sync', async () => {
    const { calls, sync } = manualSync();
    const group = new GroupSync(sync);
    void group.after();
    void group.after();
    const drained = watch(group.drain());
    calls[0]!.resolve();
    await settled();
    assert.equal(drained.done, false);
    calls[1]!.resolve();
    await settled();
    assert.equal(drained.done, true);
  });
});
