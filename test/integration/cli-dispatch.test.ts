import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';
import { skipUnlessStrict } from '../helpers/skip.ts';
import { spawnTether, tempDataDir } from '../helpers/tether-process.ts';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function tether(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('commands load their modules on demand: help texts and dispatch still work', () => {
  const general = tether('help');
  assert.equal(general.status, 0);
  assert.match(general.stdout, /serve\s+Run the registry/);
  const client = tether('help', 'client');
  assert.equal(client.status, 0);
  assert.match(client.stdout, /discover/);
  assert.doesNotMatch(client.stdout, /serve\s+Run the registry/);
  const sign = tether('help', 'sign');
  assert.equal(sign.status, 0);
  assert.match(sign.stdout, /verify/);
  assert.doesNotMatch(sign.stdout, /serve\s+Run the registry/);
});

test('an unknown command exits 2 with the usage; a client command error is one line, exit 1 or 2', () => {
  const unknown = tether('frobnicate');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  const bad = tether('resolve', 'not a reference!');
  assert.ok(bad.status === 1 || bad.status === 2, `exit ${bad.status}`);
  assert.match(bad.stderr, /^tether: /);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
});

test("`tether serve` runs with the server heap flags and thread pool however it was started, keeping the operator's own", {
  skip: skipUnlessStrict(process.platform !== 'linux' && 'reads /proc'),
}, async (t) => {
  const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  const environ = (pid: number) => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  // libuv starts its pool when the blob store creates its directories, before the server listens.
  const threads = (pid: number) => readdirSync(`/proc/${pid}/task`).length;
  const { dir, cleanup } = await tempDataDir();
  t.after(cleanup);

  const bare = await spawnTether(dir, [], { UV_THREADPOOL_SIZE: undefined, MALLOC_ARENA_MAX: undefined });
  const bareArgs = cmdline(bare.proc.pid!);
  const bareEnv = environ(bare.proc.pid!);
  const bareThreads = threads(bare.proc.pid!);
  assert.equal(await bare.stop(), 0);
  assert.ok(bareArgs.includes('--max-old-space-size=128'), bareArgs.join(' '));
  assert.ok(bareArgs.includes('--max-semi-space-size=1'), bareArgs.join(' '));
  // V8's marking triggers, which this node accepts (the probe passes them on).
  assert.ok(bareArgs.includes('--incremental-marking-hard-trigger=90'), bareArgs.join(' '));
  assert.ok(bareEnv.includes('UV_THREADPOOL_SIZE=64'), 'UV_THREADPOOL_SIZE=64 in the environment');
  assert.ok(bareEnv.includes('MALLOC_ARENA_MAX=2'), 'MALLOC_ARENA_MAX=2 in the environment');
  assert.ok(bareThreads > 64, `${bareThreads} threads`);

  const own = await spawnTether(
    dir,
    [],
    { UV_THREADPOOL_SIZE: '6', MALLOC_ARENA_MAX: '1' },
    { nodeFlags: ['--max-old-space-size=300'] },
  );
  const ownArgs = cmdline(own.proc.pid!);
  const ownEnv = environ(own.proc.pid!);
  const ownThreads = threads(own.proc.pid!);
  assert.equal(await own.stop(), 0);
  assert.ok(ownArgs.includes('--max-old-space-size=300'), ownArgs.join(' '));
  assert.ok(!ownArgs.includes('--max-old-space-size=128'), ownArgs.join(' '));
  assert.ok(ownArgs.includes('--max-semi-space-size=1'), ownArgs.join(' '));
  assert.ok(ownEnv.includes('UV_THREADPOOL_SIZE=6'), "the operator's UV_THREADPOOL_SIZE is kept");
  assert.ok(ownEnv.includes('MALLOC_ARENA_MAX=1'), "the operator's MALLOC_ARENA_MAX is kept");
  assert.ok(ownThreads < 64, `${ownThreads} threads`);
});

test('a command left waiting on nothing exits 70 with a message, not 0 having done nothing', async () => {
  // A registry that accepts connections and never answers, and a client whose sockets are made not to
  // hold the process open (`unref`, injected with --import): its request then waits on nothing, the
  // way a promise no callback will ever settle would. Without the guard the process ends with 0.
  const silent = net.createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = silent.address() as net.AddressInfo;
    const unrefSockets =
      "import net from 'node:net'; const connect = net.Socket.prototype.connect;" +
      'net.Socket.prototype.connect = function (...args) { this.unref(); return connect.apply(this, args); };';
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [
          '--import',
          `data:text/javascript,${encodeURIComponent(unrefSockets)}`,
          MAIN,
          'manifest',
          'get',
          `127.0.0.1:${port}/x:y`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      child.on('close', (code) => resolve({ code, stderr }));
    });
    assert.equal(r.code, 70, r.stderr);
    assert.match(r.stderr, /^tether: the command stopped before it finished/);
  } finally {
    silent.close();
  }
});
