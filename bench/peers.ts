/**
 * Side-by-side benchmark: the same workloads against Tether, Distribution v3 and zot on this machine in
 * one run, one table. Each registry runs as its own process with a fresh filesystem store on a loopback
 * port; Tether's (and the peers') peak RSS is sampled from /proc during every workload.
 *   bash bench/peers.sh [--full] [--rounds N] [--only tether] [--workloads REGEX]
 * (installs the peers, then runs this file). --full uses the issue's sizes (8 x 1 GiB streams, 100 k-manifest
 * referrers repository, 4 GiB blob); --rounds N runs every workload N times per registry, interleaved, and
 * reports the median (this machine's disk and CPU vary by ±20-30 % between runs). The write workloads also
 * run against Tether with syncs off, the durability Distribution and zot give, as a separate column.
 * After each run of a blob row a registry starts again on an empty store (see FRESH_AFTER).
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../test/helpers/interop.ts';
import { spawnTether } from '../test/helpers/tether-process.ts';
import { withPeakRss } from './lib/process-stats.ts';
import * as suite from './lib/suite.ts';
import { MB, type Result } from './lib/workloads.ts';
import { type Limits, lowestLimit, measureLimits } from './limits.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const BIN = join(ROOT, '.tools/bin');
const { values } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    only: { type: 'string' },
    /** A regular expression over workload labels, e.g. "blob push" (for before/after runs). */
    workloads: { type: 'string' },
    /** Runs of each workload per registry, interleaved across registries; the median run is reported. */
    rounds: { type: 'string', default: '1' },
  },
});
const rounds = Math.max(1, Number(values.rounds) || 1);
const full = values.full;

interface Peer {
  name: string;
  url: string;
  pid: number;
  /** Stops the server and waits for it to exit. */
  stop(): Promise<void>;
  /** The store's folder. */
  store: string;
  /** What the server has logged (Tether, at warn level), shown when a run has errors. */
  output?: () => string;
}

async function waitFor(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/v2/`)).status < 500) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

async function startTether(dir: string, fsync = true): Promise<Peer> {
  // The compiled build, as `npm start` runs it (type stripping at run time costs ~30 MB of RSS).
  const name = fsync ? 'tether' : NO_FSYNC;
  const data = join(dir, name.replace(/\W+/g, '-'));
  await mkdir(data, { recursive: true });
  const t = await spawnTether(
    data,
    ['--log-level', 'warn'],
    fsync ? {} : { TETHER_STORAGE_FSYNC: 'false', TETHER_SQLITE_SYNCHRONOUS: 'NORMAL' },
    { entry: 'dist/cli/main.js' },
  );
  return {
    name,
    url: t.url,
    pid: t.proc.pid!,
    stop: async () => void (await t.stop()),
    store: data,
    output: () => t.output(),
  };
}

/**
 * Tether with blob and SQLite syncs off: the durability Distribution (always) and zot (by default) give.
 * It runs the write workloads only, to show how much of a gap is the price of syncing; it is never
 * counted as a peer.
 */
const NO_FSYNC = 'tether, fsync off';

/** How long a registry may take to exit after SIGTERM before the run kills it and goes on. */
const STOP_TIMEOUT_MS = 30_000;

/**
 * Stops a registry; one that has not exited STOP_TIMEOUT_MS after SIGTERM is killed, and the run says
 * so. Without it, a server that hung on its way out (as Tether once did, inside Node's own shutdown)
 * stalled the whole run.
 */
async function stopPeer(peer: Peer): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), STOP_TIMEOUT_MS);
  });
  const stopped = peer.stop();
  if ((await Promise.race([stopped, late])) === 'late') {
    console.error(
      `bench: ${peer.name} (pid ${peer.pid}) had not exited ${STOP_TIMEOUT_MS / 1000} s after SIGTERM; killed`,
    );
    process.kill(peer.pid, 'SIGKILL');
    await stopped;
  }
  clearTimeout(timer);
}

/** Starts a Go registry from .tools/bin with a config file written for it; undefined when not installed. */
async function startGoRegistry(
  name: string,
  binary: string,
  configFile: string,
  store: string,
  config: (port: number) => string,
  env: NodeJS.ProcessEnv = {},
): Promise<Peer | undefined> {
  const bin = join(BIN, binary);
  if (!existsSync(bin)) return undefined;
  const port = await freePort();
  await writeFile(configFile, config(port));
  const proc = spawn(bin, ['serve', configFile], { stdio: 'ignore', env: { ...process.env, ...env } });
  const exited = once(proc, 'exit');
  const url = `http://127.0.0.1:${port}`;
  await waitFor(url);
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  return { name, url, pid: proc.pid!, stop, store };
}

