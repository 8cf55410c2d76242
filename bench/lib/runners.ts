/** The workloads by the names the command-line tools take (bench/load.ts, bench/ab.ts). */
import * as suite from './suite.ts';
import type { Result } from './workloads.ts';

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
