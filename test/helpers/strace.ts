import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/** Whether durability tests can run: they read the system calls, on Linux, with strace. */
export const straceSkip =
  (process.platform !== 'linux' || spawnSync('strace', ['-V']).status !== 0) && 'needs strace on Linux';

/** strace arguments that log every sync and write, with file paths, to `log`. */
export const straceSyncArgs = (log: string) => [
  '-f',
  '-y',
  '-qq',
  '-e',
  'trace=fsync,fdatasync,write,writev',
  '-o',
  log,
];

/** A completed sync (`fsync`/`fdatasync` of `path`) or a mark written by the traced process, in order. */
export type TraceEvent = { sync: string; path: string } | { mark: string };

/**
 * Reads a log written with straceSyncArgs. Durability is about which syncs completed before something was
 * acknowledged, so a sync counts where it completed: a call another thread interrupted is printed in two
 * parts (`<unfinished ...>`, then `<... resumed>` by the same thread), and takes its path from the first.
 * A write whose text matches `mark` (first capture group) becomes a mark where it starts.
 */
export async function readSyncTrace(log: string, mark: RegExp): Promise<TraceEvent[]> {
  const started = new Map<string, { sync: string; path: string }>();
  const events: TraceEvent[] = [];
  for (const line of (await readFile(log, 'utf8')).split('\n')) {
    const [, pid, call, path] = /^(\d+)\s+(fsync|fdatasync)\(\d+<([^>]*)>/.exec(line) ?? [];
    if (call && path) {
      if (line.includes('<unfinished ...>')) started.set(`${pid} ${call}`, { sync: call, path });
      else events.push({ sync: call, path });
      continue;
    }
    const [, rpid, rcall] = /^(\d+)\s+<\.\.\. (fsync|fdatasync) resumed>/.exec(line) ?? [];
    const resumed = started.get(`${rpid} ${rcall}`);
    if (resumed) {
      events.push(resumed);
      started.delete(`${rpid} ${rcall}`);
      continue;
    }
    const written = /^\d+\s+writev?\(/.test(line) ? mark.exec(line) : null;
    if (written?.[1]) events.push({ mark: written[1] });
  }
  return events;
}

/** The `sync path` entries completed between the n-th and the next mark (marks counted from 0). */
export function syncsAfterMark(events: TraceEvent[], n: number): string[] {
  const marks = events.flatMap((e, i) => ('mark' in e ? [i] : []));
  if (n + 1 >= marks.length) throw new Error(`only ${marks.length} marks: ${JSON.stringify(events)}`);
  return events
    .slice(marks[n]! + 1, marks[n + 1])
    .flatMap((e) => ('path' in e ? [`${e.sync} ${e.path}`] : []));
}
