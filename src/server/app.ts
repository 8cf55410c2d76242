import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { http, http2, tls as nodeTls } from '../io/node-http.ts';
import { errors, OciError } from '../oci/errors.ts';
import type { Registry } from '../registry/registry.ts';
import { type Authorizer, type Caller, JWKS_PATH, OPEN_CALLER, TOKEN_PATH } from './auth.ts';
import { capConnections, limitSessionIdle } from './connections.ts';
import { abort, hasBody, sendError } from './http.ts';
import { guardedHttp2RequestClass, guardedRequestClass, isGuarded } from './incoming.ts';
import { matchRoute, type RouteName } from './router.ts';
import { deleteBlob, getBlob } from './routes/blobs.ts';
import { base, catalog, listReferrers, listTags } from './routes/discovery.ts';
import { deleteManifest, getManifest, putManifest } from './routes/manifests.ts';
import type { Handler, RouteContext } from './routes/types.ts';
import { cancelUpload, finishUpload, patchUpload, startUpload, uploadStatus } from './routes/uploads.ts';
import { SendIdleGuard } from './send-idle.ts';

/** While the server closes, how often connections that have finished their last response are closed. */
const CLOSE_SWEEP_MS = 50;

/** How long a connection closed with request bytes still arriving keeps reading (and dropping) them. */
const LINGER_MS = 5_000;

/** While connections stay over the cap, how often that is logged. */
const OVER_CAP_LOG_MS = 60_000;

/** An HTTP/1.1 connection (or HTTP/2 session) with no request in progress is closed after this long. */
const KEEP_ALIVE_MS = 65_000;

/**
 * HTTP/2 streams a session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). Node's default is
 * 2^32-1, no limit: one session opening 2000 blob GETs of a 32 MiB blob and reading nothing held 2000
 * open files and 2.1 GB of RSS (each stream's first 1 MiB write waiting for a window that never opened),
 * where an HTTP/1.1 connection holds one answer at a time. With 100: 100 files and ~100 MB. 100 is the
 * least RFC 9113 (§5.1.2) recommends, and Kestrel's, h2o's and Netty's default; Go's server allows 250,
 * nginx 128. Registry clients run a handful of transfers at once; one with more waits for a stream to
 * end (Node's client) or opens another connection (Go's: 1000 blob GETs at once ran over 9 connections,
 * no error), and streams opened past the limit anyway are refused. Node counts a stream until its
 * cleanup has run, a moment after the client saw it end, so a client keeping exactly 100 busy can have a
 * new one refused (ENHANCE_YOUR_CALM): docs/architecture.md. A constant: no client needs more, and the
 * connection cap bounds the sessions.
 */
const MAX_STREAMS_PER_SESSION = 100;

const HANDLERS: Record<RouteName, Partial<Record<string, Handler>>> = {
  base: { GET: base, HEAD: base },
  catalog: { GET: catalog, HEAD: catalog },
  manifest: { GET: getManifest, HEAD: getManifest, PUT: putManifest, DELETE: deleteManifest },
  uploadStart: { POST: startUpload },
  upload: {
    GET: uploadStatus,
    HEAD: uploadStatus,
    PATCH: patchUpload,
    PUT: finishUpload,
    DELETE: cancelUpload,
  },
  blob: { GET: getBlob, HEAD: getBlob, DELETE: deleteBlob },
  tags: { GET: listTags, HEAD: listTags },
  referrers: { GET: listReferrers, HEAD: listReferrers },
};

/** Errors a client causes by leaving mid-request: nothing to answer and nothing worth an error log. */
function isClientAbort(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNABORTED';
}

/**
 * Lets the `Connection: close` answer to a request whose body was not read reach its client. Closing a
 * socket with unread input makes the kernel send a reset, which can destroy the answer before the
 * client reads it (RFC 9112 §9.6): Go and Node clients saw "broken pipe" instead of a 404, 401 or 413.
 * Node ends such a response with `socket.destroySoon()`; for this socket that now half-closes instead,
 * and input is read and dropped until the client closes its side or LINGER_MS pass, as nginx's
 * lingering close and Go's server do. A server that is stopping sweeps such connections at once.
 */
