/**
 * `tether sign` flags the signing audit found wanting (notes/audit-sign.md F11): the real CLI against a
 * registry on port 0, with its own HOME.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/client/client.ts';
import { parseImageReference } from '../../src/client/reference.ts';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { runCliAt } from '../helpers/cli.ts';
import { pushSmallImage } from '../helpers/interop.ts';
import { tempDataDir } from '../helpers/tether-process.ts';

describe('tether sign --expiry', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let reg: RunningRegistry;
  let keys: string[];

  before(async () => {
    ({ dir, cleanup } = await tempDataDir());
    reg = await startRegistry({ storage: { data: join(dir, 'data') } });
    const made = await runCliAt(dir, ['cert', 'generate', '--key-type', 'ec-p256', '-o', join(dir, 'keys')]);
    assert.equal(made.code, 0, made.stderr);
    keys = ['--key', join(dir, 'keys/leaf.key'), '--cert', join(dir, 'keys/chain.pem')];
  });
  after(async () => {
    await reg?.close();
    await cleanup?.();
  });

  test('a duration past year 9999, or of zero, is a usage error (exit 2) and signs nothing', async () => {
    const { digest } = await pushSmallImage(reg.host, 'expiry/app', 'v1');
    for (const [expiry, message] of [
      ['99999999999d', /^tether: --expiry 99999999999d ends after 9999-12-31T23:59:59Z/],
      ['9'.repeat(400) + 's', /ends after 9999-12-31T23:59:59Z/],
      ['0s', /^tether: --expiry must be longer than 0, got "0s"/],
      ['1y', /--expiry takes a duration like 24h/],
    ] as const) {
      const r = await runCliAt(dir, ['sign', `${reg.host}/expiry/app:v1`, ...keys, '--expiry', expiry]);
      assert.equal(r.code, 2, `${expiry}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /internal error|RangeError/);
    }
    const referrers = await new RegistryClient({ credentials: async () => undefined }).referrers({
      ...parseImageReference(`${reg.host}/expiry/app`),
      digest,
    });
    assert.deepEqual(referrers, []);
    const signed = await runCliAt(dir, ['sign', `${reg.host}/expiry/app:v1`, ...keys, '--expiry', '3650d']);
    assert.equal(signed.code, 0, signed.stderr);
  });
});
