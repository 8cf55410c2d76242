import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { RegistryClient } from '../../src/client/client.ts';
import { parseImageReference } from '../../src/client/reference.ts';
import { digestOf } from '../../src/oci/digest.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
/** Where scripts/ensure-tools.sh installs oras, regctl, crane, notation and the Go registries. */
export const TOOLS_BIN = join(ROOT, '.tools/bin');
const CLI = join(ROOT, 'src/cli/main.ts');

/** A free loopback port (for processes that must be told their port up front). */
export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Runs a tool with .tools/bin first on PATH (in `cwd`, when given); resolves with stdout, rejects with
 * the command and stderr.
 */
export function runTool(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  cwd?: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env: { ...process.env, PATH: `${TOOLS_BIN}:${process.env.PATH}`, ...env }, timeout: 120_000, cwd },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/**
 * Runs a tool as runTool does, but resolves however it exits: its exit status, stdout and stderr. For
 * tests that compare verdicts, failures included. Only an exit status is a verdict: when the tool could
 * not be run (ENOENT, EACCES), was killed (the timeout, a signal) or overflowed the output buffer, it
 * rejects with why, so "notation is missing" never reads as "notation refused".
 */
export function runToolStatus(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env: { ...process.env, PATH: `${TOOLS_BIN}:${process.env.PATH}`, ...env }, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const { code, signal, killed } = err as { code?: unknown; signal?: string | null; killed?: boolean };
        if (typeof code === 'number' && !killed && !signal) return resolve({ code, stdout, stderr });
        const why = typeof code === 'string' ? code : killed ? 'killed (timeout)' : `signal ${signal}`;
        reject(
          new Error(
            `${cmd} ${args.join(' ')} did not run to an exit status: ${why}: ${err.message}\n${stderr}`,
          ),
        );
      },
    );
  });
}

/** Runs the `tether` CLI from source, like runTool. */
export const runTether = (args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string) =>
  runTool(process.execPath, [CLI, ...args], env, cwd);

/**
 * Debian's Distribution 2.8 (`docker-registry`, no referrers API) with a fresh filesystem store under
 * `dir`, on a loopback port of its own choosing (port 0: no free port picked here that another process
 * could take before it binds it), over HTTPS with `tls` (PEM files); resolves once `/v2/` answers.
 */
export async function startDistribution2(
  dir: string,
  tls?: { cert: string; key: string },
): Promise<{ host: string; stop(): void }> {
  const config = join(dir, 'distribution.yml');
  const listen = tls
    ? `{addr: "127.0.0.1:0", tls: {certificate: ${tls.cert}, key: ${tls.key}}}`
    : `{addr: "127.0.0.1:0"}`;
  // At level info it logs the address it bound ("listening on 127.0.0.1:PORT").
  await writeFile(
    config,
    `version: 0.1\nlog: {level: info}\nstorage:\n  filesystem: {rootdirectory: ${join(dir, 'distribution')}}\n  delete: {enabled: true}\nhttp: ${listen}\n`,
  );
  const proc = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stop = () => void proc.kill();
  let log = '';
  const host = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`Distribution 2.8 did not say where it listens:\n${log}`));
    }, 10_000);
    let found = false;
    // Read to the end (a full pipe would stop the registry), kept only until the address is found.
    proc.stderr!.on('data', (d) => {
      if (found) return;
      log += d;
      const m = /msg="listening on (127\.0\.0\.1:\d+)/.exec(log);
      if (m) {
        found = true;
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Distribution 2.8 exited (${code}) before listening:\n${log}`));
    });
  });
  // Go's TLS server answers a plain-HTTP request with a 400 of its own: up, then, without a CA to trust.
  const up = tls ? 400 : 200;
  for (let i = 0; i < 100; i++) {
    if ((await fetch(`http://${host}/v2/`).catch(() => undefined))?.status === up) return { host, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  stop();
  throw new Error(`Distribution 2.8 did not come up on ${host}`);
}

export const IMAGE_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/**
 * Pushes a small one-layer image (a unique layer every call) with Tether's own client, under `tag`, or
 * by digest only when `tag` is undefined; resolves with its manifest digest and size.
 */
export async function pushSmallImage(
  host: string,
  repo: string,
  tag: string | undefined,
  architecture = 'amd64',
): Promise<{ digest: string; size: number }> {
  const client = new RegistryClient({ credentials: async () => undefined });
  const ref = parseImageReference(`${host}/${repo}`);
  const config = await client.pushBlob(ref, Buffer.from(JSON.stringify({ architecture, os: 'linux' })));
  const layer = await client.pushBlob(
    ref,
    Buffer.from(`${repo}:${tag ?? ''} ${architecture} ${randomUUID()}`),
  );
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: IMAGE_MANIFEST,
      config: { ...config, mediaType: 'application/vnd.oci.image.config.v1+json' },
      layers: [{ ...layer, mediaType: 'application/vnd.oci.image.layer.v1.tar' }],
    }),
  );
  const digest = digestOf('sha256', bytes);
  await client.putManifest(ref, tag ?? digest, bytes, IMAGE_MANIFEST);
  return { digest, size: bytes.length };
}

/** Every digest in a `tether discover --format json` tree, at any depth, sorted. */
export function discoveredDigests(json: string): string[] {
  type Node = { digest: string; referrers?: Node[] };
  const out: string[] = [];
  const walk = (nodes: Node[]) => {
    for (const n of nodes) {
      out.push(n.digest);
      walk(n.referrers ?? []);
    }
  };
  walk((JSON.parse(json) as { referrers: Node[] }).referrers);
  return out.sort();
}