function lingerOnClose(req: IncomingMessage): void {
  const socket: Socket = req.socket;
  req.resume();
  socket.destroySoon = () => {
    socket.end();
    socket.resume();
    const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
    socket.once('end', () => socket.destroy());
    socket.once('close', () => clearTimeout(timer));
  };
}

/**
 * Answers `err` for a request whose body is still arriving (or stalled), then ends the handler's wait
 * for that body: once the connection is closed (after the answer, and the lingering above), the request
 * stream is destroyed with `err`, so a body read in progress fails instead of seeing an early end.
 */
function answerAndClose(req: IncomingMessage, res: ServerResponse, err: OciError): void {
  if (res.headersSent || !req.socket || req.socket.destroyed) {
    req.destroy(err);
    return;
  }
  if (req.httpVersionMajor < 2) {
    lingerOnClose(req);
    req.socket.once('close', () => req.destroy(err));
    sendError(res, err, true);
  } else {
    res.once('finish', () => req.destroy(err));
    sendError(res, err, false);
  }
}

/** Connections whose unparsable request is answered once the answers owed before it are out. */
const unparsableAfterOwed = new WeakSet<Duplex>();

/**
 * A request Node's parser refused (bad syntax, a body longer than its Content-Length, headers over the
 * limit, a header timeout) gets the same error JSON as everything else, not Node's bare `400 Bad Request`.
 * Written straight to the socket, so only once the answers owed to the requests before it (the one in
 * progress, and any pipelined behind it) are out: written at once it landed inside the answer being sent
 * (a 408 was found 12.5 MB into a blob body), or answered a valid request queued before it.
 */
function answerUnparsable(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  // Node's server keeps the answer it is sending as `_httpMessage`; when it finishes, Node assigns the
  // next queued one (its 'finish' listener was added first) or clears it. The parser, failed, reads no
  // further requests, and errors it reports meanwhile are answered by this one answer. An answer whose
  // request is not complete is not waited for: the failure is in that request's own body (a bad chunk),
  // which its handler would wait for until the body-idle limit, and this answer is the one it gets.
  if (unparsableAfterOwed.has(socket)) return;
  const owed = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (owed?.req?.complete) {
    unparsableAfterOwed.add(socket);
    owed.once('finish', () => {
      unparsableAfterOwed.delete(socket);
      answerUnparsable(err, socket);
    });
    return;
  }
  const status =
    err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const body = JSON.stringify(
    new OciError(status, 'UNSUPPORTED', `malformed HTTP request (${err.code})`).toJSON(),
  );
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * The same over TLS, where Node's HTTP/2 server also reports failed TLS handshakes (one past
 * `handshakeTimeout`, a client that hung up) as 'clientError': those have no HTTP request to answer.
 */
function answerUnparsableOverTls(err: NodeJS.ErrnoException, socket: Duplex): void {
  const code = err.code ?? '';
  if (code.startsWith('HPE_') || code === 'ERR_HTTP_REQUEST_TIMEOUT') answerUnparsable(err, socket);
  else socket.destroy();
}

/**
 * The path and query of a request-target as the client sent them. Nothing is resolved or normalised:
 * WHATWG URL parsing (what routing used) read `//host/v2/…` as an authority, resolved `..` and `%2e%2e`
 * and turned `\` into `/`, so Tether routed `/v2/private/%2e%2e/public/…` to `public` while a proxy in
 * front of it, allowing or refusing by path prefix, saw `private`. A target that would need any of that
 * is refused (400) instead: one not starting with a single `/`, with an empty, `.` or `..` segment, a
 * backslash, a fragment, or a dot, slash or backslash percent-encoded. The absolute form
 * (`http://host/v2/…`, RFC 9112 §3.2.2) is read as its path.
 */
