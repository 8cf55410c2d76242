import type { ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { Server, Socket } from 'node:net';
import type { SecureContext, TLSSocket } from 'node:tls';
import { tls } from '../io/node-http.ts';
import { OciError } from '../oci/errors.ts';

/**
 * The connection cap (`limits.maxConnections`), with an answer for the connections over it.
 *
 * Node's own `server.maxConnections` closes such a connection as it arrives; the request the client
 * already sent is unread, so the kernel answers it with a reset: curl said "Connection reset by peer" or
 * "Empty reply from server", and no client could tell a busy registry from a crashed one. Here a
 * connection over the cap gets `429 TOOMANYREQUESTS` with `Retry-After` instead, written straight to the
 * socket (no HTTP parser, no request object), and is then closed gently: input is read and dropped until
 * the client closes its side, so the answer is not destroyed by a reset (RFC 9112 §9.6). Each such
 * connection is bounded in time (TURN_AWAY_MS from accept), in bytes (TURN_AWAY_DISCARD_BYTES), and in
 * number (TURN_AWAY_MAX at once; further ones are closed at once, as before), and is not counted toward
 * the cap.
 *
 * Why 429 and not 503 `UNAVAILABLE`: `TOOMANYREQUESTS` is the OCI spec's code for "try later", with
 * `Retry-After` (distribution-spec main); `UNAVAILABLE` is a Distribution extra. And the clients that
 * retry, retry 429: containerd's resolver (Docker's containerd image store, BuildKit, nerdctl, the
 * kubelet's pulls) retries 408 and 429 (recent releases after `Retry-After`) and no 5xx; oras-go retries
 * 429 and 5xx with backoff; regclient backs off and retries on 429 but gives up on a 503; skopeo and
 * Tether's client retry 429. Only Docker's classic (graph driver) transfers treat `TOOMANYREQUESTS` as
 * final and would have retried a 503; they show its message instead of a reset.
 *
 * Over TLS an answer needs a handshake, 1.1-1.3 ms of CPU each (measured, P-256 or RSA-2048 certificate):
 * a connection over the cap is answered only while fewer than TLS_TURN_AWAYS_PER_SECOND such handshakes
 * were started this second (~5% of a core), offering only HTTP/1.1 by ALPN so that one plain answer fits
 * every client (all offer HTTP/1.1 too), and is closed at once beyond that budget.
 */

/** What a connection over the cap is told to wait, in seconds. */
const RETRY_AFTER_SECONDS = 2;
/** A connection over the cap is closed this long after it arrived, answered or not. */
const TURN_AWAY_MS = 2_000;
/** Request bytes read and dropped from a connection over the cap before it is closed regardless. */
const TURN_AWAY_DISCARD_BYTES = 1024 * 1024;
/** Connections over the cap being answered at once; each lasts about a round trip for a real client. */
const TURN_AWAY_MAX = 64;
/** TLS handshakes spent on answering connections over the cap, per second. */
const TLS_TURN_AWAYS_PER_SECOND = 50;
/** How long an HTTP/2 session closed for idleness may take to go before it is destroyed. */
const SESSION_CLOSE_GRACE_MS = 1_000;

const BUSY_BODY = JSON.stringify(
  new OciError(
    429,
    'TOOMANYREQUESTS',
    `the registry is at its connection limit; retry after ${RETRY_AFTER_SECONDS} s`,
  ).toJSON(),
);
/** The whole answer, built once: a fixed length, no chunked coding, and the connection closed after it. */
const BUSY_ANSWER = Buffer.from(
  'HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n' +
    `Content-Length: ${Buffer.byteLength(BUSY_BODY)}\r\nRetry-After: ${RETRY_AFTER_SECONDS}\r\n` +
    'Docker-Distribution-Api-Version: registry/2.0\r\nConnection: close\r\n\r\n' +
    BUSY_BODY,
);

export interface ConnectionCap {
  /** Closes the connections over the cap still being answered (the server is stopping). */
  close(): void;
}

export interface CapOptions {
  max: number;
  /** The server's current certificate, for a TLS server: connections over the cap are answered with it. */
  secureContext?: () => SecureContext;
  /** Hears each connection over the cap, answered or not (for the log). */
  onOverCap?: () => void;
}

/**
 * Puts `server` behind the cap: Node's own 'connection' listeners (the HTTP parser, or the TLS wrap)
 * run only for connections under it. Use instead of `server.maxConnections`, which must stay unset.
 */
export function capConnections(server: Server, options: CapOptions): ConnectionCap {
  const accept = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  let open = 0;
  const turningAway = new Set<Socket>();
  let tlsWindowStart = 0;
  let tlsInWindow = 0;
  const tlsBudgetLeft = (): boolean => {
    const now = performance.now();
    if (now - tlsWindowStart >= 1000) {
      tlsWindowStart = now;
      tlsInWindow = 0;
    }
    return tlsInWindow++ < TLS_TURN_AWAYS_PER_SECOND;
  };

  server.on('connection', (socket: Socket) => {
    if (open < options.max) {
      open++;
      // For TLS too: the raw socket closes with the TLS socket built on it.
      socket.once('close', () => open--);
      for (const listener of accept) listener.call(server, socket);
      return;
    }
    options.onOverCap?.();
    socket.on('error', () => {});
    if (turningAway.size >= TURN_AWAY_MAX || (options.secureContext && !tlsBudgetLeft())) {
      socket.destroy();
      return;
    }
    let answering: Socket = socket;
    if (options.secureContext) {
      const secure: TLSSocket = new (tls().TLSSocket)(socket, {
        isServer: true,
        secureContext: options.secureContext(),
        ALPNProtocols: ['http/1.1'],
      });
      secure.on('error', () => {});
      secure.once('secure', () => answerBusy(secure));
      answering = secure;
    } else {
      answerBusy(socket);
    }
    turningAway.add(answering);
    const timer = setTimeout(() => answering.destroy(), TURN_AWAY_MS);
    answering.once('close', () => {
      clearTimeout(timer);
      turningAway.delete(answering);
    });
  });

  return {
    close() {
      for (const socket of turningAway) socket.destroy();
    },
  };
}

/**
 * Answers once the request starts to arrive (a response before any request would reach a Go client as
 * "unsolicited response" on a connection it has not used yet), then reads and drops input until the
 * client closes its side, or TURN_AWAY_DISCARD_BYTES have come.
 */
function answerBusy(socket: Socket): void {
  let answered = false;
  let discarded = 0;
  socket.on('data', (chunk: Buffer) => {
    if (!answered) {
      answered = true;
      socket.end(BUSY_ANSWER);
    }
    discarded += chunk.length;
    if (discarded > TURN_AWAY_DISCARD_BYTES) socket.destroy();
  });
  socket.once('end', () => socket.destroy());
}

/**
 * HTTP/2 sessions held open without a request. Node's HTTP/2 server has no header timeout: it sees a
 * request only once its HEADERS and CONTINUATION frames are complete ('stream'), and its session timeout
 * is an inactivity timer, which a client sending a byte now and then never trips. Measured: a session
 * that sent nothing after its preface, or one trickling a HEADERS frame a byte a second, was open after
 * 150 s; one sending a 1-byte CONTINUATION frame every 20 s held its connection for 180 s (nghttp2 ends a
 * header block after 8 CONTINUATION frames, however slow). So, as for HTTP/1.1 connections: a session
 * must complete its first request's headers within `headersTimeoutMs` of its handshake, and one with no
 * request in progress is closed after `idleMs` (HTTP/1.1's keep-alive timeout), with a GOAWAY, as a
 * stopping server closes its sessions.
 */
export function limitSessionIdle(server: Server, headersTimeoutMs: number, idleMs: number): void {
  server.on('session', (session: ServerHttp2Session) => {
    let streams = 0;
    let timer: NodeJS.Timeout | undefined;
    const closeWhenIdle = (ms: number) => {
      timer = setTimeout(() => {
        if (streams > 0) return;
        session.close();
        // close() waits for nghttp2, which waits for a header block in progress to end: 8 more
        // CONTINUATION frames, as slow as the client likes. A request that completes meanwhile runs.
        timer = setTimeout(() => {
          if (streams === 0) session.destroy();
        }, SESSION_CLOSE_GRACE_MS).unref();
      }, ms).unref();
    };
    closeWhenIdle(headersTimeoutMs);
    session.on('stream', (stream: ServerHttp2Stream) => {
      streams++;
      clearTimeout(timer);
      stream.once('close', () => {
        if (--streams === 0 && !session.closed && !session.destroyed) closeWhenIdle(idleMs);
      });
    });
    session.once('close', () => clearTimeout(timer));
  });
}
