import { removeScratch } from '../client/scratch.ts';
import { HelpRequested, parseCommand } from './args.ts';

const USAGE = `Usage: tether <command> [options]

Commands:
  serve     Run the registry (embedded filesystem + SQLite storage by default)
  user      Manage registry users (htpasswd file): add, passwd, remove, list
  login     Log in to a registry and store the credentials as Docker does
  logout    Remove stored credentials for a registry
  resolve, manifest, blob, repo, tag, push, pull, cp, attach, discover
            client commands for any registry (tether help client)
  sign, verify, cert
            Notary Project signatures, interoperable with notation (tether help sign)
Every command takes -h/--help: it prints the command's usage and does nothing else.

serve options:
  --listen HOST:PORT   address to listen on (default 127.0.0.1:5000, env TETHER_LISTEN)
  --data DIR           data directory (default ./data, env TETHER_DATA)
  --config FILE        YAML or JSON config file (env TETHER_CONFIG)
  --log-level LEVEL    fatal|error|warn|info|debug|trace|silent (env TETHER_LOG_LEVEL)

Precedence: flags > TETHER_* environment > config file > defaults. See docs/configuration.md.`;

/** How long a stopped server may take to end on its own before it is made to. */
const EXIT_GRACE_MS = 5000;

async function serve(argv: string[]): Promise<void> {
  (await import('./server-runtime.ts')).ensureServerRuntime();
  const { values } = parseCommand(argv, {
    options: {
      listen: { type: 'string' },
      data: { type: 'string' },
      config: { type: 'string' },
      'log-level': { type: 'string' },
    },
    usage: 'usage: tether serve [--listen HOST:PORT] [--data DIR] [--config FILE] [--log-level LEVEL]',
    help: USAGE,
    positionals: [0, 0],
  });
  const [{ loadConfig }, { pino }] = await Promise.all([import('../config.ts'), import('pino')]);
  const file = values.config ?? process.env.TETHER_CONFIG;
  const config = loadConfig({
    ...(file ? { file } : {}),
    env: process.env,
    flags: { listen: values.listen, data: values.data, 'log-level': values['log-level'] },
  });
  const log = pino({ level: config.log.level, base: { service: 'tether' } });
  const { startServer } = await import('../server/start.ts');
  const running = await startServer(config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: finishing in-flight requests');
    running.close().then(
      () => {
        log.info('stopped');
        exitWhenIdle(0);
      },
      (err) => {
        log.error({ err }, 'shutdown failed');
        exitWhenIdle(1);
      },
    );
  };
  /**
   * Ends the process by letting its event loop empty, not with `process.exit()`. That call shuts V8's
   * worker threads down without first disposing of the isolate, so a background compile job that is
   * waiting for a garbage collection at that moment waits forever, and so does the process
   * (nodejs/node#54918). It happened here: a server stopped by SIGTERM during a benchmark run closed its
   * port and store, then sat in `pthread_join` for minutes. A normal end disposes of the isolate first,
   * which releases such a job. `close()` leaves nothing that keeps the loop alive; should something
   * still do so (a bug), the process is ended anyway after a grace period.
   */
  const exitWhenIdle = (code: number) => {
    process.exitCode = code;
    setTimeout(() => {
      log.error(
        { resources: process.getActiveResourcesInfo() },
        'shutdown: something still held the process after the server closed; exiting',
      );
      process.exit(code);
    }, EXIT_GRACE_MS).unref();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // The address line is part of the command's contract: printed at any level but `silent`, and only
  // once the signal handlers are in place, so a supervisor that stops the server as soon as it reads
  // this line gets a graceful shutdown.
  const announce = config.log.level === 'silent' ? log : log.child({}, { level: 'info' });
  announce.info({ url: running.url, data: config.data }, `tether listening on ${running.url}`);
}

/**
 * Each command's module is loaded when that command runs: `tether serve` does not pay (in start-up time
 * and ~30 MB of resident memory) for the client, signing and token-auth code it never calls, and the
 * client commands do not load the server's logger and configuration.
 */
const COMMANDS: Record<string, () => Promise<(argv: string[]) => Promise<void>>> = {
  serve: async () => serve,
  user: async () => (await import('./user.ts')).userCommand,
  login: async () => (await import('./login.ts')).loginCommand,
  logout: async () => (await import('./login.ts')).logoutCommand,
  resolve: async () => (await import('./client-commands.ts')).resolveCommand,
  manifest: async () => (await import('./client-commands.ts')).manifestCommand,
  tag: async () => (await import('./client-commands.ts')).tagCommand,
  blob: async () => (await import('./client-commands.ts')).blobCommand,
  repo: async () => (await import('./client-commands.ts')).repoCommand,
  push: async () => (await import('./client-commands.ts')).pushCommand,
  pull: async () => (await import('./client-commands.ts')).pullCommand,
  cp: async () => (await import('./client-commands.ts')).copyCommand,
  attach: async () => (await import('./client-commands.ts')).attachCommand,
  discover: async () => (await import('./client-commands.ts')).discoverCommand,
  sign: async () => (await import('./sign-commands.ts')).signCommand,
  verify: async () => (await import('./sign-commands.ts')).verifyCommand,
  cert: async () => (await import('./sign-commands.ts')).certCommand,
};

/**
 * A client command ended by Ctrl-C (or SIGTERM, SIGHUP) first removes the temporary files it has open
 * (a blob half-written into a layout, a pull's staging directory; see `withScratch`), then ends by that
 * same signal, so that a shell reports it as for any interrupted program (130 for Ctrl-C).
 */
function removeScratchOnSignals(): void {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.once(signal, () => {
      removeScratch();
      process.kill(process.pid, signal);
    });
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const load = command === undefined ? undefined : COMMANDS[command];
  if (load && command !== 'serve') removeScratchOnSignals();
  if (load) return (await load())(rest);
  switch (command) {
    case 'help':
      if (rest[0] === 'client') console.log((await import('./client-commands.ts')).CLIENT_USAGE);
      else if (rest[0] === 'sign') console.log((await import('./sign-commands.ts')).SIGN_USAGE);
      else console.log(USAGE);
      return;
    case undefined:
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      console.error(`tether: unknown command "${command}"\n\n${USAGE}`);
      process.exitCode = 2;
  }
}

/**
 * A reader that stops early (`tether blob get … | head -c 10`) closes stdout, and writes to it then fail
 * with EPIPE. cat, oras and crane die of SIGPIPE there, silently, and a shell reports status 141
 * (128 + SIGPIPE) for them; tether ends the same way, without the "cannot reach the registry" that an
 * EPIPE otherwise means.
 */
let stdoutBroken = false;
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (stdoutBroken) return;
  stdoutBroken = true;
  if (err.code === 'EPIPE') {
    process.exitCode = 141;
    return;
  }
  console.error(`tether: cannot write to standard output: ${err.message}`);
  process.exitCode = 1;
});

let settled = false;
// A command left waiting on nothing (a promise no socket or timer will ever settle: a bug) ends when
// the event loop empties, and would report success with status 0 having done nothing.
process.once('exit', (code) => {
  if (settled || code !== 0) return;
  console.error('tether: the command stopped before it finished (a bug in tether; please report it)');
  process.exitCode = 70;
});

main(process.argv.slice(2)).then(
  () => {
    settled = true;
  },
  async (err: unknown) => {
    settled = true;
    if (err instanceof HelpRequested) {
      console.log(err.help);
      return;
    }
    // Whatever failed once stdout was gone (the copy into it, first of all) has no reader to tell.
    if (stdoutBroken) return;
    // Loaded on failure only: it knows the client's error classes, which `serve` never loads.
    const { describeFailure } = await import('./failure.ts');
    const { message, exitCode } = describeFailure(err);
    console.error(message);
    process.exitCode = exitCode;
  },
);
