import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** Request body size in bytes. */
  bodyBytes: number;
}

/**
 * What a test lets the proxy do to one exchange. `before` may answer instead of the registry (return
 * true after writing `res`); `after` may rewrite the registry's status, headers or body.
 */
export interface ProxyHooks {
  before?(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): boolean | Promise<boolean>;
  after?(
    req: http.IncomingMessage,
    upstream: { status: number; headers: Record<string, string>; body: Buffer },
  ): void | Promise<void>;
}

/**
 * A recording, fault-injecting HTTP proxy in front of a real registry, for client tests that need to see
 * or bend the wire: which requests were sent with what sizes, how many ran at once, and what happens
 * when a chunk is refused or a body is corrupted. Bodies are buffered: keep test blobs small.
 */
export async function startProxy(upstream: string, hooks: ProxyHooks = {}) {
  const seen: SeenRequest[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  let connections = 0;
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, bodyBytes: body.length });
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      if (hooks.before && (await hooks.before(req, res, body))) return;
      const headers = { ...req.headers } as Record<string, string>;
      delete headers.host;
      delete headers['transfer-encoding'];
      headers['content-length'] = String(body.length);
      const answer = await fetch(`http://${upstream}${req.url}`, {
        method: req.method!,
        headers,
        ...(body.length || req.method === 'PUT' || req.method === 'PATCH' || req.method === 'POST'
          ? { body }
          : {}),
        redirect: 'manual',
      });
      const out = {
        status: answer.status,
        headers: Object.fromEntries(answer.headers) as Record<string, string>,
        body: Buffer.from(await answer.arrayBuffer()),
      };
      // Keep the client talking through the proxy when the registry answers with absolute URLs.
      if (out.headers.location?.startsWith(`http://${upstream}`))
        out.headers.location = out.headers.location.slice(`http://${upstream}`.length);
      await hooks.after?.(req, out);
      delete out.headers['content-encoding'];
      delete out.headers['transfer-encoding'];
      if (req.method !== 'HEAD') out.headers['content-length'] = String(out.body.length);
      res.writeHead(out.status, out.headers);
      res.end(req.method === 'HEAD' ? undefined : out.body);
    } finally {
      inFlight--;
    }
  });
  server.on('connection', () => {
    connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    seen,
    maxInFlight: () => maxInFlight,
    /** TCP connections accepted so far. */
    connections: () => connections,
    resetCounters: () => {
      seen.length = 0;
      maxInFlight = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