export function parseTarget(rawUrl: string): { path: string; query: URLSearchParams } {
  let target = rawUrl;
  const absolute = /^https?:\/\/[^/?#]*/i.exec(target);
  if (absolute) {
    target = target.slice(absolute[0].length);
    if (target === '' || target.startsWith('?')) target = `/${target}`;
  }
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  if (
    !path.startsWith('/') ||
    path.includes('//') ||
    /[\\#]|%2e|%2f|%5c/i.test(path) ||
    /\/\.\.?(?:\/|$)/.test(path)
  ) {
    throw errors.badRequest('request path not accepted: empty, dot or encoded separator segments', {
      path: path.slice(0, 300),
    });
  }
  return { path, query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)) };
}

/**
 * RFC 9112 §3.2: an HTTP/1.1 request without Host, or with more than one, is answered 400. Node answers
 * the first with a bare 400 of its own (an empty chunked body) unless told not to, and takes the first
 * of several.
 */
function checkHost(req: IncomingMessage): void {
  if (req.httpVersionMajor !== 1) return;
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.length === 4 && req.rawHeaders[i]!.toLowerCase() === 'host') hosts++;
  }
  if (hosts > 1) throw errors.badRequest('more than one Host header');
  if (hosts === 0 && req.httpVersionMinor >= 1)
    throw errors.badRequest('an HTTP/1.1 request needs a Host header');
}

/** Time limits on requests; see the `limits.*` settings in docs/configuration.md. */
export interface RequestLimits {
  /** Open connections at most. */
  maxConnections: number;
  /** Headers must arrive within this long; over TLS, the handshake too (each within it). */
  headersTimeoutMs: number;
  /** A body with no byte for this long is abandoned. */
  bodyIdleMs: number;
  /** A body read whole (manifest, token form) must arrive within this long. */
  bodyTimeoutMs: number;
  /** A response whose client takes no bytes for this long is abandoned (send-idle.ts). */
  sendIdleMs: number;
}

export const DEFAULT_LIMITS: RequestLimits = {
  maxConnections: 1000,
  headersTimeoutMs: 30_000,
  bodyIdleMs: 60_000,
  bodyTimeoutMs: 60_000,
  sendIdleMs: 60_000,
};

/**
 * Abandons a request body during which nothing arrives for `idleMs`: answered 408, the connection closed,
 * and a read of the body in progress failed (answerAndClose). Measured by the socket's (HTTP/2: the
 * stream's) inactivity timer, which Node restarts on every read, so a body costs no timer work per chunk
 * and an upload may run as long as its bytes keep coming. Once the body is complete the timer is
 * harmless: the server may take its time to answer (Node sets its keep-alive timer after the answer).
 */
function guardBodyIdle(req: IncomingMessage, res: ServerResponse, idleMs: number): void {
  const onIdle = () => {
    if (req.complete) return;
    answerAndClose(
      req,
      res,
      new OciError(408, 'UNSUPPORTED', `request body idle: no bytes for ${idleMs / 1000} s`),
    );
  };
  if (req.httpVersionMajor >= 2) {
    req.setTimeout(idleMs, onIdle);
    return;
  }
  // socketOnTimeout emits 'timeout' on the response in progress; with a listener, Node leaves the
  // socket to it.
  res.on('timeout', onIdle);
  req.socket.setTimeout(idleMs);
}

/**
 * What a pipelined request waiting for its turn counts for in Node's tally of a connection's unsent
 * answer bytes. Node stops reading a connection once that tally reaches the socket's high-water mark
 * (64 KiB) and reads on when it falls below; it used to grow as queued requests wrote their answers, but
 * a request waiting for its turn writes nothing, so each one adds this much itself. Without it a client
 * sending `GET /v2/` pipelined and reading nothing had its requests parsed faster than answered, and 6 MB
 * of them ended the server at its heap limit. So about 16 wait per connection, plus what one read of the
 * socket (up to 64 KiB) held, which MAX_WAITING_REQUESTS bounds.
 */
const QUEUED_REQUEST_WEIGHT = 4096;

