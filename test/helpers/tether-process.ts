import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSignedCert } from './certs.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
/** How long stop() waits after SIGTERM before it kills the server and fails. */
const STOP_GRACE_MS = 10_000;

export interface TetherProcess {
  url: string;
  host: string;
  data: string;
  proc: ChildProcess;
  /** Output collected so far (stdout + stderr). */
  output(): string;
  /**
   * SIGTERM and wait for exit, at most `graceMs` (10 s): a server still running then is killed with
   * SIGKILL and the returned promise rejects, so a shutdown held by a connection fails its test
   * instead of hanging the run.
   */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL and wait for exit (crash simulation). */
  kill9(): Promise<void>;
}

/** Files under `under` that process `pid` ('self': this one) has open (Linux: its /proc entry). */
export function openFilesUnder(pid: number | 'self', under: string): number {
  const dir = `/proc/${pid}/fd`;
  let count = 0;
  for (const fd of readdirSync(dir)) {
    try {
      if (readlinkSync(join(dir, fd)).startsWith(under)) count++;
    } catch {
      // Closed while listed.
    }
  }
  return count;
}

/** Blob files the server process has open. */
export function openBlobFiles(registry: TetherProcess): number {
  return openFilesUnder(registry.proc.pid!, join(registry.data, 'blobs'));
}

/** A fresh temporary data directory, removed by the returned cleanup function. */
export async function tempDataDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tether-test-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Starts `tether serve` as a real child process on a free loopback port (port 0) and waits for its
 * "listening" log line. Use for crash, restart and signal tests; use startRegistry() for the rest.
 */
export async function spawnTether(
  data: string,
  extraArgs: string[] = [],
  env: NodeJS.ProcessEnv = {},
  options: {
    /** `dist/cli/main.js` runs the compiled build (what `npm start` runs; benchmarks use it). */
    entry?: string;
    /** The checkout `entry` is in and the server runs in (bench/ab.ts runs another commit's build). */
    root?: string;
    nodeFlags?: string[];
    /** A command that runs node, such as strace with its arguments; `proc` is then that command. */
    wrapper?: string[];
  } = {},
): Promise<TetherProcess> {
  const { entry = 'src/cli/main.ts', root = ROOT, nodeFlags = [], wrapper = [] } = options;
  const command = [
    ...wrapper,
    process.execPath,
    ...nodeFlags,
    join(root, entry),
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--data',
    data,
    ...extraArgs,
  ];
  const proc = spawn(command[0]!, command.slice(1), {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => {
    out += d;
  });
  proc.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`tether did not start:\n${out}`));
    }, 15_000);
    const onData = () => {
      const m = /tether listening on (https?:\/\/[^"\s]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.stdout!.off('data', onData);
        resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`tether exited with ${code} before listening:\n${out}`));
    });
  });
  return {
    url,
    host: url.replace(/^https?:\/\//, ''),
    data,
    proc,
    output: () => out,
    stop: async (graceMs = STOP_GRACE_MS) => {
      proc.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), graceMs);
      });
      const code = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (code !== 'late') return code;
      proc.kill('SIGKILL');
      await exited;
      throw new Error(
        `tether (pid ${proc.pid}) had not exited ${graceMs} ms after SIGTERM; killed with SIGKILL. Its output:\n${out.slice(-4000)}`,
      );
    },
    kill9: async () => {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

export interface TlsTether {
  registry: TetherProcess;
  /** The server's self-signed certificate (PEM), the CA a client trusts. */
  ca: Buffer;
  /** Removes the temporary directory (data, certificate and key); stop the server first. */
  cleanup: () => Promise<void>;
}

/**
 * spawnTether over TLS: a temporary directory holding a fresh self-signed certificate for 127.0.0.1
 * (common name `name`), its key, and the data directory; `env` is added to the TLS settings.
 */
export async function spawnTlsTether(
  name: string,
  extraArgs: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<TlsTether> {
  const { dir, cleanup } = await tempDataDir();
  try {
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    selfSignedCert({ cert, key }, name, 'IP:127.0.0.1');
    const ca = readFileSync(cert);
    const registry = await spawnTether(join(dir, 'data'), extraArgs, {
      TETHER_TLS_CERT: cert,
      TETHER_TLS_KEY: key,
      ...env,
    });
    return { registry, ca, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
