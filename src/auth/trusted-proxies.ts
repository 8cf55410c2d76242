import net from 'node:net';

/**
 * Reverse proxies whose `X-Forwarded-For` is believed (configuration `auth.trustedProxies`: addresses
 * and CIDR ranges). Behind a proxy every client shares the proxy's address, so without this one client's
 * failed logins would lock every client out; with it, the throttle counts the address the proxy says
 * it forwarded for. Only a connection from a listed proxy is asked, so nobody else can name an address.
 */

/** Validates the configured list: every entry an IP address or a CIDR range. */
export function parseTrustedProxies(value: unknown): string[] {
  if (!Array.isArray(value)) throw new Error('must be a list of IP addresses and CIDR ranges');
  for (const entry of value) {
    if (typeof entry !== 'string' || !rangeOf(entry))
      throw new Error(`not an IP address or CIDR range: ${String(entry)}`);
  }
  return value as string[];
}

export class TrustedProxies {
  readonly #list = new net.BlockList();
  readonly empty: boolean;

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const range = rangeOf(entry)!;
      this.#list.addSubnet(range.address, range.prefix, range.family);
    }
    this.empty = entries.length === 0;
  }

  /**
   * The client a request came from: the connection's peer, or, when that peer is a trusted proxy, the
   * nearest address in `X-Forwarded-For` (read from the right: each proxy appends what it saw) that is
   * not itself a trusted proxy.
   */
  clientOf(peer: string | undefined, forwardedFor: string | string[] | undefined): string {
    let client = unmapped(peer ?? 'unknown');
    if (this.empty || !this.#has(client) || forwardedFor === undefined) return client;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
      .split(',')
      .map((hop) => unmapped(hop.trim()));
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!;
      if (!net.isIP(hop)) break;
      client = hop;
      if (!this.#has(hop)) break;
    }
    return client;
  }

  #has(address: string): boolean {
    const family = net.isIP(address);
    return family !== 0 && this.#list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }
}

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) as `10.0.0.1`. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

function rangeOf(entry: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address = '', bits] = entry.split('/');
  const version = net.isIP(address);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : Number.NaN;
  if (!(prefix >= 0 && prefix <= max)) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}
