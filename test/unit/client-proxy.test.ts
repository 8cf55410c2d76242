import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClientError } from '../../src/client/errors.ts';
import { ProxyConfig, proxyAuthorization } from '../../src/client/proxy.ts';

const proxied = (env: Record<string, string>, url: string) =>
  new ProxyConfig(env).proxyFor(new URL(url))?.href;

describe('proxy settings, read as Go reads them', () => {
  test('each scheme has its own variable; upper case wins; a bare host:port is http://', () => {
    const env = { HTTPS_PROXY: 'https://secure.proxy:8443', http_proxy: 'plain.proxy:3128' };
    assert.equal(proxied(env, 'https://registry.example.com/v2/'), 'https://secure.proxy:8443/');
    assert.equal(proxied(env, 'http://registry.example.com/v2/'), 'http://plain.proxy:3128/');
    assert.equal(
      proxied({ HTTP_PROXY: 'http://upper:1', http_proxy: 'http://lower:2' }, 'http://r.example/'),
      'http://upper:1/',
    );
    assert.equal(proxied({ http_proxy: 'http://lower:2' }, 'https://r.example/'), undefined);
    assert.equal(proxied({}, 'https://r.example/'), undefined);
    assert.equal(proxied({ HTTPS_PROXY: '' }, 'https://r.example/'), undefined);
  });

  test('localhost and loopback addresses are never proxied', () => {
    const env = { HTTPS_PROXY: 'http://p:1', HTTP_PROXY: 'http://p:1' };
    for (const url of [
      'http://localhost:5000/',
      'http://LOCALHOST/',
      'http://127.0.0.1:5000/',
      'http://127.9.8.7/',
      'https://[::1]:5000/',
      'http://[::ffff:127.0.0.1]/',
    ])
      assert.equal(proxied(env, url), undefined, url);
    assert.equal(proxied(env, 'http://localhost.example.com/'), 'http://p:1/');
    assert.equal(proxied(env, 'http://128.0.0.1/'), 'http://p:1/');
  });

  test('NO_PROXY: domains with and without their subdomains, ports, IPs, CIDR ranges, *', () => {
    const base = { HTTPS_PROXY: 'http://p:1' };
    const cases: [string, string, boolean][] = [
      // [NO_PROXY, URL, proxied?]
      ['example.com', 'https://example.com/', false],
      ['example.com', 'https://reg.example.com/', false],
      ['example.com', 'https://notexample.com/', true],
      ['.example.com', 'https://example.com/', true],
      ['.example.com', 'https://reg.example.com/', false],
      ['*.example.com', 'https://reg.example.com/', false],
      ['*.example.com', 'https://example.com/', true],
      ['example.com:5000', 'https://example.com:5000/', false],
      ['example.com:5000', 'https://example.com/', true],
      ['example.com:443', 'https://example.com/', false],
      ['10.1.2.3', 'https://10.1.2.3:5000/', false],
      ['10.1.2.3:80', 'https://10.1.2.3/', true],
      ['10.0.0.0/8', 'https://10.200.1.1/', false],
      ['10.0.0.0/8', 'https://11.0.0.1/', true],
      ['10.0.0.0/8', 'https://ten.example/', true],
      ['fd00::/8', 'https://[fd12::1]/', false],
      ['2001:db8::1', 'https://[2001:db8:0::1]/', false],
      ['[2001:db8::1]:5000', 'https://[2001:db8::1]:5000/', false],
      ['[2001:db8::1]:5000', 'https://[2001:db8::1]/', true],
      [' other.org , Example.COM ', 'https://REG.example.com/', false],
      ['*', 'https://anything.example/', false],
      ['other.org,*', 'https://anything.example/', false],
      ['', 'https://anything.example/', true],
    ];
    for (const [noProxy, url, expected] of cases)
      assert.equal(
        proxied({ ...base, NO_PROXY: noProxy }, url) !== undefined,
        expected,
        `${noProxy} / ${url}`,
      );
    assert.equal(proxied({ ...base, no_proxy: 'example.com' }, 'https://example.com/'), undefined);
  });

  test('SOCKS proxies and values that are not proxy URLs are refused, naming the variable', () => {
    assert.throws(() => new ProxyConfig({ HTTPS_PROXY: 'socks5://127.0.0.1:1080' }), {
      name: 'ClientError',
      message: 'HTTPS_PROXY: socks5 proxies are not supported; use an HTTP proxy',
    });
    assert.throws(() => new ProxyConfig({ HTTPS_PROXY: 'http://me:p%zz@p:1' }), {
      name: 'ClientError',
      message: 'HTTPS_PROXY: the proxy credentials have a bad %-escape',
    });
    for (const value of ['http://p:1/path', 'http://', 'http://p:99999'])
      assert.throws(
        () => new ProxyConfig({ HTTP_PROXY: value }),
        (err: unknown) => {
          assert.ok(err instanceof ClientError);
          assert.match(err.message, /^HTTP_PROXY is not a proxy URL/);
          return true;
        },
      );
  });

  test('credentials in the proxy URL become Basic Proxy-Authorization, percent-decoded', () => {
    assert.equal(proxyAuthorization(new URL('http://p:1')), undefined);
    assert.equal(
      proxyAuthorization(new URL('http://me%40corp:p%3Ass@p:1')),
      `Basic ${Buffer.from('me@corp:p:ss').toString('base64')}`,
    );
  });
});
