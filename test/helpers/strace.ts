import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { skipUnlessStrict } from './skip.ts';

/**
 * Whether durability tests can run: they read the system calls, on Linux, with strace (a `skip` option;
 * under TETHER_TEST_STRICT=1 importing this file throws where strace cannot run).
 */
export const straceSkip = skipUnlessStrict(
  (process.platform !== 'linux' || spawnSync('strace', ['-V']).status !== 0) && 'needs strace on Linux',
);

/**
 * strace arguments that log every sync and write, with file paths, to `log` (and opens and closes, to
 * tell the descriptors opened with O_DIRECT, whose writes reach the device without a sync).
 */
export const straceSyncArgs = (log: string) => [
  '-f',
  '-y',
  '-qq',
  '-e',
  'trace=fsync,fdatasync,write,writev,pwrite64,openat,close',
  '-o',
  log,
];

/**
 * A completed sync (`fsync`/`fdatasync` of `path`), a completed `pwrite64` on a descriptor opened with
 * O_DIRECT (sync `O_DIRECT write`: its bytes are on the device, in its cache until the next sync), or a
 * mark written by the traced process, in order.
 */
export type TraceEvent = { sync: string; path: string } | { mark: string };

/**
 * Reads a log written with straceSyncArgs. Durability is about which syncs completed before something was
 * acknowledged, so a sync counts where it completed: a call another thread interrupted is printed in two
 * parts (`<unfinished ...>`, then `<... resumed>` by the same thread), and takes its path from the first.
 * A write whose text matches `mark` (first capture group) becomes a mark where it starts.
 */
export async function readSyncTrace(log: string, mark: RegExp): Promise<TraceEvent[]> {
  const started = new Map<string, { sync: string; path: string; fd: string | undefined }>();
  const events: TraceEvent[] = [];
  /** Descriptors open with O_DIRECT (the numbers are the process's, shared by its threads). */
  const direct = new Set<string>();
  const openingDirect = new Set<string>();
  const complete = (event: { sync: string; path: string; fd: string | undefined }) => {
    if (event.sync !== 'pwrite64') events.push({ sync: event.sync, path: event.path });
    else if (event.fd !== undefined && direct.has(event.fd))
      events.push({ sync: 'O_DIRECT write', path: event.path });
  };
  for (const line of (await readFile(log, 'utf8')).split('\n')) {
    const [, pid, call, fd, path] = /^(\d+)\s+(fsync|fdatasync|pwrite64)\((\d+)<([^>]*)>/.exec(line) ?? [];
    if (call && path) {
      const event = { sync: call, path, fd };
      if (line.includes('<unfinished ...>')) started.set(`${pid} ${call}`, event);
      else complete(event);
      continue;
    }
    const [, rpid, rcall] = /^(\d+)\s+<\.\.\. (fsync|fdatasync|pwrite64) resumed>/.exec(line) ?? [];
    const resumed = started.get(`${rpid} ${rcall}`);
    if (resumed) {
      complete(resumed);
      started.delete(`${rpid} ${rcall}`);
      continue;
    }
    const [, opid, kind] = /^(\d+)\s+(openat\(|<\.\.\. openat resumed>)/.exec(line) ?? [];
    if (opid) {
      const starting = kind === 'openat(';
      if (starting && line.includes('<unfinished ...>')) {
        if (line.includes('O_DIRECT')) openingDirect.add(opid);
        continue;
      }
      const isDirect = starting ? line.includes('O_DIRECT') : openingDirect.delete(opid);
      const [, opened] = /\)\s+=\s+(\d+)</.exec(line) ?? [];
      if (opened && isDirect) direct.add(opened);
      continue;
    }
    const [, closed] = /^\d+\s+close\((\d+)</.exec(line) ?? [];
    if (closed) {
      direct.delete(closed);
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

/**
 * strace arguments that hold every system call matching `calls` (a regular expression over their
 * names, as `^rename`) for `seconds` after it returned: the call has done its work, and the process
 * can be killed right after it (a crash point, without any hook in the server).
 */
export const straceHoldArgs = (calls: string, seconds: number) => [
  '-f',
  '-qq',
  '-o',
  '/dev/null',
  ...delayCalls(calls, seconds, 'delay_exit'),
];

/** strace's filter and injection for holding the calls matching `calls` for `seconds`, before or after. */
function delayCalls(calls: string, seconds: number, when: 'delay_enter' | 'delay_exit'): string[] {
  return ['-e', `trace=/${calls}`, '-e', `inject=/${calls}:${when}=${Math.round(seconds * 1_000_000)}`];
}

/** The pid of the process a wrapper such as strace started (its only child). */
export function wrappedPid(wrapperPid: number): number {
  const children = readFileSync(`/proc/${wrapperPid}/task/${wrapperPid}/children`, 'utf8').trim();
  const pid = Number(children.split(/\s+/)[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no child of ${wrapperPid}: "${children}"`);
  return pid;
}

/**
 * Attaches strace to a running process (all its threads) and holds every system call matching `calls`
 * for `seconds` before it runs: a crash point from that moment on, with the setup done at full speed.
 * Resolves once attached; `calls()` counts the calls caught so far (strace logs each as it is entered,
 * so a held one counts), and `detach` ends strace, and the kernel lets the process go on (a SIGTERM asks
 * strace to detach itself, which hung when the process was killed while one of its calls was held).
 */
export async function holdSystemCalls(
  pid: number,
  calls: string,
  seconds: number,
): Promise<{ calls(): number; detach(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-hold-'));
  const log = join(dir, 'trace.txt');
  const strace = spawn(
    'strace',
    ['-f', '-p', String(pid), '-o', log, ...delayCalls(calls, seconds, 'delay_enter')],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const exited = new Promise<void>((resolve) => strace.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let err = '';
    strace.stderr!.on('data', (d) => {
      err += d;
      if (/attached/.test(err)) resolve();
    });
    void exited.then(() => reject(new Error(`strace did not attach to ${pid}: ${err}`)));
  });
  return {
    calls: () => {
      try {
        return readFileSync(log, 'utf8')
          .split('\n')
          .filter((line) => /^\d+\s+\w+\(/.test(line)).length;
      } catch {
        return 0;
      }
    },
    detach: async () => {
      strace.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
