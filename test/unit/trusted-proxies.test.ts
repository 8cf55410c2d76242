import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseTrustedProxies, TrustedProxies } from '../../src/auth/trusted-proxies.ts';

test('trusted proxies: addresses and CIDR ranges, anything else refused', () => {
  assert.deepEqual(parseTrustedProxies(['10.0.0.1', '10.1.0.0/16', '::1', 'fd00::/8']), [
    '10.0.0.1',
    '10.1.0.0/16',
    '::1',
    'fd00::/8',
  ]);
  for (const [bad, message] of [
    [['proxy.example'], 'not an IP address or CIDR range: proxy.example'],
    [['10.0.0.0/33'], 'not an IP address or CIDR range: 10.0.0.0/33'],
    [['10.0.0.0/x'], 'not an IP address or CIDR range: 10.0.0.0/x'],
    [[7], 'not an IP address or CIDR range: 7'],
    ['not a list', 'must be a list of IP addresses and CIDR ranges'],
  ] as const)
    assert.throws(() => parseTrustedProxies(bad), { message }, JSON.stringify(bad));
});

test('the client is the peer unless the peer is a trusted proxy; then the nearest untrusted forwarded hop', () => {
  const proxies = new TrustedProxies(['10.0.0.0/8', '::1']);
  // Not from a proxy: a client's own X-Forwarded-For names nobody.
  assert.equal(proxies.clientOf('203.0.113.9', '198.51.100.1'), '203.0.113.9');
  // From a proxy: the address it saw.
  assert.equal(proxies.clientOf('10.0.0.2', '198.51.100.1'), '198.51.100.1');
  assert.equal(
    proxies.clientOf('::ffff:10.0.0.2', '198.51.100.1'),
    '198.51.100.1',
    'IPv4 on a dual-stack socket',
  );
  // Through two proxies; whatever the client wrote to the left of them is not believed.
  assert.equal(proxies.clientOf('::1', '6.6.6.6, 198.51.100.1, 10.0.0.3'), '198.51.100.1');
  assert.equal(proxies.clientOf('10.0.0.2', ['6.6.6.6', '198.51.100.1']), '198.51.100.1');
  // Garbage stops the walk at the last trusted hop; no header leaves the proxy's own address.
  assert.equal(proxies.clientOf('10.0.0.2', 'garbage'), '10.0.0.2');
  assert.equal(proxies.clientOf('10.0.0.2', undefined), '10.0.0.2');
  // Nothing trusted: the peer, always.
  assert.equal(new TrustedProxies([]).clientOf('127.0.0.1', '198.51.100.1'), '127.0.0.1');
});
