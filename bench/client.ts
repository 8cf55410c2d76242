/**
 * Client transfer benchmark: the `tether` CLI pushing and pulling one large blob, and `oras` doing the
 * same against the same server when it is installed (`bash scripts/ensure-tools.sh oras`), each run in
 * its own process so its peak RSS is that client's alone. Both CLIs hash the file before a push.
 *   node bench/client.ts [--size-mb 1024] [--runs 3] [--target HOST:PORT] [--oras PATH]
 * Without --target it builds Tether (`tsc -p tsconfig.build.json`) and starts the compiled server,
 * as `npm start` runs it, on a fresh store; the CLI runs compiled too.
 * Reports wall time, MB/s and max RSS for: monolithic push, chunked push (Tether only), pushing a
 * one-file artifact, pull to a file, copying the artifact into an OCI image layout and, without
 * --target, copying it to a second server.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { spawnTether } from '../test/helpers/tether-process.ts';

const { values } = parseArgs({
  options: {
    'size-mb': { type: 'string', default: '1024' },
    runs: { type: 'string', default: '3' },
    target: { type: 'string' },
    oras: { type: 'string' },
  },
});
const MB = 1024 * 1024;
const SETTLE_MS = 5000;
const size = Number(values['size-mb']) * MB;
const runs = Number(values.runs);
const ROOT = new URL('..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist/cli/main.js');
const oras = values.oras ?? join(ROOT, '.tools/bin/oras');
const withOras = existsSync(oras);

if (!existsSync('/usr/bin/time')) {
  console.error('bench/client.ts measures peak RSS with /usr/bin/time: apt-get install time');
  process.exit(2);
}
execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(ROOT, 'tsconfig.build.json')], {
  stdio: 'inherit',
});
const dir = await mkdtemp(join(tmpdir(), 'tether-bench-client-'));
const server = values.target
  ? undefined
  : await spawnTether(join(dir, 'data'), ['--log-level', 'warn'], {}, { entry: 'dist/cli/main.js' });
const host = values.target ?? server!.host;
// A second registry to copy to; only when this run started its own.
const second = values.target
  ? undefined
  : await spawnTether(join(dir, 'data2'), ['--log-level', 'warn'], {}, { entry: 'dist/cli/main.js' });
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

  /** Runs a client to completion: wall time measured here, its max RSS from `/usr/bin/time`. */
  const run = (command: string, args: string[]) =>
    new Promise<{ ms: number; rssMB: number }>((resolve, reject) => {
      const started = performance.now();
      execFile(
        '/usr/bin/time',
        ['-f', 'MAXRSS=%M', command, ...args],
        // In `dir`, so files are named relatively (oras refuses absolute paths in artifacts).
        {
          cwd: dir,
          env: { ...process.env, HOME: dir, DOCKER_CONFIG: join(dir, 'docker') },
          maxBuffer: 1 << 22,
        },
        (err, _stdout, stderr) => {
          const ms = performance.now() - started;
          if (err) return reject(new Error(`${command} ${args.join(' ')}: ${stderr}`));
          const rss = Number(/MAXRSS=(\d+)/.exec(stderr)?.[1] ?? 0) / 1024;
          resolve({ ms, rssMB: Math.round(rss) });
        },
      );
    });
  const tether = (args: string[]) => run(process.execPath, [CLI, ...args]);
  const orasRun = (args: string[]) => run(oras, [...args, '--plain-http']);

  const rows: { op: string; client: string; ms: number; mbps: number; rssMB: number }[] = [];
  /**
   * Runs one measurement. Transfers that write a new 1 GiB file (a pull, a copy into a layout, and a
   * copy, whose file the second registry writes) first wait SETTLE_MS: this guest hands
   * freed memory back to its host about two seconds after it is freed, and filling the page cache from
   * memory that was just freed (the previous client's deleted output) is several times cheaper than
   * from memory handed back (docs/performance.md, "This machine's memory"). Without the pause the
   * second client of each pair pulled 0.5-1 s faster, whichever client it was.
   */
  const record = async (
    op: string,
    client: string,
    measure: () => Promise<{ ms: number; rssMB: number }>,
    writesFile = false,
  ) => {
    if (writesFile) await sleep(SETTLE_MS);
    const r = await measure();
    rows.push({
      op,
      client,
      ms: Math.round(r.ms),
      mbps: Math.round(size / MB / (r.ms / 1000)),
      rssMB: r.rssMB,
    });
  };
  /**
   * Each transfer runs once per client: Tether first in even runs, oras first in odd ones, so neither
   * always gets the state the other left behind (page cache, freed memory).
   */
  const inTurn = async (i: number, tetherStep: () => Promise<void>, orasStep: () => Promise<void>) => {
    const steps = withOras ? [tetherStep, orasStep] : [tetherStep];
    for (const step of i % 2 ? steps.reverse() : steps) await step();
  };
  for (let i = 0; i < runs; i++) {
    // Every push goes to a repository that has never seen the blob, so no client can skip the upload.
    await inTurn(
      i,
      () =>
        record('push (one PUT)', 'tether', () =>
          tether(['blob', 'put', `${host}/bench/t-${i}`, file, '--monolithic']),
        ),
      () => record('push (one PUT)', 'oras', () => orasRun(['blob', 'push', `${host}/bench/o-${i}`, file])),
    );
    await record('push (chunked 32 MiB)', 'tether', () =>
      tether(['blob', 'put', `${host}/bench/c-${i}`, file, '--chunked']),
    );
    // The everyday commands: an artifact of one file (Tether: 32 MiB chunks from 128 MiB by default).
    await inTurn(
      i,
      () =>
        record('push an artifact', 'tether', () =>
          tether([
            'push',
            `${host}/bench/a-t-${i}:v1`,
            'blob.bin',
            '--artifact-type',
            'application/x-bench',
            '-q',
          ]),
        ),
      () =>
        record('push an artifact', 'oras', () =>
          orasRun([
            'push',
            `${host}/bench/a-o-${i}:v1`,
            'blob.bin',
            '--artifact-type',
            'application/x-bench',
          ]),
        ),
    );
    // Read once first: a blob the server has just written with O_DIRECT is not in its page cache yet,
    // and the first reader pays that fill (docs/performance.md). Both clients then pull a warm blob.
    // (Both repositories hold the same blob, which the server stores once, so one read warms both.)
    const warm = await fetch(`http://${host}/v2/bench/t-${i}/blobs/${digest}`);
    for await (const _ of warm.body!);
    await inTurn(
      i,
      async () => {
        await record(
          'pull to a file',
          'tether',
          () => tether(['blob', 'get', `${host}/bench/t-${i}@${digest}`, '-o', join(dir, `t-${i}`)]),
          true,
        );
        await rm(join(dir, `t-${i}`));
      },
      async () => {
        await record(
          'pull to a file',
          'oras',
          () => orasRun(['blob', 'fetch', `${host}/bench/o-${i}@${digest}`, '--output', join(dir, `o-${i}`)]),
          true,
        );
        await rm(join(dir, `o-${i}`));
      },
    );
    await inTurn(
      i,
      async () => {
        await record(
          'copy into an OCI layout',
          'tether',
          () => tether(['cp', `${host}/bench/a-t-${i}:v1`, `oci:${join(dir, `layout-t-${i}`)}:v1`, '-q']),
          true,
        );
        await rm(join(dir, `layout-t-${i}`), { recursive: true });
      },
      async () => {
        await record(
          'copy into an OCI layout',
          'oras',
          () =>
            run(oras, [
              'cp',
              '--from-plain-http',
              '--to-oci-layout',
              `${host}/bench/a-o-${i}:v1`,
              `${join(dir, `layout-o-${i}`)}:v1`,
            ]),
          true,
        );
        await rm(join(dir, `layout-o-${i}`), { recursive: true });
      },
    );
    if (second) {
      await inTurn(
        i,
        () =>
          record(
            'copy to another registry',
            'tether',
            () => tether(['cp', `${host}/bench/a-t-${i}:v1`, `${second.host}/bench/a-t-${i}:v1`, '-q']),
            true,
          ),
        () =>
          record(
            'copy to another registry',
            'oras',
            () =>
              run(oras, [
                'cp',
                '--from-plain-http',
                '--to-plain-http',
                `${host}/bench/a-o-${i}:v1`,
                `${second.host}/bench/a-o-${i}:v1`,
              ]),
            true,
          ),
      );
    }
  }
  console.log(
    `client transfers of ${size / MB} MiB against ${host} (${runs} runs, the clients' order alternating by run; median; MB = MiB)`,
  );
  console.log('| transfer | client | median ms | MB/s | all runs, ms | max RSS MB |');
  console.log('|---|---|---:|---:|---|---:|');
  const groups = new Map<string, typeof rows>();
  for (const r of rows)
    groups.set(`${r.op}\0${r.client}`, [...(groups.get(`${r.op}\0${r.client}`) ?? []), r]);
  for (const list of groups.values()) {
    const sorted = [...list].sort((a, b) => a.ms - b.ms);
    const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
    console.log(
      `| ${median.op} | ${median.client} | ${median.ms} | ${median.mbps} | ${list.map((r) => r.ms).join(', ')} | ${Math.max(...list.map((r) => r.rssMB))} |`,
    );
  }
  if (!withOras) console.log(`oras not found at ${oras}: bash scripts/ensure-tools.sh oras`);
} finally {
  await server?.stop();
  await second?.stop();
  await rm(dir, { recursive: true, force: true });
}
