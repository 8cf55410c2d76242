import type { Descriptor } from '../oci/manifest.ts';

/**
 * What a transfer reports as it goes. The library stays silent by default; the CLI draws bars from
 * these events on a TTY and prints a JSON summary with `--format json`.
 */
export type TransferOutcome = 'transferred' | 'exists' | 'mounted';

export interface ProgressListener {
  /** A blob or manifest starts moving (or is found to be there already). */
  start?(descriptor: Descriptor): void;
  /** `n` more bytes of `descriptor` moved. */
  bytes?(descriptor: Descriptor, n: number): void;
  /** It is at the destination. */
  done?(descriptor: Descriptor, outcome: TransferOutcome): void;
}
