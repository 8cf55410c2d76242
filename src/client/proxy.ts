import net from 'node:net';
import { ClientError } from './errors.ts';

/**
 * Which HTTP proxy a request goes through, read from HTTPS_PROXY, HTTP_PROXY and NO_PROXY (or their
 * lower-case forms) as Go's net/http reads them. oras, regctl, crane, skopeo and docker all use Go's
 * rules, so a machine set up for them sends Tether's requests the same way:
 * - `https:` URLs use HTTPS_PROXY, `http:` URLs HTTP_PROXY; a proxy without a scheme is `http://`;
 * - `localhost` and loopback addresses are never proxied (Node's own proxy support does proxy them,
 *   which would send `tether push localhost:5000/…` to a corporate proxy);
 * - NO_PROXY is a comma-separated list of `*` (nothing is proxied), IP addresses, CIDR ranges and
 *   domain names, each optionally with `:port`. `example.com` matches it and its subdomains,
 *   `.example.com` (or `*.example.com`) its subdomains only.
 * Proxies are spoken to in HTTP or HTTPS; a SOCKS proxy is refused with an error rather than bypassed.
 */
export class ProxyConfig {
  readonly #httpProxy: URL | undefined;
  readonly #httpsProxy: URL | undefined;
  readonly #bypass: ((host: string, port: string, ip: string | undefined) => boolean)[];

  constructor(env: Readonly<Record<string, string | undefined>>) {
    this.#httpProxy = parseProxyUrl('HTTP_PROXY', either(env, 'HTTP_PROXY'));
    this.#httpsProxy = parseProxyUrl('HTTPS_PROXY', either(env, 'HTTPS_PROXY'));
    const entries = (either(env, 'NO_PROXY') ?? '')
      .split(',')
      .map((entry) => entry.trim().toLowerCase())
      .filter((entry) => entry !== '');
    this.#bypass = entries.map(bypassRule);
  }

  /** The proxy for `url`, or undefined to connect directly. */
  proxyFor(url: URL): URL | undefined {
    const proxy = url.protocol === 'https:' ? this.#httpsProxy : this.#httpProxy;
    if (!proxy) return undefined;
    const host = bareHost(url.hostname).toLowerCase();
    if (host === 'localhost') return undefined;
    const ip = net.isIP(host) ? host : undefined;
    if (ip && isLoopback(ip)) return undefined;
    const port = url.port || (url.protocol === 'https:' ? '443' : '80');
    return this.#bypass.some((matches) => matches(host, port, ip)) ? undefined : proxy;
  }
}

let fromEnvironment: ProxyConfig | undefined;

/** The proxy for `url` under this process's environment, read once on first use. */
export function proxyFor(url: URL): URL | undefined {
  fromEnvironment ??= new ProxyConfig(process.env);
  return fromEnvironment.proxyFor(url);
}

/**
 * The `Proxy-Authorization` value for a proxy URL with credentials (`http://user:pass@host`). Throws
 * on a bad %-escape, which `ProxyConfig` refuses up front.
 */
export function proxyAuthorization(proxy: URL): string | undefined {
  if (proxy.username === '' && proxy.password === '') return undefined;
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return `Basic ${Buffer.from(credentials).toString('base64')}`;
}

/** `[::1]` as URL.hostname spells it, without the brackets. */
export function bareHost(hostname: string): string {
  return hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
}

function either(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const value = env[name] || env[name.toLowerCase()];
  return value ? value.trim() : undefined;
}

function parseProxyUrl(name: string, value: string | undefined): URL | undefined {
  if (!value) return undefined;
  let url: URL | undefined;
  // As Go does: a value that is not a URL with a scheme it knows is read as `http://` + value.
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) url = URL.parse(value) ?? undefined;
  if (!url || !['http:', 'https:', 'socks5:', 'socks5h:'].includes(url.protocol))
    url = URL.parse(`http://${value}`) ?? undefined;
  if (!url || url.hostname === '' || (url.pathname !== '/' && url.pathname !== ''))
    throw new ClientError(`${name} is not a proxy URL: "${value}"`);
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ClientError(
      `${name}: ${url.protocol.slice(0, -1)} proxies are not supported; use an HTTP proxy`,
    );
  try {
    proxyAuthorization(url);
  } catch {
    throw new ClientError(`${name}: the proxy credentials have a bad %-escape`);
  }
  return url;
}

/** One NO_PROXY entry as a test of a request's host (lower case, no brackets), port and IP. */
function bypassRule(entry: string): (host: string, port: string, ip: string | undefined) => boolean {
  if (entry === '*') return () => true;
  const slash = entry.indexOf('/');
  if (slash > 0) {
    const range = cidr(entry.slice(0, slash), entry.slice(slash + 1));
    if (range) return (_host, _port, ip) => ip !== undefined && range.check(ip, familyOf(ip));
  }
  let name = entry;
  let wantPort = '';
  // host:port, [v6]:port; a bare IPv6 address has colons but no port.
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) {
    name = bracketed[1]!;
    wantPort = bracketed[2] ?? '';
  } else if (!net.isIPv6(entry)) {
    const colon = entry.lastIndexOf(':');
    if (colon > 0 && /^\d+$/.test(entry.slice(colon + 1))) {
      name = entry.slice(0, colon);
      wantPort = entry.slice(colon + 1);
    }
  }
  const portMatches = (port: string) => wantPort === '' || wantPort === port;
  if (net.isIP(name)) {
    const canonical = canonicalIp(name);
    return (_host, port, ip) => ip !== undefined && canonicalIp(ip) === canonical && portMatches(port);
  }
  if (name.startsWith('*.')) name = name.slice(1);
  const subdomainsOnly = name.startsWith('.');
  const suffix = subdomainsOnly ? name : `.${name}`;
  return (host, port) => (host.endsWith(suffix) || (!subdomainsOnly && host === name)) && portMatches(port);
}

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

function isLoopback(ip: string): boolean {
  // BlockList also matches IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) against IPv4 rules.
  return LOOPBACK.check(ip, familyOf(ip));
}

function familyOf(ip: string): 'ipv4' | 'ipv6' {
  return net.isIPv6(ip) ? 'ipv6' : 'ipv4';
}

/** An address in one comparable spelling (`0:0::1` and `::1` are the same address). */
function canonicalIp(ip: string): string {
  return new net.SocketAddress({ address: ip, family: familyOf(ip) }).address;
}

function cidr(address: string, bits: string): net.BlockList | undefined {
  const family = net.isIP(address) ? familyOf(address) : undefined;
  const prefix = Number(bits);
  if (!family || !/^\d{1,3}$/.test(bits) || prefix > (family === 'ipv4' ? 32 : 128)) return undefined;
  const list = new net.BlockList();
  list.addSubnet(address, prefix, family);
  return list;
}