function startDistribution(dir: string) {
  const store = join(dir, 'distribution');
  return startGoRegistry(
    'distribution',
    'registry-v3',
    join(dir, 'distribution.yml'),
    store,
    (port) =>
      // Its storage settings as its own example configuration (and image) ship them: the in-memory
      // blob descriptor cache and the tag concurrency limit. Only logging is quieter.
      `version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: ${store}}\n  cache: {blobdescriptor: inmemory}\n  tag: {concurrencylimit: 8}\n  delete: {enabled: true}\nhttp: {addr: 127.0.0.1:${port}}\n`,
    { OTEL_TRACES_EXPORTER: 'none' },
  );
}

function startZot(dir: string) {
  const store = join(dir, 'zot');
  return startGoRegistry('zot', 'zot', join(dir, 'zot.json'), store, (port) =>
    JSON.stringify({
      distSpecVersion: '1.1.1',
      storage: { rootDirectory: store },
      http: { address: '127.0.0.1', port: String(port) },
      log: { level: 'error' },
    }),
  );
}

type Workload = {
  label: string;
  higherIsBetter: 'opsPerSec' | 'mbPerSec';
  referrersApi?: boolean;
  tetherOnly?: boolean;
  /** Bound by durable writes: also run against Tether with syncs off. */
  writes?: boolean;
  /**
   * Judged against the machine's limits (blob push: 80 % of the lowest; blob pull: 50 % of the
   * loopback copy). The durable write figure on this machine depends on the state of its free memory
   * (docs/performance.md, "This machine's memory"), so the limits are measured again right before each
   * run of the row. Every registry's run gets the same measurement first, since it frees a GiB of
   * page cache that the run after it may reuse.
   */
  limit?: 'push' | 'pull';
  /**
   * Bytes a run leaves in the registry's store. From FRESH_AFTER up, the registry is restarted on an
   * empty store after the run and the old store's large files are deleted, so rounds of the full sizes
   * fit on the disk (and the free-space check counts such a row once).
   */
  stores: number;
  run: (url: string, name: string) => Promise<Result>;
};

const gib = 1024 * MB;
/**
 * A registry gets a fresh store after a run that left this much in it. Without it, the --full set left
 * ~15 GiB per registry and round, so three rounds did not fit on a 76 GiB disk.
 */
const FRESH_AFTER = gib;
/**
 * Of a store left behind, only files this large are deleted during the run: a few inodes that free
 * nearly all of its bytes. Deleting the whole store would slow every file creation of the next ~35 s
 * (docs/performance-log.md, "Recently deleted inodes"), which the next registry's run would pay.
 */
const DELETE_FROM = 64 * MB;
/**
 * Memory a deletion frees stays cheap to fill for ~15 s, until this guest hands it back to its host
 * (docs/performance.md, "This machine's memory"), so whichever registry wrote through the page cache
 * next would get warm pages the others did not. Measured with 1 GiB written into the page cache after
 * 2 GiB were freed: 0.19 s after 0-3 s, 0.25-0.27 s after 6-12 s, 0.63-0.76 s after 15-30 s, 0.68 s
 * with nothing freed. A restart therefore ends no sooner than this long after its deletions.
 */
