import assert from 'node:assert/strict';
import { test } from 'node:test';
import { comparing } from '../../src/auth/htpasswd.ts';
import { LoginThrottle } from '../../src/auth/throttle.ts';

test('attempts under way count as failures: a client has as many at once as it may still fail', () => {
  const throttle = new LoginThrottle({ clientFailures: 3, userFailures: 5 });
  const now = 1_000_000;
  const attempts = [1, 2, 3].map(() => throttle.begin('10.0.0.1', 'alice', now));
  assert.ok(attempts.every((a) => a !== undefined));
  assert.equal(throttle.begin('10.0.0.1', 'alice', now), undefined, 'a fourth at once');
  assert.equal(throttle.begin('10.0.0.1', 'bob', now), undefined, 'nor against another user');
  assert.ok(throttle.begin('10.0.0.2', 'alice', now), 'another client is not held up');
  // Each fails: the lockout starts, and the failures left are gone.
  for (const attempt of attempts) {
    attempt!.release();
    throttle.fail('10.0.0.1', 'alice', now);
  }
  assert.ok(throttle.retryAfterMs('10.0.0.1', 'alice', now) > 0);
  // Once the lockout has passed, one attempt at a time.
  const later = now + 60_000;
  assert.equal(throttle.retryAfterMs('10.0.0.1', 'alice', later), 0);
  const one = throttle.begin('10.0.0.1', 'alice', later);
  assert.ok(one);
  assert.equal(throttle.begin('10.0.0.1', 'alice', later), undefined);
  one.release();
  one.release();
  assert.ok(throttle.begin('10.0.0.1', 'alice', later), 'a release is counted once');
});

test('a success releases its attempt and forgives only its own failures', () => {
  const throttle = new LoginThrottle({ clientFailures: 2, userFailures: 5 });
  const now = 1_000_000;
  const guess = throttle.begin('10.0.0.1', 'bob', now)!;
  guess.release();
  throttle.fail('10.0.0.1', 'bob', now);
  const login = throttle.begin('10.0.0.1', 'alice', now)!;
  assert.equal(throttle.begin('10.0.0.1', 'alice', now), undefined, 'one failure left, one under way');
  login.release();
  throttle.succeed('10.0.0.1', 'alice');
  assert.ok(throttle.begin('10.0.0.1', 'alice', now), 'the guess at bob still counts; one left');
});

test('bcrypt comparisons run one at a time, in the order they were asked for', async () => {
  let running = 0;
  let most = 0;
  const order: number[] = [];
  const work = (i: number) => async () => {
    running++;
    most = Math.max(most, running);
    await new Promise((resolve) => setImmediate(resolve));
    order.push(i);
    running--;
    if (i === 2) throw new Error('a failed comparison frees its turn too');
    return i;
  };
  const results = await Promise.allSettled([0, 1, 2, 3, 4].map((i) => comparing(work(i))));
  assert.equal(most, 1);
  assert.deepEqual(order, [0, 1, 2, 3, 4]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
  );
});
