import type { TestContext } from 'node:test';

/**
 * TETHER_TEST_STRICT=1 (CI sets it): a test that needs something this machine lacks (strace, user
 * namespaces, O_DIRECT, GNU tar, /proc) fails instead of being skipped, so a missing tool cannot turn a
 * run green by running less. Every such skip goes through this file.
 */
export const strictTests = process.env.TETHER_TEST_STRICT === '1';

function refuse(reason: string): Error {
  return new Error(`TETHER_TEST_STRICT=1 and a test would be skipped: ${reason}`);
}

/**
 * For a test's `skip` option: `missing` is false when what the test needs is here, else the reason it is
 * not. Returns it unchanged (the test skips); in strict mode a reason throws instead, failing the file.
 */
export function skipUnlessStrict(missing: string | false): string | false {
  if (missing && strictTests) throw refuse(missing);
  return missing;
}

/** Skips the running test for `reason` (found out inside it); in strict mode, fails it instead. */
export function skipTest(t: TestContext, reason: string): void {
  if (strictTests) throw refuse(reason);
  t.skip(reason);
}
