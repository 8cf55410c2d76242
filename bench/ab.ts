/**
 * Before and after: one workload against two builds of Tether, in interleaved pairs of fresh servers.
 *   node bench/ab.ts --base <git rev> [--head <git rev>] [--workload push] [--size 1] [--c 8] [--n 300]
 *                    [--chunked] [--pairs 6] [--fsync-off]
 * Without --head, the "after" side is this checkout as it is (uncommitted changes included). Each side is
 * compiled (`tsc -p tsconfig.build.json`, the build `npm start` runs); a revision is checked out into a
 * temporary git worktree under .tools/ first, and removed at the end.
 *
 * Why pairs: this machine's throughput drifts by tens of percent within minutes (its virtual disk and the
 * state of its memory, docs/performance.md), so all of one build's runs and then all of the other's
 * compare two moments more than two builds. Each pair runs both builds back to back, in alternating order,
 * and the summary gives each pair's ratio and their median, beside the server CPU each operation cost
 * (user and system, from the first measured operation to the last; setup excluded), which drifts less
 * than throughput does. "MB" is MiB (2^20 bytes), as everywhere in bench/.
 *
 * Every run gets a new data directory, kept until the end: ext4 without a journal (this machine's) skips
 * inodes deleted in the last ~35 s when it creates a file, scanning past each, so deleting a run's files
 * right before the next run made that run's creates several times as costly.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, statfs, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawnTether } from '../test/helpers/tether-process.ts';
import { cpuSeconds, withPeakRss } from './lib/process-stats.ts';
import { runner, runnerOptions, workloadArgs, workloadNames } from './lib/runners.ts';
import { MB, type Result } from './lib/workloads.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    base: { type: 'string' },
    head: { type: 'string' },
    ...workloadArgs({ workload: 'push', n: '300' }),
    pairs: { type: 'string', default: '6' },
    'fsync-off': { type: 'boolean', default: false },
  },
});
const run = runner(values.workload);
const pulls = values.workload === 'pull' || values.workload === 'blob-pull';
if (!values.base || !run) {
  console.error(
    `usage: node bench/ab.ts --base <git rev> [--head <git rev>] [--workload ${workloadNames.join('|')}] [--size MB] [--c N] [--n N] [--chunked] [--hot N --total N --filter | --count N] [--pairs N] [--fsync-off]`,
  );
  process.exit(2);
}
const options = runnerOptions(values);
const pairs = Math.max(1, Number(values.pairs) || 1);
/**
 * The unmeasured warm-up before each run, for Node's JIT: a tenth of the operations (at least one per
 * client), of at most 64 MB each, since compiling the hot paths does not need gigabytes.
 */
const warmUp = {
  ...options,
  n: Math.max(options.c, Math.ceil(options.n / 10)),
  ...(options.size === undefined ? {} : { size: Math.min(options.size, 64 * MB) }),
};

const env = values['fsync-off'] ? { TETHER_STORAGE_FSYNC: 'false', TETHER_SQLITE_SYNCHRONOUS: 'NORMAL' } : {};

interface Side {
  label: string;
  root: string;
}
interface Run extends Result {
  side: string;
  pair: number;
  peakRssMB: number;
  userMsPerOp: number;
  systemMsPerOp: number;
}

const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
const build = (root: string) =>
  execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: 'inherit',
  });

const dir = await mkdtemp(join(ROOT, '.tools', 'ab-'));
const worktrees: string[] = [];
const runs: Run[] = [];
try {
  await checkFreeSpace();
  const base = await checkout(values.base, 'base');
  const head = values.head ? await checkout(values.head, 'head') : await thisCheckout();
  for (let pair = 0; pair < pairs; pair++) {
    for (const side of pair % 2 === 0 ? [base, head] : [head, base]) runs.push(await measure(side, pair));
  }
  console.log(summary(base, head));
} finally {
  for (const worktree of worktrees) git('worktree', 'remove', '--force', worktree);
  await rm(dir, { recursive: true, force: true });
}

/** A revision checked out and built in a worktree of its own. */
async function checkout(rev: string, name: string): Promise<Side> {
  const sha = git('rev-parse', '--verify', `${rev}^{commit}`);
  const root = join(dir, name);
  git('worktree', 'add', '--detach', root, sha);
  worktrees.push(root);
  await symlink(join(ROOT, 'node_modules'), join(root, 'node_modules'));
  build(root);
  return { label: `${rev} (${sha.slice(0, 7)})`, root };
}

async function thisCheckout(): Promise<Side> {
  build(ROOT);
  const changed = git('status', '--porcelain', '--untracked-files=no') !== '';
  return {
    label: `this checkout (${git('rev-parse', '--short', 'HEAD')}${changed ? ' + changes' : ''})`,
    root: ROOT,
  };
}

