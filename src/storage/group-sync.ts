/**
 * Group commit for one file or directory (the SQLite WAL, the blob store's `uploads/`): many writers
 * each need "everything I wrote is on disk" before they answer, and one sync that starts after their
 * write covers all of them. While a sync runs, the writers that arrive share the next one, so N
 * concurrent commits cost at most two syncs instead of N, and the syncs run on libuv's thread pool
 * instead of blocking the event loop.
 *
 * A failed sync is final: the kernel may already have dropped the dirty pages it could not write,
 * so a later sync that succeeds would not mean the earlier writes are on disk. Every waiter from
 * then on gets the original error, and only a restart (which recovers from what is really on disk:
 * SQLite replays its WAL, an upload resumes from its last committed offset) clears it.
 */
export class GroupSync {
  readonly #sync: () => Promise<void>;
  /** The sync running now; it may have started before the caller's write, so it does not count. */
  #running: Promise<void> | undefined;
  /** The sync that starts when `#running` ends; it covers every write made before it starts. */
  #next: Promise<void> | undefined;
  #failure: unknown;
  #failed = false;

  constructor(sync: () => Promise<void>) {
    this.#sync = sync;
  }

  /** Resolves once a sync that started after this call has completed. */
  after(): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failure);
    if (this.#running === undefined) return this.#start();
    this.#next ??= this.#running.then(
      () => this.#startNext(),
      () => this.#startNext(),
    );
    return this.#next;
  }

  /** Waits for every sync started or queued so far, ignoring their outcome. */
  async drain(): Promise<void> {
    await this.#next?.catch(() => {});
    await this.#running?.catch(() => {});
  }

  #startNext(): Promise<void> {
    this.#next = undefined;
    if (this.#failed) return Promise.reject(this.#failure);
    return this.#start();
  }

  #start(): Promise<void> {
    const running = this.#sync().then(
      () => {
        if (this.#running === running) this.#running = undefined;
      },
      (err: unknown) => {
        if (this.#running === running) this.#running = undefined;
        if (!this.#failed) {
          this.#failed = true;
          this.#failure = err;
        }
        throw err;
      },
    );
    this.#running = running;
    return running;
  }
}
