import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { OciError } from '../oci/errors.ts';
import type { Registry } from '../registry/registry.ts';
import { sendError } from './http.ts';
import { matchRoute, type RouteName } from './router.ts';
import { deleteBlob, getBlob } from './routes/blobs.ts';
import { base, catalog, listReferrers, listTags } from './routes/discovery.ts';
import { deleteManifest, getManifest, putManifest } from './routes/manifests.ts';
import type { Handler, RouteContext } from './routes/types.ts';
import { cancelUpload, finishUpload, patchUpload, startUpload, uploadStatus } from './routes/uploads.ts';

const HANDLERS: Record<RouteName, Partial<Record<string, Handler>>> = {
  base: { GET: base, HEAD: base },
  catalog: { GET: catalog, HEAD: catalog },
  manifest: { GET: getManifest, HEAD: getManifest, PUT: putManifest, DELETE: deleteManifest },
  uploadStart: { POST: startUpload },
  upload: { GET: uploadStatus, PATCH: patchUpload, PUT: finishUpload, DELETE: cancelUpload },
  blob: { GET: getBlob, HEAD: getBlob, DELETE: deleteBlob },
  tags: { GET: listTags, HEAD: listTags },
  referrers: { GET: listReferrers, HEAD: listReferrers },
};

/** Errors a client causes by leaving mid-request: nothing to answer and nothing worth an error log. */
function isClientAbort(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNABORTED';
}

export function createRequestHandler(registry: Registry, log: Logger) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = process.hrtime.bigint();
    const method = req.method ?? 'GET';
    const rawUrl = req.url ?? '/';
    res.on('finish', () => {
      log.info(
        {
          method,
          url: rawUrl.length > 512 ? `${rawUrl.slice(0, 512)}…` : rawUrl,
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
          remote: req.socket.remoteAddress,
        },
        'request',
      );
    });
    const bodyRead = { value: false };
    try {
      const url = new URL(rawUrl, 'http://registry.invalid');
      const match = matchRoute(method, url.pathname);
      const handler = HANDLERS[match.route][method]!;
      const ctx: RouteContext = {
        req,
        res,
        registry,
        name: match.name,
        ref: match.ref,
        query: url.searchParams,
        bodyRead,
      };
      await handler(ctx);
    } catch (err) {
      // The connection's socket, not res.socket: a response queued behind another on a keep-alive
      // connection has no socket attached yet, and is not an abort.
      if (isClientAbort(err) || req.socket.destroyed) {
        res.destroy();
        return;
      }
      if (!(err instanceof OciError)) log.error({ err, method, url: rawUrl }, 'request failed');
      sendError(res, err, !bodyRead.value && method !== 'GET' && method !== 'HEAD');
    }
  };
}

export interface HttpServerHandle {
  server: Server;
  /** Bound address, e.g. `127.0.0.1:5000`. */
  address: string;
  /** Stops accepting connections and resolves when in-flight requests have finished. */
  close(): Promise<void>;
}

export async function listen(
  registry: Registry,
  log: Logger,
  host: string,
  port: number,
): Promise<HttpServerHandle> {
  const handler = createRequestHandler(registry, log);
  const server = createServer(
    { requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 65_000 },
    (req, res) => {
      void handler(req, res);
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const info = server.address() as AddressInfo;
  const address = info.family === 'IPv6' ? `[${info.address}]:${info.port}` : `${info.address}:${info.port}`;
  return {
    server,
    address,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeIdleConnections();
      }),
  };
}