/**
 * Requests a connection may have waiting for their turn; one more closes it. Node's brake (above) stops
 * reading a connection only after the socket read in hand is parsed whole, and one read of 64 KiB held
 * 2184 `GET /v2/` requests, each with its request, response and waiting handler (~3 KB of heap): behind a
 * download nobody read, 20 such connections (1.3 MB sent) ended the server at its 128 MB heap. A client
 * that pipelines this deep is not one Tether serves (registry clients do not pipeline; apt, which does,
 * sends 10 at a time); closing the connection frees what its requests held.
 */
const MAX_WAITING_REQUESTS = 32;

/** Requests waiting for their turn, per connection. */
const waitingOn = new WeakMap<Socket, number>();

/**
 * Resolves when a pipelined HTTP/1.1 request's turn comes: true once its response has the connection
 * (Node emits 'socket' when the answer before it has ended), false if the connection closed first.
 * Until then the request is not looked at. Before, a queued request ran at once: 300 blob GETs sent in
 * one write, with nothing read, held 300 open files and ~320 MB of read buffers behind the first
 * answer, the send-idle limit could not time answers that had no socket yet, and a GET pipelined
 * behind a PUT of the same manifest could be answered first. Now a connection has one request in
 * progress, as with Go's and nginx's servers.
 */
function turnOf(socket: Socket, res: ServerResponse): Promise<boolean> {
  // While it waits, the request counts among its connection's waiting ones (MAX_WAITING_REQUESTS) and
  // in Node's tally of unsent answer bytes, through Node's own hook (`OutgoingMessage#_onPendingData`).
  const pending = (res as unknown as { _onPendingData?: (delta: number) => void })._onPendingData;
  pending?.(QUEUED_REQUEST_WEIGHT);
  waitingOn.set(socket, (waitingOn.get(socket) ?? 0) + 1);
  return new Promise((resolve) => {
    const settle = (turn: boolean) => {
      res.off('socket', onSocket);
      res.off('close', onClose);
      pending?.(-QUEUED_REQUEST_WEIGHT);
      waitingOn.set(socket, (waitingOn.get(socket) ?? 1) - 1);
      resolve(turn);
    };
    const onSocket = () => settle(true);
    const onClose = () => settle(false);
    res.once('socket', onSocket);
    res.once('close', onClose);
  });
}

