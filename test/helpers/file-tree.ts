import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A directory tree as sorted lines, to compare two trees in one assertion: `sub/` for a directory,
 * `x.txt = <content>` for a file (executable ones marked `*`), `link -> target` for a symbolic link.
 */
export async function describeTree(root: string): Promise<string[]> {
  const lines: string[] = [];
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const full = join(entry.parentPath, entry.name);
    const path = full.slice(root.length + 1);
    const info = await lstat(full);
    if (info.isDirectory()) lines.push(`${path}/`);
    else if (info.isSymbolicLink()) lines.push(`${path} -> ${await readlink(full)}`);
    else lines.push(`${path}${info.mode & 0o100 ? '*' : ''} = ${(await readFile(full)).toString('utf8')}`);
  }
  return lines.sort();
}