const SETTLE_MS = 20_000;
const workloads: Workload[] = [
  {
    label: 'push 1 MiB image',
    writes: true,
    higherIsBetter: 'opsPerSec',
    stores: 100 * MB,
    run: (u, n) => suite.imagePush(u, n, { c: 8, n: 100, size: MB }),
  },
  {
    label: 'push 10 MiB image',
    writes: true,
    higherIsBetter: 'opsPerSec',
    stores: 400 * MB,
    run: (u, n) => suite.imagePush(u, n, { c: 8, n: 40, size: 10 * MB }),
  },
  {
    label: 'push 100 MiB image',
    writes: true,
    higherIsBetter: 'opsPerSec',
    stores: 800 * MB,
    run: (u, n) => suite.imagePush(u, n, { c: 4, n: 8, size: 100 * MB }),
  },
  {
    label: 'push 1 MiB image, chunked',
    writes: true,
    higherIsBetter: 'opsPerSec',
    stores: 100 * MB,
    run: (u, n) => suite.imagePush(u, n, { c: 8, n: 100, size: MB, chunked: true }),
  },
  {
    label: 'push 10 MiB image, chunked',
    writes: true,
    higherIsBetter: 'opsPerSec',
    stores: 200 * MB,
    run: (u, n) => suite.imagePush(u, n, { c: 8, n: 20, size: 10 * MB, chunked: true }),
  },
  {
    label: 'push 100 MiB image, chunked',
    writes: true,
    higherIsBetter: 'opsPerSec',
    stores: 800 * MB,
    run: (u, n) => suite.imagePush(u, n, { c: 2, n: 8, size: 100 * MB, chunked: true }),
  },
  {
    label: 'pull 1 MiB image',
    higherIsBetter: 'opsPerSec',
    stores: MB,
    run: (u, n) => suite.imagePull(u, n, { c: 8, n: 300, size: MB }),
  },
  {
    label: 'pull 10 MiB image',
    higherIsBetter: 'opsPerSec',
    stores: 10 * MB,
    run: (u, n) => suite.imagePull(u, n, { c: 8, n: 80, size: 10 * MB }),
  },
  {
    label: 'pull 100 MiB image',
    higherIsBetter: 'opsPerSec',
    stores: 100 * MB,
    run: (u, n) => suite.imagePull(u, n, { c: 4, n: 12, size: 100 * MB }),
  },
  {
    label: 'blob push 1 GiB, 1 stream',
    writes: true,
    limit: 'push',
    higherIsBetter: 'mbPerSec',
    stores: 2 * gib,
    run: (u, n) => suite.blobPush(u, n, { c: 1, n: 2, size: gib }),
  },
  {
    label: `blob push 8 streams x ${full ? '1 GiB' : '256 MiB'}`,
    writes: true,
    limit: 'push',
    higherIsBetter: 'mbPerSec',
    stores: 8 * (full ? gib : 256 * MB),
    run: (u, n) => suite.blobPush(u, n, { c: 8, n: 8, size: full ? gib : 256 * MB }),
  },
  {
    label: 'blob pull 1 GiB, 1 stream',
    limit: 'pull',
    higherIsBetter: 'mbPerSec',
    stores: gib,
    run: (u, n) => suite.blobPull(u, n, { c: 1, n: 3, size: gib }),
  },
  {
    label: `blob pull 8 streams x ${full ? '1 GiB' : '256 MiB'}`,
    limit: 'pull',
    higherIsBetter: 'mbPerSec',
    stores: full ? gib : 256 * MB,
    run: (u, n) => suite.blobPull(u, n, { c: 8, n: 16, size: full ? gib : 256 * MB }),
  },
  {
    label: 'manifest PUT, c=32',
    writes: true,
    higherIsBetter: 'opsPerSec',
    stores: 0,
    run: (u, n) => suite.manifestPut(u, n, { c: 32, n: 3000 }),
  },
  {
    label: 'manifest GET, c=32',
    higherIsBetter: 'opsPerSec',
    stores: 0,
    run: (u, n) => suite.manifestGet(u, n, { c: 32, n: 10000 }),
  },
  {
    label: `referrers: 10 k on a subject, ${full ? '100 k' : '20 k'} in repo`,
    higherIsBetter: 'opsPerSec',
    referrersApi: true,
    stores: 0,
    run: (u, n) => suite.referrers(u, n, { c: 4, n: 40, hot: 10000, total: full ? 100000 : 20000 }),
  },
  {
    label: `referrers filtered (1 in 4), ${full ? '100 k' : '20 k'} in repo`,
    higherIsBetter: 'opsPerSec',
    referrersApi: true,
    stores: 0,
    run: (u, n) =>
      suite.referrers(u, n, { c: 4, n: 40, hot: 10000, total: full ? 100000 : 20000, filter: true }),
  },
  {
    label: 'tags list, 10 k tags',
    higherIsBetter: 'opsPerSec',
    stores: 0,
    run: (u, n) => suite.tagsList(u, n, { c: 8, n: 200, count: 10000 }),
  },
  {
    label: '_catalog, 10 k repositories',
    higherIsBetter: 'opsPerSec',
    stores: 0,
    run: (u, n) => suite.catalog(u, n, { c: 4, n: 40, count: 10000 }),
  },
  {
    label: `blob push ${full ? '4 GiB' : '2 GiB'} (memory check)`,
    higherIsBetter: 'mbPerSec',
    tetherOnly: true,
    stores: (full ? 4 : 2) * gib,
    run: (u, n) => suite.blobPush(u, n, { c: 1, n: 1, size: (full ? 4 : 2) * gib }),
  },
];

