import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ConfigError, loadConfig } from '../config.ts';
import { startServer } from '../server/start.ts';
import { SignatureError } from '../sign/errors.ts';
import {
  attachCommand,
  blobCommand,
  CLIENT_USAGE,
  ClientError,
  copyCommand,
  discoverCommand,
  manifestCommand,
  pullCommand,
  pushCommand,
  repoCommand,
  resolveCommand,
  tagCommand,
} from './client-commands.ts';
import { loginCommand, logoutCommand } from './login.ts';
import { certCommand, SIGN_USAGE, signCommand, verifyCommand } from './sign-commands.ts';
import { userCommand } from './user.ts';

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

serve options:
  --listen HOST:PORT   address to listen on (default 127.0.0.1:5000, env TETHER_LISTEN)
  --data DIR           data directory (default ./data, env TETHER_DATA)
  --config FILE        YAML or JSON config file (env TETHER_CONFIG)
  --log-level LEVEL    fatal|error|warn|info|debug|trace|silent (env TETHER_LOG_LEVEL)

Precedence: flags > TETHER_* environment > config file > defaults. See docs/configuration.md.`;

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string' },
      data: { type: 'string' },
      config: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const file = values.config ?? process.env.TETHER_CONFIG;
  const config = loadConfig({
    ...(file ? { file } : {}),
    env: process.env,
    flags: { listen: values.listen, data: values.data, 'log-level': values['log-level'] },
  });
  const log = pino({ level: config.log.level, base: { service: 'tether' } });
  const running = await startServer(config, log);
  // The address line is part of the command's contract: printed at any level but `silent`.
  const announce = config.log.level === 'silent' ? log : log.child({}, { level: 'info' });
  announce.info({ url: running.url, data: config.data }, `tether listening on ${running.url}`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: finishing in-flight requests');
    running.close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'user':
      return userCommand(rest);
    case 'login':
      return loginCommand(rest);
    case 'logout':
      return logoutCommand(rest);
    case 'resolve':
      return resolveCommand(rest);
    case 'manifest':
      return manifestCommand(rest);
    case 'tag':
      return tagCommand(rest);
    case 'blob':
      return blobCommand(rest);
    case 'repo':
      return repoCommand(rest);
    case 'push':
      return pushCommand(rest);
    case 'pull':
      return pullCommand(rest);
    case 'cp':
      return copyCommand(rest);
    case 'attach':
      return attachCommand(rest);
    case 'discover':
      return discoverCommand(rest);
    case 'sign':
      return signCommand(rest);
    case 'verify':
      return verifyCommand(rest);
    case 'cert':
      return certCommand(rest);
    case 'help':
      console.log(rest[0] === 'client' ? CLIENT_USAGE : rest[0] === 'sign' ? SIGN_USAGE : USAGE);
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

const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ClientError || err instanceof SignatureError) {
    console.error(`tether: ${err.message}`);
    process.exitCode = 1;
    return;
  }
  if (err instanceof ConfigError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`tether: ${(err as Error).message}`);
    process.exitCode = 2;
    return;
  }
  // Network and file-system failures are the user's to fix, not bugs: one line, no stack.
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = (err as { code?: unknown }).code;
  if (
    (err instanceof TypeError && err.message === 'fetch failed') ||
    (typeof code === 'string' && NETWORK.has(code))
  ) {
    const detail = err instanceof TypeError ? (cause?.code ?? cause?.message) : (err as Error).message;
    console.error(`tether: cannot reach the registry: ${detail ?? 'network error'}`);
    process.exitCode = 1;
    return;
  }
  if (typeof (err as { code?: unknown }).code === 'string' && (err as { syscall?: unknown }).syscall) {
    console.error(`tether: ${(err as Error).message}`);
    process.exitCode = 1;
    return;
  }
  console.error(err);
  process.exitCode = 1;
});