/** One run on a fresh server: an unmeasured warm-up, then the workload. */
async function measure(side: Side, pair: number): Promise<Run> {
  const data = join(dir, `data-${runs.length}`);
  await mkdir(data);
  const server = await spawnTether(data, ['--log-level', 'warn'], env, {
    entry: 'dist/cli/main.js',
    root: side.root,
  });
  try {
    const pid = server.proc.pid!;
    await run!(server.url, 'warm-up', warmUp);
    // CPU is counted from the first measured operation on: a workload's setup (the push a pull reads,
    // the 10 k tags a listing lists) is not its operations' cost. Peak RSS covers the setup too.
    let before: { user: number; system: number } | undefined;
    const result = await withPeakRss(pid, () =>
      run!(server.url, side.label, {
        ...options,
        onMeasureStart: () => {
          before = cpuSeconds(pid);
        },
      }),
    );
    const after = cpuSeconds(pid);
    if (!before) throw new Error(`ab: the ${values.workload} workload never started measuring`);
    const ops = Math.max(1, result.operations);
    const measured: Run = {
      ...result,
      side: side.label,
      pair,
      userMsPerOp: ((after.user - before.user) * 1000) / ops,
      systemMsPerOp: ((after.system - before.system) * 1000) / ops,
    };
    console.error(
      `pair ${pair + 1}: ${side.label}: ${result.opsPerSec} ops/s, ${result.mbPerSec} MiB/s, p50 ${result.p50ms} ms, ` +
        `cpu ${measured.userMsPerOp.toFixed(2)} + ${measured.systemMsPerOp.toFixed(2)} ms/op, rss ${result.peakRssMB} MB, errors ${result.errors}`,
    );
    return measured;
  } finally {
    await server.stop();
  }
}

/** Refuses to start when the runs' data (kept until the end) would not fit. */
async function checkFreeSpace(): Promise<void> {
  const { bavail, bsize } = await statfs(dir);
  // A pull workload pushes what it pulls once; the others store each operation's bytes.
  const stored = (o: { size?: number; n: number }) => (o.size ?? MB) * (pulls ? 1 : o.n);
  const perRun = (stored(options) + stored(warmUp)) * 1.1 + 64 * MB;
  const need = perRun * pairs * 2;
  if (bavail * bsize < need) {
    throw new Error(`ab: needs about ${Math.ceil(need / (1024 * MB))} GiB free under .tools/`);
  }
}

function median(list: number[]): number {
  const sorted = [...list].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  return sorted.length % 2 ? sorted[Math.floor(middle)]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function summary(base: Side, head: Side): string {
  const of = (side: Side) => runs.filter((r) => r.side === side.label);
  const fmt = (x: number, digits = 1) => x.toFixed(digits);
  const row = (side: Side) => {
    const list = of(side);
    const ops = list.map((r) => r.opsPerSec);
    return [
      side.label,
      `${fmt(median(ops))} (${fmt(Math.min(...ops))}–${fmt(Math.max(...ops))})`,
      fmt(median(list.map((r) => r.mbPerSec))),
      fmt(median(list.map((r) => r.p50ms))),
      `${fmt(median(list.map((r) => r.userMsPerOp)), 2)} + ${fmt(median(list.map((r) => r.systemMsPerOp)), 2)}`,
      String(Math.max(...list.map((r) => r.peakRssMB))),
      String(list.reduce((sum, r) => sum + r.errors, 0)),
    ];
  };
  const ratios = Array.from({ length: pairs }, (_, pair) => {
    const find = (side: Side) => runs.find((r) => r.pair === pair && r.side === side.label)!;
    return find(head).opsPerSec / find(base).opsPerSec;
  });
  const cpu = (side: Side) => median(of(side).map((r) => r.userMsPerOp + r.systemMsPerOp));
  const workload = `${values.workload}${values.chunked ? ' (chunked)' : ''}, size ${values.size} MiB, c=${options.c}, n=${options.n}${values['fsync-off'] ? ', fsync off' : ''}`;
  return [
    `${workload}: ${pairs} pairs, fresh server per run, order alternating`,
    '',
    '| build | ops/s median (min–max) | MiB/s median | p50 ms median | server CPU ms/op median (user + system) | peak RSS MB | errors |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...[base, head].map((side) => `| ${row(side).join(' | ')} |`),
    '',
    `after ÷ before, ops/s per pair: ${ratios.map((r) => fmt(r, 2)).join(' ')}; median ${fmt(median(ratios), 2)}`,
    `after ÷ before, server CPU per operation: ${fmt(cpu(head) / cpu(base), 2)}`,
  ].join('\n');
}
