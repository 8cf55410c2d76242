import net from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { tls } from '../io/node-http.ts';
import { bareHost, proxyAuthorization } from './proxy.ts';
import { TlsTrust } from './tls.ts';

/**
 * Connections for `download`, which speaks HTTP/1.1 on sockets of its own (see there for why): to a
 * registry or to a proxy, and tunnels through a proxy. Requests through node:http use Node's own
 * proxy support instead (`transport.ts`).
 */

const MAX_CONNECT_HEAD_BYTES = 16 * 1024;

/** A proxy that would not open a tunnel, or a connection that broke before it answered. */
export class ProxyTunnelError extends Error {
  override name = 'ProxyTunnelError';
  /** The same code Node's proxy support gives its failed tunnels. */
  readonly code = 'ERR_PROXY_TUNNEL';
}

/**
 * Opens a connection to `origin`'s host and port (a registry's or a proxy's URL): TLS for `https:`,
 * checked as `trust` says, speaking HTTP/1.1. `onread` as for `net.connect`.
 */
export function connectTo(origin: URL, onread?: net.OnReadOpts, trust = TlsTrust.DEFAULT): net.Socket {
  const host = bareHost(origin.hostname);
  const secure = origin.protocol === 'https:';
  const port = Number(origin.port) || (secure ? 443 : 80);
  if (!secure) return net.connect({ host, port, ...(onread ? { onread } : {}) });
  return tlsTo(host, { ...trust.options, host, port, ...(onread ? { onread } : {}) });
}

/**
 * TLS to `host` (its name checked against the certificate, unless it is an IP address), speaking
 * HTTP/1.1: over a new connection (`host` and `port` in `options`) or over a tunnel (`socket`).
 * A TLS socket takes `onread` like any net.Socket (Node's type definitions leave it out), but not one
 * made over a socket it is given: that one's reads arrive as 'data' events.
 */
export function tlsTo(host: string, options: ConnectionOptions & { onread?: net.OnReadOpts }): net.Socket {
  return tls().connect({
    ...options,
    ...(net.isIP(host) ? {} : { servername: host }),
    ALPNProtocols: ['http/1.1'],
  });
}

/** The event a socket from `connectTo` or `tlsTo` emits once it can be written to. */
export function readyEvent(socket: net.Socket): 'secureConnect' | 'connect' {
  return 'encrypted' in socket ? 'secureConnect' : 'connect';
}

/**
 * Asks `proxy` for a tunnel to `host`:`port` (an HTTP CONNECT) and resolves with the connection once
 * the proxy answered 2xx, for a TLS handshake with the target started at once: the socket is left
 * reading (a paused one would not keep the process alive, nor be read by the TLS layer that takes it
 * over). A silence of `timeoutMs` fails it.
 */
export function openTunnel(proxy: URL, host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const authority = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
    const socket = connectTo(proxy);
    let head = Buffer.alloc(0);
    const settle = (err?: Error) => {
      socket.off('data', onData);
      socket.off('error', settle);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.setTimeout(0);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve(socket);
    };
    const onEnd = () =>
      settle(new ProxyTunnelError(`proxy ${proxy.host} closed the connection before answering`));
    const onData = (data: Buffer) => {
      head = Buffer.concat([head, data]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_CONNECT_HEAD_BYTES)
          settle(
            new ProxyTunnelError(
              `proxy ${proxy.host} sent a response head over ${MAX_CONNECT_HEAD_BYTES} bytes`,
            ),
          );
        return;
      }
      const statusLine = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})\b/.exec(statusLine)?.[1] ?? 0);
      if (status < 200 || status > 299) {
        settle(
          new ProxyTunnelError(
            `proxy ${proxy.host} refused a tunnel to ${authority}: ${JSON.stringify(statusLine.slice(0, 80))}`,
          ),
        );
        return;
      }
      // The target is sent nothing before the TLS handshake, so it can have said nothing yet.
      if (head.length > end + 4)
        settle(new ProxyTunnelError(`proxy ${proxy.host} sent bytes after its answer`));
      else settle();
    };
    socket.setTimeout(timeoutMs, () =>
      settle(
        new ProxyTunnelError(
          `proxy ${proxy.host}: no answer to CONNECT ${authority} for ${timeoutMs / 1000} s`,
        ),
      ),
    );
    socket.on('error', settle);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('data', onData);
    const authorization = proxyAuthorization(proxy);
    socket.once(readyEvent(socket), () =>
      socket.write(
        `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n` +
          (authorization ? `Proxy-Authorization: ${authorization}\r\n` : '') +
          '\r\n',
      ),
    );
  });
}
