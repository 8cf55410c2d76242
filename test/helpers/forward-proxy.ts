import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

/** Blanks every proxy variable, so a child process inherits none from the machine running the tests. */
export const NO_PROXY_SETTINGS: Record<string, string> = Object.fromEntries(
  ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy'].map((name) => [
    name,
    '',
  ]),
);

/** What the proxy was asked: `CONNECT host:port` or a method with an absolute URL. */
export interface ProxiedRequest {
  method: string;
  target: string;
  authorization: string | undefined;
}

/**
 * A forward HTTP proxy like squid, for client tests: plain-HTTP requests in absolute form are relayed
 * (streamed, not buffered), `CONNECT` opens a tunnel. Every host name is routed to 127.0.0.1 with the
 * requested port, so a test can name its registry `registry.test:PORT`, a name no resolver knows: a
 * request that reaches it went through the proxy. With `credentials`, anything else is answered 407;
 * with `tls`, clients speak TLS to the proxy itself (an `https://` proxy).
 */
export async function startForwardProxy(
  options: { credentials?: { user: string; password: string }; tls?: { cert: Buffer; key: Buffer } } = {},
) {
  const { credentials } = options;
  const seen: ProxiedRequest[] = [];
  // Tunnels leave the HTTP server's bookkeeping: closed by hand.
  const tunnels = new Set<net.Socket>();
  const expected = credentials
    ? `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString('base64')}`
    : undefined;
  const allowed = (authorization: string | undefined) => expected === undefined || authorization === expected;
  const handler: http.RequestListener = (req, res) => {
    const authorization = req.headers['proxy-authorization'];
    seen.push({ method: req.method!, target: req.url!, authorization });
    if (!allowed(authorization)) {
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"', 'content-length': '0' }).end();
      return;
    }
    const target = URL.parse(req.url!);
    if (target?.protocol !== 'http:') {
      res.writeHead(400, { 'content-length': '0' }).end();
      return;
    }
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    const upstream = http.request(
      {
        host: '127.0.0.1',
        port: target.port || 80,
        method: req.method,
        path: target.pathname + target.search,
        headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  };
  const server = options.tls ? https.createServer(options.tls, handler) : http.createServer(handler);
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const authorization = req.headers['proxy-authorization'];
    seen.push({ method: 'CONNECT', target: req.url!, authorization });
    if (!allowed(authorization)) {
      client.end(
        'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n\r\n',
      );
      return;
    }
    const port = Number(req.url!.slice(req.url!.lastIndexOf(':') + 1));
    tunnels.add(client);
    client.on('close', () => tunnels.delete(client));
    const upstream = net.connect({ host: '127.0.0.1', port }, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    seen,
    close: async () => {
      server.closeAllConnections();
      for (const socket of tunnels) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
