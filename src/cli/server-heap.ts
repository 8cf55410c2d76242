/**
 * V8 heap settings for `tether serve`, however it is started (`npm start`, `npx tether serve`, a global
 * install, a container). Measured in docs/performance.md: a 1 MiB semi-space collects request-body
 * chunks soon enough to keep peak RSS under 150 MB, at the same throughput; the old-space cap bounds
 * what promoted garbage may pile up before a full collection.
 */
export const SERVER_NODE_FLAGS = ['--max-old-space-size=128', '--max-semi-space-size=1'] as const;

/** Set in the environment of the re-executed process, so a failure to apply the flags cannot loop. */
const REEXEC_MARK = 'TETHER_SERVER_HEAP_APPLIED';

const flagName = (arg: string) => (arg.split('=')[0] ?? arg).replaceAll('_', '-');

/**
 * The server flags that neither the node command line nor NODE_OPTIONS sets: a heap size the operator
 * chose always wins over ours.
 */
export function missingServerFlags(execArgv: readonly string[], nodeOptions = ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].filter(Boolean).map(flagName));
  return SERVER_NODE_FLAGS.filter((flag) => !given.has(flagName(flag)));
}

/**
 * Replaces this process by the same command with the missing heap flags (execve: same pid, stdio,
 * environment and signals, no second process), before the server loads. Does nothing where execve is not
 * available (Windows), when nothing is missing, or after one re-execution.
 */
export function ensureServerHeap(): void {
  if (process.env[REEXEC_MARK] || process.platform === 'win32' || typeof process.execve !== 'function')
    return;
  const missing = missingServerFlags(process.execArgv, process.env.NODE_OPTIONS);
  if (missing.length === 0) return;
  process.execve(
    process.execPath,
    [process.execPath, ...missing, ...process.execArgv, ...process.argv.slice(1)],
    { ...process.env, [REEXEC_MARK]: '1' },
  );
}