const pattern = values.workloads ? new RegExp(values.workloads) : undefined;
const selected = workloads.filter((w) => !pattern || pattern.test(w.label));
const dir = await mkdtemp(join(ROOT, '.tools', 'bench-'));
// Every round leaves its pushes in each registry's store (about 7 GiB per registry and round for the
// whole default set). Refuse to start rather than fill the disk halfway through.
{
  const { bavail, bsize } = await statfs(dir);
  // Tether, plus the peers whose binaries are installed, plus Tether with fsync off for write workloads.
  const registries = 1 + ['registry-v3', 'zot'].filter((b) => existsSync(join(BIN, b))).length;
  const stored = (w: Workload) => w.stores * (w.tetherOnly ? 1 : registries + (w.writes ? 1 : 0));
  // Light rows accumulate over every round; of the heavy ones, at most one run's worth is there at once.
  const light = selected.filter((w) => w.stores < FRESH_AFTER).reduce((sum, w) => sum + stored(w), 0);
  const heavy = Math.max(0, ...selected.filter((w) => w.stores >= FRESH_AFTER).map((w) => w.stores));
  const needGiB = Math.ceil((1.1 * (light * rounds + heavy)) / gib);
  const freeGiB = (bavail * bsize) / gib;
  if (freeGiB < needGiB) {
    await rm(dir, { recursive: true, force: true });
    console.error(`bench: needs about ${needGiB} GiB free under .tools/, has ${freeGiB.toFixed(0)} GiB`);
    process.exit(1);
  }
}
// Only the registries selected are started: one left running would keep this process alive.
const starters: [string, (base: string) => Promise<Peer | undefined>][] = [
  ['tether', (base) => startTether(base)],
  [NO_FSYNC, (base) => startTether(base, false)],
  ['distribution', startDistribution],
  ['zot', startZot],
];
const peers: Peer[] = [];
let restarts = 0;
/**
 * Replaces a registry by a new process on an empty store (in a folder of its own), warmed up like the
 * first; the old store's large files are deleted, its small ones stay until the end.
 */
