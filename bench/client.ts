/**
 * Client transfer benchmark: the `tether` CLI pushing and pulling one large blob against a Tether server
 * (or any registry with --target), each run in its own process so its peak RSS is the client's alone.
 *   node bench/client.ts [--size-mb 1024] [--runs 3] [--target HOST:PORT]
 * Reports wall time, MB/s and the client's max RSS for: monolithic push, chunked push, pull to a file.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawnTether } from '../test/helpers/tether-process.ts';

const { values } = parseArgs({
  options: {
    'size-mb': { type: 'string', default: '1024' },
    runs: { type: 'string', default: '3' },
    target: { type: 'string' },
  },
});
const MB = 1024 * 1024;
const size = Number(values['size-mb']) * MB;
const runs = Number(values.runs);
const CLI = new URL('../src/cli/main.ts', import.meta.url).pathname;

const dir = await mkdtemp(join(tmpdir(), 'tether-bench-client-'));
const server = values.target ? undefined : await spawnTether(join(dir, 'data'));
const host = values.target ?? server!.host;
try {
  const file = join(dir, 'blob.bin');
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  for (let written = 0; written < size; written += MB) {
    const chunk = randomBytes(Math.min(MB, size - written));
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
  const digest = `sha256:${hash.digest('hex')}`;

  /** Runs the CLI under `/usr/bin/time` semantics: wall time here, max RSS from the child's rusage. */
  const timed = (args: string[]) =>
    new Promise<{ ms: number; rssMB: number }>((resolve, reject) => {
      const started = performance.now();
      const child = execFile(
        process.execPath,
        [
          '--import',
          'data:text/javascript,process.on("exit",()=>process.stderr.write("\\nRSS="+process.resourceUsage().maxRSS+"\\n"))',
          CLI,
          ...args,
        ],
        { env: { ...process.env, HOME: dir, DOCKER_CONFIG: join(dir, 'docker') }, maxBuffer: 1 << 20 },
        (err, _stdout, stderr) => {
          if (err) return reject(new Error(`${args.join(' ')}: ${stderr}`));
          const rss = Number(/RSS=(\d+)/.exec(stderr)?.[1] ?? 0) / 1024;
          resolve({ ms: performance.now() - started, rssMB: Math.round(rss) });
        },
      );
      child.stdin?.end();
    });

  const rows: { op: string; ms: number; mbps: number; rssMB: number }[] = [];
  for (let run = 0; run < runs; run++) {
    const ops: [string, string[]][] = [
      ['push (monolithic)', ['blob', 'put', `${host}/bench/mono-${run}`, file, '--monolithic']],
      ['push (chunked 32 MiB)', ['blob', 'put', `${host}/bench/chunked-${run}`, file, '--chunked']],
      ['pull to file', ['blob', 'get', `${host}/bench/mono-${run}@${digest}`, '-o', join(dir, `out-${run}`)]],
    ];
    for (const [op, args] of ops) {
      const r = await timed(args);
      rows.push({ op, ms: Math.round(r.ms), mbps: Math.round(size / MB / (r.ms / 1000)), rssMB: r.rssMB });
    }
  }
  const summary = new Map<string, typeof rows>();
  for (const r of rows) summary.set(r.op, [...(summary.get(r.op) ?? []), r]);
  console.log(`client transfers of ${size / MB} MiB against ${host} (${runs} runs; median)`);
  for (const [op, list] of summary) {
    const median = list.sort((a, b) => a.ms - b.ms)[Math.floor(list.length / 2)]!;
    console.log(
      `${op.padEnd(24)} ${String(median.ms).padStart(7)} ms ${String(median.mbps).padStart(6)} MB/s  max RSS ${median.rssMB} MB`,
    );
  }
} finally {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
}
