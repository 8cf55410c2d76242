/**
 * Load generator: one workload against one registry, JSON out.
 *   node bench/load.ts --target http://127.0.0.1:5000 --workload push --size 10 --c 8 --n 50 [--chunked]
 * Workloads: push, pull, blob-push, blob-pull, manifest-put, manifest-get, referrers, tags, catalog.
 * Sizes are in MB, which in this harness means MiB (2^20 bytes), and MB/s means MiB/s.
 * See bench/peers.ts for the side-by-side run against Distribution (and zot).
 */
import { parseArgs } from 'node:util';
import { runner, runnerOptions, workloadArgs, workloadNames } from './lib/runners.ts';

const { values } = parseArgs({
  options: {
    target: { type: 'string', default: 'http://127.0.0.1:5000' },
    label: { type: 'string', default: 'registry' },
    ...workloadArgs({ workload: 'manifest-get', n: '100' }),
  },
});
const o = runnerOptions(values);
const run = runner(values.workload);
if (!run) {
  console.error(`unknown workload ${values.workload}; one of ${workloadNames.join(', ')}`);
  process.exit(2);
}
console.log(JSON.stringify(await run(values.target, values.label, o), null, 2));
