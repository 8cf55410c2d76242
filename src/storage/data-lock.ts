import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

/** The file whose lock marks a data directory as in use (an empty SQLite database). */
export const LOCK_FILE = 'tether.lock';

/**
 * Exclusive use of a data directory by one process (one open store). Two servers on one directory would
 * each trust what only it holds in memory (an upload's running hash, its per-session lock) and could
 * publish one session's bytes under another's digest.
 *
 * The lock is SQLite's own on `data/tether.lock`: an exclusive transaction held open, in exclusive
 * locking mode. SQLite takes it with POSIX advisory locks, which the operating system drops when the
 * process ends however it ends (`kill -9` included), so a crashed server never leaves a lock behind,
 * and no PID file can go stale. SQLite also sees the lock from another connection of the same process,
 * so a second store opened in one process is refused too. Nothing is ever written to the file. (Like
 * every POSIX lock, it is only as good as the file system's: a data directory on NFS is not supported.)
 */
export class DataDirectoryLock {
  readonly #db: DatabaseSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Takes the lock, or throws at once (no waiting) when another store holds it. */
  static acquire(directory: string): DataDirectoryLock {
    mkdirSync(directory, { recursive: true });
    const path = join(directory, LOCK_FILE);
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
    } catch (cause) {
      throw new Error(`cannot open ${path}: ${(cause as Error).message}`, { cause });
    }
    try {
      db.exec('PRAGMA locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE');
    } catch (cause) {
      db.close();
      if ((cause as { errcode?: number }).errcode === 5 /* SQLITE_BUSY */) {
        throw new Error(
          `the data directory ${directory} is in use by another tether server (it holds a lock on ` +
            `${path}); stop that one first, or give this one another data directory`,
          { cause },
        );
      }
      throw new Error(`cannot lock ${path}: ${(cause as Error).message}`, { cause });
    }
    return new DataDirectoryLock(db);
  }

  /** Lets the directory go (closing the connection ends its transaction and its lock). */
  release(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
