/**
 * Slows down password guessing without slowing anyone else. Failures are counted per client address
 * and per user name. Past a threshold, further attempts are refused at once (429 with Retry-After)
 * without running bcrypt, so a burst of wrong passwords costs no CPU and other users' requests are
 * unaffected. The lockout doubles with each failure past the threshold, capped, and is forgotten after
 * a quiet period. A per-user lock only applies to clients that have failed against that user
 * themselves, so an attacker cannot lock a user out of a clean machine. A success forgives only the
 * failures it explains (that client's against that user, the typos before it): a client that logs in
 * as itself between guesses at someone else's password keeps those guesses counted.
 *
 * An attempt counts as a failure from the moment it starts (`begin`) until it ends: checked before its
 * bcrypt run and counted only after it, 300 guesses sent at once all passed the check (230 bcrypt runs,
 * 17 s of CPU). Now a client has only as many attempts under way as it may still fail before its
 * lockout (one at a time once past it), and the rest are refused at once.
 */
export interface ThrottleOptions {
  /** Failures from one client before it is locked out. */
  clientFailures: number;
  /** Failures against one user (from anywhere) before failing clients are locked out of that user. */
  userFailures: number;
  /** Longest lockout. */
  maxLockoutMs: number;
  /** Counters reset after this long without failures. */
  forgetAfterMs: number;
}

export const defaultThrottle: ThrottleOptions = {
  clientFailures: 10,
  userFailures: 20,
  maxLockoutMs: 5 * 60_000,
  forgetAfterMs: 15 * 60_000,
};

interface Counter {
  failures: number;
  lastFailure: number;
}

export class LoginThrottle {
  readonly #options: ThrottleOptions;
  readonly #clients = new Map<string, Counter>();
  readonly #users = new Map<string, Counter>();
  /** Failures of one client against one user (`client\0user`). */
  readonly #pairs = new Map<string, Counter>();
  /** Attempts under way, by client, by user and by pair (keys as above, prefixed `c`, `u`, `p`). */
  readonly #pending = new Map<string, number>();

  constructor(options: Partial<ThrottleOptions> = {}) {
    this.#options = { ...defaultThrottle, ...options };
  }

  #lockout(counter: Counter | undefined, threshold: number, now: number): number {
    if (!counter || counter.failures < threshold) return 0;
    if (now - counter.lastFailure > this.#options.forgetAfterMs) return 0;
    const excess = counter.failures - threshold;
    const lock = Math.min(1000 * 2 ** Math.min(excess, 20), this.#options.maxLockoutMs);
    return Math.max(0, counter.lastFailure + lock - now);
  }

  /** Milliseconds this client must wait before trying `user` again (0: go ahead). */
  retryAfterMs(client: string, user: string, now = Date.now()): number {
    const clientWait = this.#lockout(this.#clients.get(client), this.#options.clientFailures, now);
    const pair = this.#pairs.get(`${client}\0${user}`);
    const tried = pair !== undefined && now - pair.lastFailure <= this.#options.forgetAfterMs;
    const userWait = tried ? this.#lockout(this.#users.get(user), this.#options.userFailures, now) : 0;
    return Math.max(clientWait, userWait);
  }

  /**
   * Starts an attempt of `client` at `user` (call after `retryAfterMs` said 0): it counts as a failure
   * until `release` is called, right before `succeed` or `fail`. Undefined when the attempts under way
   * already take every failure the client (or, for a client that tried `user` before, the user) has left.
   */
  begin(client: string, user: string, now = Date.now()): { release(): void } | undefined {
    const pair = `${client}\0${user}`;
    const clientLeft = this.#left(this.#clients.get(client), this.#options.clientFailures, now);
    if (this.#pendingOf(`c${client}`) >= clientLeft) return undefined;
    const tried = this.#live(this.#pairs.get(pair), now) > 0 || this.#pendingOf(`p${pair}`) > 0;
    const userLeft = this.#left(this.#users.get(user), this.#options.userFailures, now);
    if (tried && this.#pendingOf(`u${user}`) >= userLeft) return undefined;
    const keys = [`c${client}`, `u${user}`, `p${pair}`];
    for (const key of keys) this.#pending.set(key, this.#pendingOf(key) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        for (const key of keys) {
          const n = this.#pendingOf(key) - 1;
          if (n > 0) this.#pending.set(key, n);
          else this.#pending.delete(key);
        }
      },
    };
  }

  #pendingOf(key: string): number {
    return this.#pending.get(key) ?? 0;
  }

  /** Failures counted and not yet forgotten. */
  #live(counter: Counter | undefined, now: number): number {
    return counter && now - counter.lastFailure <= this.#options.forgetAfterMs ? counter.failures : 0;
  }

  /** Attempts that may be under way at once: the failures left before the lockout, one once past it. */
  #left(counter: Counter | undefined, threshold: number, now: number): number {
    return Math.max(1, threshold - this.#live(counter, now));
  }

  fail(client: string, user: string, now = Date.now()): void {
    for (const [map, key] of [
      [this.#clients, client],
      [this.#users, user],
      [this.#pairs, `${client}\0${user}`],
    ] as const) {
      const counter = map.get(key);
      if (!counter || now - counter.lastFailure > this.#options.forgetAfterMs)
        map.set(key, { failures: 1, lastFailure: now });
      else {
        counter.failures++;
        counter.lastFailure = now;
      }
    }
    if (this.#clients.size + this.#users.size + this.#pairs.size > 100_000) this.#prune(now);
  }

  /** `client` logged in as `user`: its failures against `user` were typos, the others stay counted. */
  succeed(client: string, user: string): void {
    const key = `${client}\0${user}`;
    const pair = this.#pairs.get(key);
    if (!pair) return;
    this.#pairs.delete(key);
    const counter = this.#clients.get(client);
    if (!counter) return;
    counter.failures -= pair.failures;
    if (counter.failures <= 0) this.#clients.delete(client);
  }

  #prune(now: number): void {
    for (const map of [this.#clients, this.#users, this.#pairs]) {
      for (const [key, counter] of map)
        if (now - counter.lastFailure > this.#options.forgetAfterMs) map.delete(key);
    }
  }
}
