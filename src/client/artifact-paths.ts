import { lstat, mkdir, readdir, readlink, rename } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { ClientError } from './errors.ts';

/**
 * File names in artifacts, as oras writes and reads them: a layer's `org.opencontainers.image.title` is
 * the path it was pushed from, relative and cleaned (`d/sub/x.txt`), and a pull writes it at that path
 * under the output directory, refusing any that would land outside it.
 */

/** `path` cleaned as Go's `filepath.Clean` cleans it (oras's titles): no `.`, `//`, inner `..` or trailing `/`. */
export function cleanPath(path: string): string {
  if (path === '') return '.';
  const normal = posix.normalize(path);
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal;
}

/** The first name that occurs twice, if any. */
export function duplicateName(names: Iterable<string>): string | undefined {
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) return name;
    seen.add(name);
  }
  return undefined;
}

/**
 * `name` (a title, or an entry of an archive) as a path relative to the directory it is written into,
 * cleaned; refused when it would leave that directory: absolute, `..` once cleaned, or holding a NUL or
 * a backslash (a separator on Windows, so the same title would land elsewhere there). `.` (the
 * directory itself) is returned as is, for the caller to accept or refuse.
 */
export function relativeOutputPath(name: string, what: string): string {
  if (name === '' || name.includes('\0') || name.includes('\\') || posix.isAbsolute(name))
    throw new ClientError(`refusing to write ${what} named "${name}": not a relative path`);
  const clean = cleanPath(name);
  if (clean === '..' || clean.startsWith('../'))
    throw new ClientError(`refusing to write ${what} named "${name}": it leads out of the output directory`);
  return clean;
}

/**
 * Makes the directories `relative` (cleaned, inside `root`) passes through, one at a time, without
 * following a symbolic link: one on the way is refused, since whatever it points at is not `root`'s.
 */
export async function makeParents(root: string, relative: string): Promise<void> {
  const parts = relative.split('/').slice(0, -1);
  for (let i = 1; i <= parts.length; i++) {
    const dir = join(root, ...parts.slice(0, i));
    let info = await lstat(dir).catch(missing);
    if (!info) {
      await mkdir(dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      info = await lstat(dir);
    }
    if (info.isSymbolicLink()) throw new ClientError(`refusing to write through the symbolic link ${dir}`);
    if (!info.isDirectory()) throw new ClientError(`cannot write into ${dir}: it is not a directory`);
  }
}

/**
 * Moves `staged` (a verified file or directory tree) to `relative` under `root`, creating the
 * directories on the way (see `makeParents`). A file replaces a file or a symbolic link there (the link
 * itself, never what it points at); a directory is merged into a directory there, entry by entry, as
 * oras does, and refused where a symbolic link or a file stands.
 */
export async function moveInto(staged: string, root: string, relative: string): Promise<void> {
  if (relative !== '.') await makeParents(root, relative);
  await place(staged, root, relative);
}

async function place(staged: string, root: string, relative: string): Promise<void> {
  const target = relative === '.' ? root : join(root, relative);
  const [from, to] = await Promise.all([lstat(staged), lstat(target).catch(missing)]);
  if (from.isDirectory() && to) {
    if (to.isSymbolicLink()) throw new ClientError(`refusing to write through the symbolic link ${target}`);
    if (!to.isDirectory()) throw new ClientError(`cannot write the directory ${target}: a file is there`);
    for (const name of await readdir(staged))
      await place(join(staged, name), root, relative === '.' ? name : `${relative}/${name}`);
    return;
  }
  if (to?.isDirectory()) throw new ClientError(`cannot write the file ${target}: a directory is there`);
  await rename(staged, target);
}

/**
 * Whether the symbolic link at `relative` in the tree `root` points inside the tree, resolved as the
 * kernel would resolve it: other links of the tree on the way are followed (a link to `sub/../x`, with
 * `sub` itself a link to `..`, leaves). The last component is not followed: a link there is checked on
 * its own. A target that does not exist (yet) is judged by its name. Absolute targets are outside.
 */
export async function linkStaysInside(root: string, relative: string): Promise<boolean> {
  let hops = 0;
  const resolve = async (from: string[], target: string): Promise<string[] | undefined> => {
    if (posix.isAbsolute(target)) return undefined;
    const at = [...from];
    const parts = target.split('/').filter((part) => part !== '' && part !== '.');
    for (const [i, part] of parts.entries()) {
      if (part === '..') {
        if (at.pop() === undefined) return undefined;
        continue;
      }
      at.push(part);
      if (i === parts.length - 1) break;
      const path = join(root, ...at);
      if (!(await lstat(path).catch(missing))?.isSymbolicLink()) continue;
      // As the kernel's ELOOP: a cycle of links resolves nowhere.
      if (++hops > 40) return undefined;
      const resolved = await resolve(at.slice(0, -1), await readlink(path));
      if (!resolved) return undefined;
      at.splice(0, at.length, ...resolved);
    }
    return at;
  };
  const parts = relative.split('/');
  return (await resolve(parts.slice(0, -1), await readlink(join(root, relative)))) !== undefined;
}

function missing(err: NodeJS.ErrnoException): undefined {
  if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
  throw err;
}
