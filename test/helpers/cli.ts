import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';

/** The CLI's entry point, run from source. */
export const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

/** What a `tether` run left: its exit status and everything it wrote. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd: string;
  /** Over the test's own environment. */
  env?: NodeJS.ProcessEnv;
  /** Standard input, all of it (none by default: `--password-stdin` then reads an empty line). */
  input?: string;
  /** Node's own flags, before the program (`--import` of a test hook). */
  nodeArgs?: string[];
}

/**
 * The arguments of `tether cert generate` for a signing test: a CA and a leaf (`leaf.key`, `chain.pem`)
 * in `out`, the CA trusted as the Notary Project trust store `ca:name`, in `store` or the default one.
 */
export function certGenerateArgs(
  out: string,
  name: string,
  options: { keyType?: string; store?: string } = {},
): string[] {
  const { keyType = 'ec-p256', store } = options;
  return [
    'cert',
    'generate',
    '--key-type',
    keyType,
    '-o',
    out,
    '--trust-store-name',
    name,
    ...(store === undefined ? [] : ['--trust-store', store]),
  ];
}

/** Runs the `tether` CLI from source in `cwd`, with `env` over the test's own environment. */
export function runCli(args: string[], options: CliOptions): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), CLI, ...args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    // A command that exits without reading its input is no failure of the test's.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs `tether` in `home`, which is also its HOME and holds its Docker config: a user of its own. */
export function runCliAt(home: string, args: string[]): Promise<CliRun> {
  return runCli(args, { cwd: home, env: { HOME: home, DOCKER_CONFIG: join(home, '.docker') } });
}

/** `runCliAt`, expecting success: answers stdout, or fails the test with what the command said. */
export async function cliOutput(home: string, args: string[]): Promise<string> {
  const run = await runCliAt(home, args);
  assert.equal(run.code, 0, `tether ${args.join(' ')}: ${run.stderr}`);
  return run.stdout;
}
