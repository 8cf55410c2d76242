/**
 * What a benchmark reads about a server process from /proc: resident memory (sampled while a workload
 * runs, for its peak) and CPU time (before and after, for the CPU each operation cost).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Resident memory of a process in MB (MiB); undefined when /proc has no such process. */
export function rssMB(pid: number): number | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Math.round(Number(m[1]) / 1024) : undefined;
}

let ticksPerSecond: number | undefined;

/** User and system CPU seconds the process has used so far (all its threads). */
export function cpuSeconds(pid: number): { user: number; system: number } {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  // The command name (field 2) may contain spaces: count fields after its closing parenthesis.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state (field 3).
  return { user: Number(fields[11]) / ticksPerSecond, system: Number(fields[12]) / ticksPerSecond };
}

/**
 * Runs `fn` with the process's RSS sampled every 50 ms; returns its result with the peak. A process
 * whose memory cannot be read at the start is an error (a wrong PID would otherwise report a peak of 0);
 * a sample missed later, while the process exits, is skipped.
 */
export async function withPeakRss<T>(pid: number, fn: () => Promise<T>): Promise<T & { peakRssMB: number }> {
  let peak = rssMB(pid);
  if (peak === undefined) throw new Error(`cannot read the memory of process ${pid} in /proc`);
  const sample = () => {
    peak = Math.max(peak!, rssMB(pid) ?? 0);
  };
  const timer = setInterval(sample, 50);
  try {
    const result = await fn();
    sample();
    return { ...result, peakRssMB: peak };
  } finally {
    clearInterval(timer);
  }
}
