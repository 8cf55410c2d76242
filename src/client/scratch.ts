import { rmSync } from 'node:fs';

/**
 * Temporary files and directories that the client has open right now: a blob arriving in a layout, a
 * pull's staging directory, a download not yet renamed into place. Each operation removes its own on
 * success or failure; this list exists for the one end it cannot see coming, a signal. The CLI removes
 * what is listed here before a Ctrl-C ends it (`removeScratch`), so an interrupted pull or copy leaves
 * nothing behind; a program that embeds the client and handles signals itself can do the same.
 */
const scratchPaths = new Set<string>();

/**
 * Runs `work` with `path` listed as scratch. `work` still removes or renames the path itself; the
 * listing only covers the moment a signal arrives.
 */
export async function withScratch<T>(path: string, work: () => Promise<T>): Promise<T> {
  scratchPaths.add(path);
  try {
    return await work();
  } finally {
    scratchPaths.delete(path);
  }
}

/**
 * Removes every listed path, synchronously, because it runs in a signal handler just before the
 * process ends: there is no later turn of the event loop to finish an asynchronous removal in.
 */
export function removeScratch(): void {
  for (const path of scratchPaths) {
    try {
      rmSync(path, { recursive: true, force: true });
    } catch {
      // Whatever cannot be removed now stays; the process is ending either way.
    }
  }
  scratchPaths.clear();
}
