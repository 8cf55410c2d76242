/** The workloads by the names the command-line tools take (bench/load.ts, bench/ab.ts). */
import * as suite from './suite.ts';
import { MB, type Result } from './workloads.ts';

export interface RunnerOptions extends suite.WorkloadOptions {
  /** referrers: referrers of the subject listed, and manifests in the repository. */
  hot: number;
  total: number;
  filter: boolean;
  /** tags, catalog: tags or repositories listed. */
  count: number;
}

const runners: Record<string, (base: string, label: string, o: RunnerOptions) => Promise<Result>> = {
  push: (b, l, o) => suite.imagePush(b, l, o),
  pull: (b, l, o) => suite.imagePull(b, l, o),
  'blob-push': (b, l, o) => suite.blobPush(b, l, o),
  'blob-pull': (b, l, o) => suite.blobPull(b, l, o),
  'manifest-put': (b, l, o) => suite.manifestPut(b, l, o),
  'manifest-get': (b, l, o) => suite.manifestGet(b, l, o),
  referrers: (b, l, o) => suite.referrers(b, l, o),
  tags: (b, l, o) => suite.tagsList(b, l, o),
  catalog: (b, l, o) => suite.catalog(b, l, o),
};

export const workloadNames = Object.keys(runners);

/** The runner of a workload name; undefined for an unknown one. */
export function runner(
  name: string,
): ((base: string, label: string, o: RunnerOptions) => Promise<Result>) | undefined {
  return Object.hasOwn(runners, name) ? runners[name] : undefined;
}

/** The command-line options that choose a workload and its sizes, for `parseArgs` (sizes in MB, meaning MiB). */
export function workloadArgs(defaults: { workload: string; n: string }) {
  return {
    workload: { type: 'string', default: defaults.workload },
    size: { type: 'string', default: '1' },
    c: { type: 'string', default: '8' },
    n: { type: 'string', default: defaults.n },
    chunked: { type: 'boolean', default: false },
    hot: { type: 'string', default: '10000' },
    total: { type: 'string', default: '100000' },
    count: { type: 'string', default: '10000' },
    filter: { type: 'boolean', default: false },
  } as const;
}

/** The RunnerOptions those command-line options give. */
export function runnerOptions(values: {
  size: string;
  c: string;
  n: string;
  chunked: boolean;
  hot: string;
  total: string;
  count: string;
  filter: boolean;
}): RunnerOptions {
  return {
    c: Number(values.c),
    n: Number(values.n),
    size: Number(values.size) * MB,
    chunked: values.chunked,
    hot: Number(values.hot),
    total: Number(values.total),
    filter: values.filter,
    count: Number(values.count),
  };
}
