/**
 * Load generator: one workload against one registry, JSON out.
 *   node bench/load.ts --target http://127.0.0.1:5000 --workload push --size 10 --c 8 --n 50 [--chunked]
 * Workloads: push, pull, blob-push, blob-pull, manifest-put, manifest-get, referrers, tags, catalog.
 * Sizes are in MB. See bench/peers.ts for the side-by-side run against Distribution (and zot).
 */
import { parseArgs } from 'node:util';
import { runner, workloadNames } from './lib/runners.ts';
import { MB } from './lib/workloads.ts';

const { values } = parseArgs({
  options: {
    target: { type: 'string', default: 'http://127.0.0.1:5000' },
    workload: { type: 'string', default: 'manifest-get' },
    label: { type: 'string', default: 'registry' },
    size: { type: 'string', default: '1' },
    c: { type: 'string', default: '8' },
    n: { type: 'string', default: '100' },
    chunked: { type: 'boolean', default: false },
    hot: { type: 'string', default: '10000' },
    total: { type: 'string', default: '100000' },
    count: { type: 'string', default: '10000' },
    filter: { type: 'boolean', default: false },
  },
});
const o = {
  c: Number(values.c),
  n: Number(values.n),
  size: Number(values.size) * MB,
  chunked: values.chunked,
  hot: Number(values.hot),
  total: Number(values.total),
  filter: values.filter,
  count: Number(values.count),
};
const run = runner(values.workload);
if (!run) {
  console.error(`unknown workload ${values.workload}; one of ${workloadNames.join(', ')}`);
  process.exit(2);
}
console.log(JSON.stringify(await run(values.target, values.label, o), null, 2));