async function restartFresh(peer: Peer): Promise<void> {
  const start = starters.find(([name]) => name === peer.name)?.[1];
  if (!start) throw new Error(`no starter for ${peer.name}`);
  await stopPeer(peer);
  for (const entry of await readdir(peer.store, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    if (entry.isFile() && (await stat(path)).size >= DELETE_FROM) await rm(path);
  }
  const deleted = performance.now();
  const base = join(dir, `fresh-${++restarts}`);
  await mkdir(base);
  const fresh = await start(base);
  if (!fresh) throw new Error(`${peer.name} did not start again`);
  await warmUp(fresh);
  await new Promise((r) => setTimeout(r, Math.max(0, SETTLE_MS - (performance.now() - deleted))));
  peers[peers.indexOf(peer)] = fresh;
}
for (const [name, start] of starters) {
  if (values.only && name !== values.only) continue;
  const peer = await start(dir);
  if (peer) peers.push(peer);
}
const missing = ['distribution', 'zot'].filter(
  (n) => (!values.only || values.only === n) && !peers.some((p) => p.name === n),
);
const rows: { workload: Workload; results: Map<string, Result & { peakRssMB: number }> }[] = [];
/** Tether's runs of the rows with a `limit` (rounds from 1), each with the limits measured just before it. */
const limitRuns: { workload: Workload; round: number; figure: number; limits: Limits }[] = [];
try {
  for (const peer of peers) await warmUp(peer);
  for (const workload of selected) {
    const runs = new Map<string, (Result & { peakRssMB: number })[]>();
    for (let round = 0; round < rounds; round++) {
      for (const peer of rotated(peers, selected.indexOf(workload) + round)) {
        if (workload.tetherOnly && peer.name !== 'tether') continue;
        if (peer.name === NO_FSYNC && !workload.writes) continue;
        if (workload.referrersApi && peer.name === 'distribution') continue; // no referrers API
        // Start from a clean page cache: a registry that does not sync leaves gigabytes dirty, and their
        // write-back would compete for the disk with the next registry's run and its syncs.
        execFileSync('sync');
        const limits = workload.limit ? await measureLimits(dir) : undefined;
        const result = await withPeakRss(peer.pid, () => workload.run(peer.url, peer.name));
        if (limits && peer.name === 'tether')
          limitRuns.push({ workload, round: round + 1, figure: result.mbPerSec, limits });
        runs.set(peer.name, [...(runs.get(peer.name) ?? []), result]);
        if (result.errors > 0 && peer.output)
          console.error(`${peer.name} logged (last 4000 characters):\n${peer.output().slice(-4000)}`);
        console.error(
          `${workload.label} | ${peer.name}: ${result[workload.higherIsBetter]} ${workload.higherIsBetter} p50 ${result.p50ms} ms, rss ${result.peakRssMB} MB, errors ${result.errors}`,
        );
        const last = workload === selected.at(-1) && round === rounds - 1;
        if (workload.stores >= FRESH_AFTER && !last) await restartFresh(peer);
      }
    }
    const results = new Map<string, Result & { peakRssMB: number }>();
    for (const [name, list] of runs) results.set(name, median(list, workload.higherIsBetter));
    rows.push({ workload, results });
  }
} catch (err) {
  // A failed run must not leave its stores (tens of GiB) behind.
  for (const peer of peers) await stopPeer(peer);
  await rm(dir, { recursive: true, force: true });
  throw err;
}
for (const peer of peers) await stopPeer(peer);
execFileSync('sync');
const limits = await measureLimits(dir);
await rm(dir, { recursive: true, force: true });

/**
 * The registries in turn, starting from a different one for each row and round: what one run leaves
 * behind (dirty pages, freed memory, recently deleted inodes; docs/performance.md) then falls on a
 * different registry each time, instead of always on the one after Tether.
 */
function rotated<T>(list: T[], by: number): T[] {
  const start = by % list.length;
  return [...list.slice(start), ...list.slice(0, start)];
}

/**
 * A short unmeasured pass of every request kind, the same for each registry, so the first measured run
 * does not include Node's JIT compiling the hot paths (Go binaries start compiled); a server in
 * production is warm.
 */
async function warmUp(peer: Peer): Promise<void> {
  const u = peer.url;
  const n = `${peer.name} warm-up`;
  const passes = [
    () => suite.imagePush(u, n, { c: 4, n: 40, size: MB }),
    () => suite.imagePush(u, n, { c: 2, n: 4, size: 10 * MB, chunked: true }),
    () => suite.imagePull(u, n, { c: 4, n: 100, size: MB }),
    () => suite.blobPush(u, n, { c: 1, n: 1, size: 64 * MB }),
    () => suite.blobPull(u, n, { c: 1, n: 2, size: 64 * MB }),
    () => suite.manifestPut(u, n, { c: 8, n: 500 }),
    () => suite.manifestGet(u, n, { c: 8, n: 2000 }),
    () => suite.tagsList(u, n, { c: 2, n: 20, count: 200 }),
    () => suite.catalog(u, n, { c: 2, n: 10, count: 200 }),
  ];
  let failed = 0;
  for (const pass of passes) if ((await pass()).errors > 0) failed++;
  console.error(`${n}: done${failed ? ` (${failed} of ${passes.length} passes had errors)` : ''}`);
}

/**
 * The median run by the workload's figure; with an even number of runs, the lower of the middle two
 * (a real run, never an average, and never flattering). Its peak RSS is the worst seen.
 */
function median<R extends Result & { peakRssMB: number }>(list: R[], key: Workload['higherIsBetter']): R {
  const figure = (r: R) => (r.errors ? 0 : r[key]);
  const sorted = [...list].sort((a, b) => figure(a) - figure(b));
  const middle = sorted[Math.floor((sorted.length - 1) / 2)]!;
  return { ...middle, peakRssMB: Math.max(...list.map((r) => r.peakRssMB)) };
}

const unit = (w: Workload) => (w.higherIsBetter === 'mbPerSec' ? 'MiB/s' : 'ops/s');
const cell = (r?: Result) => (r ? (r.errors ? `${r.opsPerSec === 0 ? 'failed' : 'errors'}` : '') : '–');
/**
 * Tether's figure over the best peer's. A run with errors has no figure: when Tether's had errors the
 * ratio says so, and a peer whose run had errors is named, since the ratio is then against the others.
 */
function ratio(workload: Workload, results: Map<string, Result>): string {
  const value = (r?: Result) => (r && !r.errors ? r[workload.higherIsBetter] : undefined);
  const peerResults = [...results].filter(([n]) => !n.startsWith('tether'));
  const failed = peerResults.filter(([, r]) => value(r) === undefined).map(([n]) => n);
  const best = Math.max(0, ...peerResults.map(([, r]) => value(r) ?? 0));
  const note = failed.length ? ` (${failed.join(', ')} had errors)` : '';
  const t = value(results.get('tether'));
  if (results.get('tether') && t === undefined) return `Tether had errors${note}`;
  if (t === undefined || best === 0) return `no peer${note}`;
  return `${(t / best).toFixed(2)}×${note}`;
}
const ms = (x?: number) => (x === undefined ? '' : String(Math.round(x * 10) / 10));
const lines = [
  `| workload | unit | ${peers.map((p) => p.name).join(' | ')} | Tether ÷ best peer | Tether p50 / p90 / p99 ms | Tether TTFB p50 ms | Tether peak RSS MB |`,
  `|---|---|${peers.map(() => '---:').join('|')}|---:|---:|---:|---:|`,
];
for (const { workload, results } of rows) {
  const t = results.get('tether');
  const value = (r?: Result) => (r && !r.errors ? r[workload.higherIsBetter] : undefined);
  lines.push(
    `| ${workload.label} | ${unit(workload)} | ${peers.map((p) => (results.get(p.name) ? `${value(results.get(p.name)) ?? cell(results.get(p.name))}` : '–')).join(' | ')} | ${ratio(workload, results)} | ${t ? `${ms(t.p50ms)} / ${ms(t.p90ms)} / ${ms(t.p99ms)}` : ''} | ${ms(t?.ttfbP50ms)} | ${t?.peakRssMB ?? ''} |`,
  );
}
// Every registry's latencies, as the issue asks of each workload: p50 / p90 / p99 of the whole
// operation, and the time to the first byte of the answer where a workload reads one (p50 / p90 / p99).
const latency = (r?: Result) =>
  !r
    ? '–'
    : `${ms(r.p50ms)} / ${ms(r.p90ms)} / ${ms(r.p99ms)}${r.ttfbP50ms === undefined ? '' : `; TTFB ${ms(r.ttfbP50ms)} / ${ms(r.ttfbP90ms)} / ${ms(r.ttfbP99ms)}`}`;
lines.push(
  '',
  `Latency in ms, p50 / p90 / p99 (and time to first byte, p50 / p90 / p99), of the runs above:`,
  '',
  `| workload | ${peers.map((p) => p.name).join(' | ')} |`,
  `|---|${peers.map(() => '---').join('|')}|`,
  ...rows.map(
    ({ workload, results }) =>
      `| ${workload.label} | ${peers.map((p) => latency(results.get(p.name))).join(' | ')} |`,
  ),
);
console.log(lines.join('\n'));
console.log(
  `\nPhysical limits (MiB/s): sha256 ${limits.sha256MBps} (one core), durable write ${limits.durableWriteMBps} (1 GiB into a new file + fdatasync), loopback copy ${limits.loopbackMBps} (1 GiB from another process); disk write ${limits.diskWriteMBps} (the same GiB rewritten in place + fdatasync), ingest ${limits.ingestMBps} (socket from another process → sha256 → file, no sync).`,
);
if (limitRuns.length) {
  // Blob push: 80 % of the lowest of the three limits; blob pull: 50 % of the loopback copy. Each of
  // Tether's runs is set against the limits measured just before it.
  const pct = (x: number) => `${Math.round(x * 100)} %`;
  console.log(
    "\nAgainst the limits measured right before each of Tether's runs (MiB/s; target: push ≥ 80 % of the lowest of sha256, durable write and loopback; pull ≥ 50 % of loopback):\n",
  );
  console.log(
    '| workload | round | tether | sha256 | durable write | loopback | disk write | ingest | Tether ÷ target limit | Tether ÷ ingest |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const { workload, round, figure, limits: l } of limitRuns) {
    const push = workload.limit === 'push';
    const target = push ? lowestLimit(l) : l.loopbackMBps;
    console.log(
      `| ${workload.label} | ${round} | ${figure} | ${l.sha256MBps} | ${l.durableWriteMBps} | ${l.loopbackMBps} | ${l.diskWriteMBps} | ${l.ingestMBps} | ${pct(figure / target)} | ${push ? pct(figure / l.ingestMBps) : ''} |`,
    );
  }
}
if (missing.length) console.log(`Not run: ${missing.join(', ')} (not installed; see bench/peers.sh).`);
// The JSON keeps every figure of every run; the folder is git-ignored, so it may not exist yet.
const report = join(ROOT, 'reports', 'bench-peers.json');
await mkdir(join(ROOT, 'reports'), { recursive: true });
await writeFile(
  report,
  JSON.stringify(
    {
      limits,
      limitRuns: limitRuns.map((r) => ({
        workload: r.workload.label,
        round: r.round,
        mbPerSec: r.figure,
        limits: r.limits,
      })),
      rows: rows.map((r) => ({ workload: r.workload.label, results: Object.fromEntries(r.results) })),
    },
    null,
    2,
  ),
).catch((err: Error) => console.error(`bench: could not write ${report}: ${err.message}`));
