import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { SendPace } from '../io/file-sender.ts';
import { abort, http2StreamOf } from './http.ts';

/**
 * Responses whose client stops taking bytes (`limits.sendIdleSeconds`, like nginx's `send_timeout`).
 * Without it a download whose client stopped reading held its file, 1-3 MiB of buffers and a connection
 * slot until the client disconnected, and a manifest nobody read stayed queued whole.
 *
 * Watched: a blob while it is sent (its sender counts what the socket has taken, `SendPace`), and any
 * other answer (manifest, page, error) only when the socket did not take it whole at once, which over
 * HTTP/1 a reading client's almost always does. Over HTTP/2 an answer is still queued right after
 * `end()` (the session writes it on a later tick), so each is watched until its stream closes: a Set
 * entry and a 'close' listener (the shared sweep runs while any is). Nothing else is added to a request. One
 * timer for the process looks at the watched responses every SWEEP_MS while there are any; one with
 * nothing taken for the limit is abandoned: HTTP/1 closes its connection, HTTP/2 resets its stream.
 *
 * What "nothing taken" can see: a write is reported once the kernel has taken all of it, so progress
 * shows per write (blobs size theirs to how fast they go: 64 KiB pieces for a slow client, see
 * file-sender.ts), an answer held whole must be taken whole within the limit, and the kernel itself
 * takes bytes from a full socket only once about a third of its send buffer has drained (Linux grows that
 * buffer up to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default): docs/architecture.md.
 *
 * Nothing taken can also be storage's doing: a blob's sender waiting for a read from a failing disk or
 * hung network storage sends nothing either. The sender says while it waits for a read
 * (`SendPace.reading`), so the guard tells the two apart; see `cut` for what a storage stall gets.
 */

/** How often watched responses are looked at: a cut comes within the limit plus twice this. */
const SWEEP_MS = 250;

class Watched implements SendPace {
  sent = 0;
  reading = false;
  /** `sent` and `reading` as the last sweep saw them, and when the transfer last made progress. */
  seen = 0;
  wasReading = false;
  quietSince = performance.now();
  readonly guard: SendIdleGuard;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  constructor(guard: SendIdleGuard, req: IncomingMessage, res: ServerResponse) {
    this.guard = guard;
    this.req = req;
    this.res = res;
  }
}

const watched = new Set<Watched>();
let sweeper: NodeJS.Timeout | undefined;

/** A response whose connection (HTTP/2: stream) is gone already, and will emit nothing more. */
function gone(res: ServerResponse): boolean {
  return res.destroyed || (http2StreamOf(res)?.destroyed ?? false);
}

function sweep(): void {
  if (watched.size === 0) {
    clearInterval(sweeper);
    sweeper = undefined;
    return;
  }
  const now = performance.now();
  for (const w of watched) {
    // (A pipelined HTTP/1 request is not answered before its turn, app.ts, so every watched response
    // has its connection.)
    // A read the sender was seen waiting for has completed: storage delivered, and the socket's time
    // starts now, so a client is not charged with what the disk took. (A read is waited for right after
    // the socket took a write or gave a buffer back, so the time before it is the read's.)
    const readDone = w.wasReading && !w.reading;
    w.wasReading = w.reading;
    if (w.sent !== w.seen || readDone) {
      w.seen = w.sent;
      w.quietSince = now;
    } else if (now - w.quietSince >= w.guard.idleMs) {
      watched.delete(w);
      if (!gone(w.res)) w.guard.cut(w);
    }
  }
}

/** One server's limit; the sweep is shared by all servers in the process. */
export class SendIdleGuard {
  readonly idleMs: number;
  readonly #log: Logger;
  constructor(idleMs: number, log: Logger) {
    this.idleMs = idleMs;
    this.#log = log;
  }

  /**
   * Watches `res` from now until it closes. Returns the pace its sender keeps up to date; an answer
   * already ended (`res.end(body)`) needs none.
   */
  watch(req: IncomingMessage, res: ServerResponse): SendPace {
    const w = new Watched(this, req, res);
    // A response that is gone already closed before it could be heard of: its sender fails at once.
    if (gone(res)) return w;
    watched.add(w);
    res.once('close', () => watched.delete(w));
    sweeper ??= setInterval(sweep, SWEEP_MS).unref();
    return w;
  }

  /** Watches an answer that ended but was not taken whole at once; nothing for one that was. */
  watchIfQueued(req: IncomingMessage, res: ServerResponse): void {
    if (res.writableEnded && res.writableLength > 0) this.watch(req, res);
  }

  /**
   * Abandons a response that made no progress for the limit, and says whose stall it was.
   *
   * A stall in a storage read is cut at the same limit, and logged as the storage's (error level,
   * `stalled: 'storage'`), not the client's. Waiting instead for as long as the read takes would wait
   * unbounded: nothing else bounds it (a FileHandle read has no timeout, libuv cannot cancel a pread in
   * progress, and a failing disk or unreachable network storage holds one for minutes or for good), so
   * the client would hang with no answer, its connection slot held and nothing logged. Cut, the client
   * sees a short transfer it can retry, perhaps elsewhere, and the connection is freed; the file, its
   * buffers and the libuv thread stay with the read until it returns (FileHandle.close waits for it),
   * which no server can avoid. An error, not a warning: the registry failed, and an operator has to look
   * at its storage, as at a proxy's upstream timeout (nginx logs that at error level, a client's
   * `send_timeout` at info).
   */
  cut(w: Watched): void {
    const { req, res } = w;
    const fields = {
      method: req.method,
      url: req.url && req.url.length > 512 ? `${req.url.slice(0, 512)}…` : req.url,
      status: res.statusCode,
      remote: req.socket?.remoteAddress,
      httpVersion: req.httpVersion,
      // Bytes of a blob the connection took, and bytes still queued in the server (an answer held
      // whole reports none taken until all of it is).
      sent: w.sent,
      queued: res.writableLength,
    };
    const limit = `${this.idleMs / 1000} s (limits.sendIdleSeconds)`;
    if (w.reading)
      this.#log.error(
        { ...fields, stalled: 'storage' },
        `response abandoned: a read of the blob from storage did not complete in ${limit}`,
      );
    else
      this.#log.warn(
        { ...fields, stalled: 'client' },
        `response abandoned: the client took no bytes for ${limit}`,
      );
    abort(res);
  }
}
