/**
 * Loaded with `node --import` into a `tether` process under test: host names under `.test` (RFC 2606)
 * resolve to 127.0.0.1. The client speaks plain HTTP to loopback addresses and `localhost`, so a test
 * reaches a TLS registry on loopback by a name like `registry.test:PORT`, with a certificate for that
 * name, as a user reaches a real one. Every connection (node:http's, the download reader's, TLS ones)
 * resolves names through `dns.lookup`, which is looked up on the module at each call.
 */
import dns from 'node:dns';

type Callback = (err: NodeJS.ErrnoException | null, address: unknown, family?: number) => void;

const lookup = dns.lookup;

function testLookup(hostname: string, options: unknown, callback?: unknown): void {
  const done = (typeof options === 'function' ? options : callback) as Callback;
  if (!hostname.endsWith('.test')) {
    (lookup as (...args: unknown[]) => void)(hostname, options, callback);
    return;
  }
  const all = typeof options === 'object' && options !== null && (options as { all?: boolean }).all;
  if (all) process.nextTick(done, null, [{ address: '127.0.0.1', family: 4 }]);
  else process.nextTick(done, null, '127.0.0.1', 4);
}

dns.lookup = testLookup as typeof dns.lookup;
