/**
 * Runtime settings for `tether serve`, however it is started (`npm start`, `npx tether serve`, a global
 * install, a container). All are measured in docs/performance.md.
 *
 * Heap: a 1 MiB semi-space collects request-body chunks soon enough to keep peak RSS under 150 MB at the
 * same throughput; the old-space cap bounds what promoted garbage may pile up before a full collection.
 * Marking triggers: once the old generation passed ~8 MB (any served traffic does that), V8's default
 * heuristics started a full collection with half the space to its limit still free, about every 50 ms
 * under upload load; starting at 80 % (soft, as a task) and 90 % (at once) of the way to the limit
 * brought 73 full collections during an 8 x 256 MiB push down to 1. Marking that late let the listings'
 * garbage lift peak RSS to 160 MB, so the limit grows by 50 % of the live heap after each collection
 * instead of V8's factor of up to 4: peak RSS back to 144 MB, the push as fast.
 */
import { spawnSync } from 'node:child_process';

/**
 * The collection schedule: V8 internals rather than Node options. A Node whose V8 dropped one would refuse
 * to start with it ("bad option"), so they are passed only after this node accepted them in a probe.
 */
const V8_SCHEDULE_FLAGS = [
  '--incremental-marking-soft-trigger=80',
  '--incremental-marking-hard-trigger=90',
  '--heap-growing-percent=50',
] as const;

export const SERVER_NODE_FLAGS = [
  '--max-old-space-size=128',
  '--max-semi-space-size=1',
  ...V8_SCHEDULE_FLAGS,
] as const;

const isV8Internal = (flag: string) => (V8_SCHEDULE_FLAGS as readonly string[]).includes(flag);

/**
 * The libuv thread pool runs every file write, `fdatasync` and directory sync. With its default of 4
 * threads, a few slow syncs held up every other upload's writes: 8 parallel 256 MiB pushes on disk ran at
 * a median 490 MB/s, with 64 threads at 575 (docs/performance.md). Idle threads cost ~0.4 MB of RSS in
 * all. libuv reads the size once, when the pool starts, hence the environment and not code.
 *
 * glibc's malloc gives each thread that meets a busy lock an arena of its own, up to 8 per core, and an
 * arena keeps the memory freed into it. With 64 pool threads and the ingest worker the server held
 * 3-9 MB more at every workload's peak than with two arenas, at the same throughput (three `--full`
 * runs each, docs/performance.md). glibc reads it at start-up; other C libraries ignore it.
 */
export const SERVER_ENV = { UV_THREADPOOL_SIZE: '64', MALLOC_ARENA_MAX: '2' } as const;

/** Set in the environment of the re-executed process, so a failure to apply the settings cannot loop. */
const REEXEC_MARK = 'TETHER_SERVER_RUNTIME_APPLIED';

const flagName = (arg: string) => (arg.split('=')[0] ?? arg).replaceAll('_', '-');

export interface MissingSettings {
  flags: string[];
  env: Record<string, string>;
}

/**
 * The server flags that neither the node command line nor NODE_OPTIONS sets, and the server environment
 * variables that are not set: what the operator chose always wins over ours.
 */
export function missingServerSettings(
  execArgv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): MissingSettings {
  const given = new Set(
    [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)].filter(Boolean).map(flagName),
  );
  return {
    flags: SERVER_NODE_FLAGS.filter((flag) => !given.has(flagName(flag))),
    env: Object.fromEntries(Object.entries(SERVER_ENV).filter(([name]) => env[name] === undefined)),
  };
}

/**
 * Replaces this process by the same command with the missing settings (execve: same pid, stdio and
 * signals, no second process), before the server loads. Does nothing where execve is not available
 * (Windows), when nothing is missing, or after one re-execution.
 */
export function ensureServerRuntime(): void {
  if (process.env[REEXEC_MARK] || process.platform === 'win32' || typeof process.execve !== 'function')
    return;
  const missing = missingServerSettings(process.execArgv, process.env);
  const internal = missing.flags.filter(isV8Internal);
  if (internal.length > 0 && !nodeAccepts(internal))
    missing.flags = missing.flags.filter((flag) => !isV8Internal(flag));
  if (missing.flags.length === 0 && Object.keys(missing.env).length === 0) return;
  process.execve(
    process.execPath,
    [process.execPath, ...missing.flags, ...process.execArgv, ...process.argv.slice(1)],
    { ...process.env, ...missing.env, [REEXEC_MARK]: '1' },
  );
}

/** Whether this node starts with `flags` (about 40 ms, once, before the server loads). */
export function nodeAccepts(flags: readonly string[]): boolean {
  return spawnSync(process.execPath, [...flags, '-e', ''], { stdio: 'ignore', timeout: 10_000 }).status === 0;
}
