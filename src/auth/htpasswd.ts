import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { mkdir, open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { syncDirectory } from '../storage/sync-directory.ts';

/**
 * Users in an htpasswd file of bcrypt hashes (`user:$2y$…`), the format Distribution and zot read.
 * The file is re-read when its modification time changes (checked at most once a second), so
 * `tether user add` takes effect on a running server. Successful verifications are cached for a minute
 * (keyed by a hash of user, password and stored hash) so Basic auth does not pay bcrypt per request.
 */
export const USERNAME = /^[A-Za-z0-9._@-]{1,128}$/;
const BCRYPT = /^\$2[abxy]\$\d{2}\$[./A-Za-z0-9]{53}$/;
const CACHE_MS = 60_000;
const CACHE_MAX = 10_000;

export function parseHtpasswd(text: string): Map<string, string> {
  const users = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const colon = trimmed.indexOf(':');
    const user = trimmed.slice(0, colon);
    const hash = trimmed.slice(colon + 1);
    // Only bcrypt is accepted: MD5/SHA1/crypt htpasswd entries are too weak to honour.
    if (colon > 0 && USERNAME.test(user) && BCRYPT.test(hash)) users.set(user, hash);
  }
  return users;
}

export function formatHtpasswd(users: Map<string, string>): string {
  return [...users].map(([u, h]) => `${u}:${h}\n`).join('');
}

export class Htpasswd {
  readonly #path: string;
  #users = new Map<string, string>();
  #mtimeMs = -1;
  #checkedAt = 0;
  readonly #verified = new Map<string, number>();
  /** Comparisons under way, by the same key as `#verified`. */
  readonly #checking = new Map<string, Promise<boolean>>();

  constructor(path: string) {
    this.#path = path;
    this.#reload(true);
  }

  #reload(force = false): void {
    const now = Date.now();
    if (!force && now - this.#checkedAt < 1000) return;
    this.#checkedAt = now;
    let mtimeMs: number;
    try {
      mtimeMs = statSync(this.#path).mtimeMs;
    } catch {
      this.#users = new Map();
      this.#mtimeMs = -1;
      return;
    }
    if (mtimeMs === this.#mtimeMs && !force) return;
    this.#users = parseHtpasswd(readFileSync(this.#path, 'utf8'));
    this.#mtimeMs = mtimeMs;
    this.#verified.clear();
  }

  has(user: string): boolean {
    this.#reload();
    return this.#users.has(user);
  }

  /**
   * A fingerprint of the user's current password entry (its bcrypt hash, salt included), so that what
   * was issued against a password (a refresh token) can die with it: a new password, or the same name
   * added again, gives another. Hashed again, so a token carries nothing of the entry itself.
   */
  credentialTag(user: string): string | undefined {
    this.#reload();
    const hash = this.#users.get(user);
    return hash === undefined
      ? undefined
      : createHash('sha256').update(hash).digest('base64url').slice(0, 22);
  }

  get size(): number {
    this.#reload();
    return this.#users.size;
  }

  #key(user: string, password: string, hash: string | undefined): string {
    return createHash('sha256')
      .update(`${user}\0${password}\0${hash ?? ''}`)
      .digest('base64');
  }

  /**
   * The outcome of these credentials when it is known without a bcrypt run of their own: verified in
   * the last minute, or being verified for another request right now. Undefined otherwise.
   */
  known(user: string, password: string): Promise<boolean> | undefined {
    this.#reload();
    const hash = this.#users.get(user);
    const key = this.#key(user, password, hash);
    const cached = this.#verified.get(key);
    if (hash && cached !== undefined && cached > Date.now()) return Promise.resolve(true);
    return this.#checking.get(key);
  }

  /**
   * Checks a password. Unknown users cost a bcrypt comparison too, so timing does not reveal them.
   * Concurrent checks of the same credentials share one comparison, and comparisons run one at a time
   * (see BCRYPT_AT_ONCE).
   */
  verify(user: string, password: string): Promise<boolean> {
    const known = this.known(user, password);
    if (known) return known;
    const hash = this.#users.get(user);
    const key = this.#key(user, password, hash);
    const check = (async () => {
      const ok = await comparing(async () => (await bcrypt()).compare(password, hash ?? DUMMY_HASH));
      if (ok && hash) {
        if (this.#verified.size >= CACHE_MAX) this.#verified.clear();
        this.#verified.set(key, Date.now() + CACHE_MS);
      }
      return ok && hash !== undefined;
    })();
    this.#checking.set(key, check);
    const done = () => this.#checking.delete(key);
    check.then(done, done);
    return check;
  }
}

/**
 * bcryptjs runs on the event loop, in slices of up to 100 ms; comparisons running side by side share
 * the one thread and only interleave their slices, so every other request waited behind all of them
 * (300 at once stalled the registry for 25 s). One at a time, a request waits for at most one slice,
 * and logins are answered in the order they came, at the same total rate.
 */
const BCRYPT_AT_ONCE = 1;
let comparisons = 0;
const waiting: (() => void)[] = [];

/** Runs `work` (a bcrypt comparison) once the comparisons before it are done; exported for its test. */
export async function comparing<T>(work: () => Promise<T>): Promise<T> {
  if (comparisons >= BCRYPT_AT_ONCE) await new Promise<void>((resolve) => waiting.push(resolve));
  else comparisons++;
  try {
    return await work();
  } finally {
    // The slot passes straight to the next waiter, if any.
    const next = waiting.shift();
    if (next) next();
    else comparisons--;
  }
}

// A valid hash of a random secret, compared against when the user does not exist.
const DUMMY_HASH = '$2b$10$sZ.3RnypKOl8aXu1wEeUD.TlLVJ2Jn.pKvOGLwfJop4OB1nx9QfoK';

/** Edits an htpasswd file atomically and durably (write and sync a temp file, rename). Used by `tether user`. */
export async function editHtpasswd(
  path: string,
  edit: (users: Map<string, string>) => void | Promise<void>,
): Promise<void> {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const users = parseHtpasswd(text);
  await edit(users);
  const temp = `${path}.${process.pid}.tmp`;
  // `tether user add` usually runs before the first `tether serve`, which is what creates the data
  // directory the default file lives in; made here as serve makes it (umask mode, parents included).
  await mkdir(dirname(path), { recursive: true });
  // Durable before `tether user` reports success: the bytes synced before the rename, and the rename
  // synced in its directory, so a power cut leaves the old file or the new one, never an empty one.
  const file = await open(temp, 'w', 0o600);
  try {
    await file.writeFile(formatHtpasswd(users));
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temp, path);
  await syncDirectory(dirname(path));
}

export async function hashPassword(password: string, cost = 10): Promise<string> {
  return (await bcrypt()).hash(password, cost);
}

/** bcryptjs, loaded on first use: a registry without Basic auth never needs it. */
async function bcrypt(): Promise<typeof import('bcryptjs').default> {
  return (await import('bcryptjs')).default;
}
