/**
 * A counting semaphore: at most `limit` holders at once, waiters served in arrival order. The client
 * keeps one per registry host so a big copy does not open more parallel transfers to a host than it
 * (or the network in front of it) tolerates.
 */
export class Limiter {
  readonly limit: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError('a limit must be a positive integer');
    this.limit = limit;
  }

  async acquire(): Promise<() => void> {
    if (this.#active < this.limit) this.#active++;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      // The slot passes straight to the next waiter, so `active` only drops when nobody waits.
      if (next) next();
      else this.#active--;
    };
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await task();
    } finally {
      release();
    }
  }
}

/**
 * Holds a slot of every limiter given, taken in a fixed order (and each limiter once) so two transfers
 * that need the same pair of hosts can never each hold one and wait for the other.
 */
export async function acquireAll(limiters: (Limiter | undefined)[]): Promise<() => void> {
  const unique = [...new Set(limiters.filter((l): l is Limiter => l !== undefined))];
  unique.sort((a, b) => order(a) - order(b));
  const releases: (() => void)[] = [];
  for (const limiter of unique) releases.push(await limiter.acquire());
  return () => {
    for (const release of releases.reverse()) release();
  };
}

const ids = new WeakMap<Limiter, number>();
let nextId = 0;
function order(limiter: Limiter): number {
  let id = ids.get(limiter);
  if (id === undefined) {
    id = nextId++;
    ids.set(limiter, id);
  }
  return id;
}
