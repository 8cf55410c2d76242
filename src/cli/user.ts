import { join } from 'node:path';
import { editHtpasswd, hashPassword, parseHtpasswd, USERNAME } from '../auth/htpasswd.ts';
import { loadConfig } from '../config.ts';
import { ConfigError } from '../config-error.ts';
import { parseCommand } from './args.ts';

export const USER_USAGE = `Usage: tether user <add|passwd|remove|list> [USER] [options]

  add USER       create a user (fails if it exists)
  passwd USER    set a user's password
  remove USER    delete a user
  list           print user names

Options:
  --htpasswd FILE      the users file (default: auth.htpasswd from config, else <data>/htpasswd)
  --config FILE, --data DIR   to find the default file as \`tether serve\` would
  --password-stdin     read the password from standard input (first line)
  --password PASS      the password on the command line (visible to other local users; avoid)
  --cost N             bcrypt cost, 4 to 15 (default 10)

Edits are atomic (temp file + rename); a running server picks them up within a second.`;

async function readPassword(fromStdin: boolean): Promise<string> {
  if (!fromStdin && process.stdin.isTTY) {
    throw new ConfigError(
      'give the password with --password-stdin (e.g. `echo "$PW" | tether user add alice --password-stdin`)',
    );
  }
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  const password = text.split(/\r?\n/)[0] ?? '';
  if (password === '') throw new ConfigError('empty password on standard input');
  return password;
}

export async function userCommand(argv: string[]): Promise<void> {
  const { values, action, positionals } = parseCommand(argv, {
    options: {
      htpasswd: { type: 'string' },
      config: { type: 'string' },
      data: { type: 'string' },
      'password-stdin': { type: 'boolean' },
      password: { type: 'string' },
      cost: { type: 'string' },
    },
    usage: 'usage: tether user add|passwd|remove USER | list [--htpasswd FILE] (tether user -h: more)',
    help: USER_USAGE,
    positionals: { add: [1, 1], passwd: [1, 1], remove: [1, 1], list: [0, 0] },
  });
  const [user] = positionals;
  let file = values.htpasswd;
  if (!file) {
    const configFile = values.config ?? process.env.TETHER_CONFIG;
    const config = loadConfig({
      ...(configFile ? { file: configFile } : {}),
      env: process.env,
      flags: { data: values.data },
    });
    file = config.auth.htpasswd || join(config.data, 'htpasswd');
  }
  if (action === 'list') {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(file, 'utf8').catch(() => '');
    for (const name of parseHtpasswd(text).keys()) console.log(name);
    return;
  }
  if (!user || !USERNAME.test(user))
    throw new ConfigError('a user name of letters, digits, ".", "_", "@" or "-" is required');
  const cost = values.cost === undefined ? 10 : Number(values.cost);
  if (!Number.isInteger(cost) || cost < 4 || cost > 15)
    throw new ConfigError('--cost must be an integer from 4 to 15');
  switch (action) {
    case 'add':
    case 'passwd': {
      const password = values.password ?? (await readPassword(values['password-stdin'] === true));
      const hash = await hashPassword(password, cost);
      await editHtpasswd(file, (users) => {
        if (action === 'add' && users.has(user)) throw new ConfigError(`user ${user} exists (use passwd)`);
        if (action === 'passwd' && !users.has(user)) throw new ConfigError(`no user ${user} (use add)`);
        users.set(user, hash);
      });
      console.error(`${action === 'add' ? 'added' : 'updated'} ${user} in ${file}`);
      return;
    }
    case 'remove':
      await editHtpasswd(file, (users) => {
        if (!users.delete(user)) throw new ConfigError(`no user ${user}`);
      });
      console.error(`removed ${user} from ${file}`);
      return;
  }
}
