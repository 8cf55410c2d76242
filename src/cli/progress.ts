import type { WriteStream } from 'node:tty';
import type { ProgressListener, TransferOutcome } from '../client/progress.ts';
import type { Descriptor } from '../oci/manifest.ts';

interface Row {
  descriptor: Descriptor;
  moved: number;
  outcome?: TransferOutcome;
}

const BAR = 24;
const SHOWN = 8;

/**
 * Progress bars on a terminal: one line per transfer in flight (bytes, share, rate) and a total line,
 * redrawn at most ten times a second on stderr so stdout stays clean for digests and JSON. Finished
 * transfers scroll up as one line each. Off the terminal it draws nothing.
 */
export class ProgressBars implements ProgressListener {
  readonly #out: WriteStream;
  readonly #rows = new Map<string, Row>();
  readonly #started = Date.now();
  #drawn = 0;
  #timer: NodeJS.Timeout | undefined;
  #total = 0;
  #moved = 0;

  constructor(out: WriteStream) {
    this.#out = out;
  }

  /** Bars for a TTY stderr unless quiet or machine output was asked for. */
  static forTerminal(options: { quiet?: boolean; format?: string }): ProgressBars | undefined {
    const err = process.stderr as WriteStream;
    if (options.quiet || options.format === 'json' || !err.isTTY) return undefined;
    return new ProgressBars(err);
  }

  start(descriptor: Descriptor): void {
    if (this.#rows.has(descriptor.digest)) return;
    this.#rows.set(descriptor.digest, { descriptor, moved: 0 });
    this.#total += descriptor.size;
    this.#schedule();
  }

  bytes(descriptor: Descriptor, n: number): void {
    const row = this.#rows.get(descriptor.digest);
    if (!row) return;
    row.moved += n;
    this.#moved += n;
    this.#schedule();
  }

  done(descriptor: Descriptor, outcome: TransferOutcome): void {
    const row = this.#rows.get(descriptor.digest);
    if (!row || row.outcome) return;
    row.outcome = outcome;
    // Skipped or mounted blobs count as done for the total without their bytes moving.
    if (row.moved < descriptor.size) this.#moved += descriptor.size - row.moved;
    row.moved = Math.max(row.moved, descriptor.size);
    this.#clear();
    const label = outcome === 'transferred' ? 'done   ' : outcome === 'exists' ? 'exists ' : 'mounted';
    this.#out.write(
      `✓ ${label} ${short(descriptor.digest)} ${size(descriptor.size).padStart(10)}  ${descriptor.mediaType}\n`,
    );
    this.#schedule();
  }

  /** Removes the live lines; call before printing the command's result. */
  finish(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#clear();
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#draw();
    }, 100);
    this.#timer.unref();
  }

  #clear(): void {
    if (this.#drawn === 0) return;
    this.#out.write(`\x1b[${this.#drawn}A\x1b[J`);
    this.#drawn = 0;
  }

  #draw(): void {
    this.#clear();
    const active = [...this.#rows.values()].filter((r) => !r.outcome);
    const seconds = Math.max((Date.now() - this.#started) / 1000, 0.001);
    const lines = active
      .slice(0, SHOWN)
      .map(
        (r) =>
          `  ${bar(r.moved, r.descriptor.size)} ${short(r.descriptor.digest)} ${size(r.moved)}/${size(r.descriptor.size)}`,
      );
    if (active.length > SHOWN) lines.push(`  … and ${active.length - SHOWN} more`);
    lines.push(
      `  ${bar(this.#moved, this.#total)} total ${size(this.#moved)}/${size(this.#total)} ${size(this.#moved / seconds)}/s`,
    );
    const width = this.#out.columns || 100;
    this.#out.write(`${lines.map((l) => l.slice(0, width - 1)).join('\n')}\n`);
    this.#drawn = lines.length;
  }
}

function bar(done: number, total: number): string {
  const share = total > 0 ? Math.min(done / total, 1) : 1;
  const filled = Math.round(share * BAR);
  return `[${'='.repeat(filled)}${' '.repeat(BAR - filled)}] ${String(Math.floor(share * 100)).padStart(3)}%`;
}

function short(digest: string): string {
  return digest.slice(0, digest.indexOf(':') + 13);
}

export function size(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}