export function createRequestHandler(
  registry: Registry,
  log: Logger,
  auth?: Authorizer,
  limits: RequestLimits = DEFAULT_LIMITS,
  /** True once the server is stopping: pipelined requests still waiting are not carried out. */
  stopping: () => boolean = () => false,
) {
  const sends = new SendIdleGuard(limits.sendIdleMs, log);
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = process.hrtime.bigint();
    // A body that breaks the chunk rule (incoming.ts) while its request waits for its turn is answered
    // when the turn comes. Without a handler by then the request was destroyed, and with it the
    // connection: the answer in progress before it was cut, and the 400 never sent.
    let waiting = false;
    let refusedWhileWaiting: OciError | undefined;
    if (hasBody(req) && isGuarded(req)) {
      req.onBodyRefused((err) => {
        if (waiting) refusedWhileWaiting = err;
        else answerAndClose(req, res, err);
      });
    }
    // Only an HTTP/1.1 response queued behind another has no socket (an HTTP/2 one always has a proxy).
    if (res.socket === null) {
      const socket: Socket = req.socket;
      // Node parses the rest of a socket read after the connection was closed for too many waiting.
      if (socket.destroyed) return;
      if ((waitingOn.get(socket) ?? 0) >= MAX_WAITING_REQUESTS) {
        log.warn(
          { remote: socket.remoteAddress, waiting: MAX_WAITING_REQUESTS },
          `connection closed: more than ${MAX_WAITING_REQUESTS} pipelined requests waiting for their turn`,
        );
        socket.destroy();
        return;
      }
      waiting = true;
      const turn = await turnOf(socket, res);
      waiting = false;
      if (!turn) return;
      // A stopping server closes a connection once the answer in progress is out, as Go's and nginx's
      // do, rather than carry out what was pipelined behind it (a client reading steadily could hold the
      // stop for as long as it kept pipelining); RFC 9112 §9.3.2 has clients retry unanswered requests.
      // Closed gently: input still unread would make the kernel reset the connection, which can destroy
      // the answer just sent before the client reads it.
      if (stopping()) {
        lingerOnClose(req);
        socket.destroySoon();
        return;
      }
      // The connection's idle timer may still be the one guardBodyIdle set for the request before (Node
      // arms its keep-alive timer only when no answer is queued): left running, it cut a download
      // pipelined behind an upload after limits.bodyIdleSeconds of a stall, unlogged, where
      // limits.sendIdleSeconds applies.
      socket.setTimeout(0);
    }
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
    if (refusedWhileWaiting) {
      answerAndClose(req, res, refusedWhileWaiting);
      return;
    }
    if (hasBody(req)) guardBodyIdle(req, res, limits.bodyIdleMs);
    try {
      checkHost(req);
      const { path, query } = parseTarget(rawUrl);
      if (auth && path === TOKEN_PATH) {
        await auth.handleToken(req, res, query);
        return;
      }
      if (auth && path === JWKS_PATH) {
        await auth.handleJwks(res);
        return;
      }
      const match = matchRoute(method, path);
      const handler = HANDLERS[match.route][method]!;
      const caller: Caller = auth ? await auth.authorize(req, match) : OPEN_CALLER;
      const ctx: RouteContext = {
        req,
        res,
        registry,
        caller,
        name: match.name,
        ref: match.ref,
        query,
        bodyTimeoutMs: limits.bodyTimeoutMs,
        sends,
      };
      await handler(ctx);
    } catch (err) {
      // The connection's socket, not res.socket, which Node detaches when the response finishes.
      // (`req.socket` is null once Node has let go of the connection.)
      if (isClientAbort(err) || !req.socket || req.socket.destroyed) {
        abort(res);
        return;
      }
      if (!(err instanceof OciError)) log.error({ err, method, url: rawUrl }, 'request failed');
      // A body not received to its end (not asked for, or abandoned halfway by a failed write) is not
      // worth reading: close the connection after the answer, without losing it. One that arrived whole
      // is dropped by Node and the connection kept. HTTP/2 forbids `Connection`; its streams end alone.
      const closeConnection =
        !req.complete && method !== 'GET' && method !== 'HEAD' && req.httpVersionMajor < 2;
      if (closeConnection) lingerOnClose(req);
      sendError(res, err, closeConnection);
    } finally {
      // An answer the socket did not take whole at once (its client is not reading) is watched until
      // it has been; a blob was watched while sent.
      sends.watchIfQueued(req, res);
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

/** A warning when connections reach the cap, then at most one a minute while they stay there. */
function overCapLog(log: Logger, maxConnections: number): () => void {
  let turnedAway = 0;
  let lastLogged = -Infinity;
  return () => {
    turnedAway++;
    const now = performance.now();
    if (now - lastLogged < OVER_CAP_LOG_MS) return;
    log.warn(
      { maxConnections, turnedAway },
      'connection limit reached: connections over it are answered 429 (limits.maxConnections)',
    );
    lastLogged = now;
    turnedAway = 0;
  };
}

function readPem(files: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  return { cert: readFileSync(files.cert), key: readFileSync(files.key) };
}

export interface ListenOptions {
  host: string;
  port: number;
  auth?: Authorizer;
  /** PEM files; when set, HTTPS with HTTP/2 and HTTP/1.1 (ALPN), reloaded when the files change. */
  tls?: { cert: string; key: string };
  limits?: RequestLimits;
}

export async function listen(
  registry: Registry,
  log: Logger,
  options: ListenOptions,
): Promise<HttpServerHandle> {
  const limits = options.limits ?? DEFAULT_LIMITS;
  let stopping = false;
  const handler = createRequestHandler(registry, log, options.auth, limits, () => stopping);
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    void handler(req, res);
  };
  const { tls } = options;
  // HTTP/1.1 settings, for plain HTTP and for HTTP/1.1 over TLS alike: Node's HTTP/2 server reads them
  // from its own options (with `allowHTTP1`). Its defaults were a 60 s header timeout checked every
  // 30 s, a 5 s keep-alive, and a 300 s limit on a whole request that cut blob uploads over TLS.
  const http1Options = {
    // No limit on a whole request: uploads run as long as their bytes flow (guardBodyIdle).
    requestTimeout: 0,
    headersTimeout: limits.headersTimeoutMs,
    // How often Node checks headersTimeout (default 30 s, which made 60 s up to 90).
    connectionsCheckingInterval: Math.min(5_000, limits.headersTimeoutMs),
    keepAliveTimeout: KEEP_ALIVE_MS,
    // checkHost answers a missing Host with error JSON; Node's own answer has an empty body.
    requireHostHeader: false,
    IncomingMessage: guardedRequestClass(),
  };
  const pem = tls ? readPem(tls) : undefined;
  // The certificate connections over the cap are answered with (connections.ts), kept in step.
  let secureContext = pem ? nodeTls().createSecureContext(pem) : undefined;
  const server: Server = pem
    ? (http2().createSecureServer(
        {
          allowHTTP1: true,
          ...pem,
          // Node's default is 120 s. A handshake sends no application data, so Node's timer (an
          // inactivity one) is not restarted by a client trickling its handshake: it bounds the whole.
          handshakeTimeout: limits.headersTimeoutMs,
          settings: { maxConcurrentStreams: MAX_STREAMS_PER_SESSION },
          ...http1Options,
          Http2ServerRequest: guardedHttp2RequestClass(),
        },
        onRequest as never,
      ) as unknown as Server)
    : http.createServer(http1Options, onRequest);
  // Further connections are answered 429 and closed (connections.ts): each may hold a request body.
  const cap = capConnections(server, {
    max: limits.maxConnections,
    ...(secureContext ? { secureContext: () => secureContext! } : {}),
    onOverCap: overCapLog(log, limits.maxConnections),
  });
  // Without a listener Node sends `100 Continue` before the handler runs; with it, requestBody() does.
  server.on('checkContinue', onRequest);
  server.on('clientError', tls ? answerUnparsableOverTls : answerUnparsable);
  if (tls) limitSessionIdle(server, limits.headersTimeoutMs, KEEP_ALIVE_MS);
  let stopWatching = () => {};
  if (tls) {
    const reload = () => {
      try {
        const fresh = readPem(tls);
        (server as unknown as { setSecureContext(o: object): void }).setSecureContext(fresh);
        secureContext = nodeTls().createSecureContext(fresh);
        log.info({ cert: tls.cert }, 'TLS certificate reloaded');
      } catch (err) {
        log.error({ err }, 'TLS certificate reload failed; keeping the previous one');
      }
    };
    watchFile(tls.cert, { interval: 1000 }, reload);
    watchFile(tls.key, { interval: 1000 }, reload);
    stopWatching = () => {
      unwatchFile(tls.cert, reload);
      unwatchFile(tls.key, reload);
    };
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
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
        stopping = true;
        stopWatching();
        cap.close();
        // close() ends the connections that are idle now. One still serving a request turns idle when
        // its response ends, and would then stay open until its client lets go of it: up to the 65 s
        // keep-alive timeout, longer than most supervisors wait before killing the process. So idle
        // connections are swept again until the last one is gone.
        // (The TLS server is Node's HTTP/2 one, which has no such call and closes such connections and
        // sessions itself: docs/configuration.md, "Stopping".)
        const closeIdle = () => (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
        const sweep = setInterval(closeIdle, CLOSE_SWEEP_MS);
        server.close((err) => {
          clearInterval(sweep);
          if (err) reject(err);
          else resolve();
        });
        closeIdle();
      }),
  };
}
