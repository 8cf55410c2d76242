import { AuthError, Authenticator } from '../client/auth.ts';
import { dockerConfigPath, eraseCredentials, storeCredentials } from '../client/docker-config.ts';
import { ClientError } from '../client/errors.ts';
import { RegistryHttp } from '../client/registry-http.ts';
import type { HttpResponse } from '../client/response.ts';
import { ConfigError } from '../config-error.ts';
import { parseCommand } from './args.ts';
import {
  CREDENTIAL_FLAGS,
  credentialsBySide,
  TLS_FLAGS,
  tlsSettings,
  warnIfInsecure,
  warnIfPasswordFlags,
} from './registry-access.ts';

export const LOGIN_USAGE = `Usage: tether login HOST[:PORT] -u USER [--password-stdin | -p PASSWORD] [--plain-http]
                    [--ca-file PEM | --insecure]
       tether logout HOST[:PORT]

Checks the credentials against the registry (HTTP Basic or the token protocol, whichever it asks for) and
stores them the way \`docker login\` does: in the credential helper named by credsStore/credHelpers of
$DOCKER_CONFIG/config.json (default ~/.docker/config.json), else base64 in its "auths".
Plain HTTP is used for localhost, 127.0.0.0/8 and ::1 automatically (HTTPS when the port answers as
TLS), elsewhere with --plain-http.
--ca-file trusts a private CA's PEM certificate besides Node's CAs; --insecure verifies no certificate.`;

/**
 * Exit statuses as documented: a refused login, an unreachable or throttling registry are failures (1,
 * ClientError), not usage errors (2, ConfigError), which only a missing user name or password is.
 */
export async function loginCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand(argv, {
    options: {
      ...CREDENTIAL_FLAGS,
      'plain-http': { type: 'boolean' },
      ...TLS_FLAGS,
    },
    usage: 'usage: tether login HOST[:PORT] -u USER [--password-stdin | -p PASSWORD] [--plain-http]',
    help: LOGIN_USAGE,
    positionals: [1, 1],
  });
  const host = positionals[0]!;
  if (!values.username) throw new ConfigError('a user name is required (-u USER)');
  // Read as every client command reads -u/-p/--password-stdin (a user name without a password is refused).
  const credentials = (await credentialsBySide(values))['']!;
  const tls = await tlsSettings(values);
  warnIfInsecure(values);
  warnIfPasswordFlags(values);
  const auth = new Authenticator(async () => credentials);
  const http = new RegistryHttp(host, auth, { plainHttp: values['plain-http'] === true, tls });
  let res: HttpResponse;
  try {
    res = await http.request('GET', '/v2/');
  } catch (err) {
    if (err instanceof AuthError && err.kind === 'rejected')
      throw new ClientError(`login to ${host} failed: invalid username or password`);
    if (err instanceof AuthError) throw new ClientError(`login to ${host} refused: ${err.message}`);
    // Network and TLS failures as every command reports them (with the --plain-http or CA hint).
    throw err;
  }
  await res.discard();
  if (res.status === 401) throw new ClientError(`login to ${host} failed: invalid username or password`);
  if (res.status === 429)
    throw new ClientError(
      `login to ${host} refused: too many failed attempts, retry in ${res.headers.get('retry-after') ?? 'a while'} s`,
    );
  if (res.status !== 200)
    throw new ClientError(`login to ${host} failed: the registry answered HTTP ${res.status}`);
  const where = await storeCredentials(host, credentials).catch((err: Error) => {
    throw new ClientError(`login to ${host} worked, but the credentials were not stored: ${err.message}`);
  });
  console.error(
    `Login Succeeded (credentials stored ${where === 'helper' ? 'with the credential helper' : `in ${dockerConfigPath()}`})`,
  );
}

export async function logoutCommand(argv: string[]): Promise<void> {
  const { positionals } = parseCommand(argv, {
    options: {},
    usage: 'usage: tether logout HOST[:PORT]',
    help: LOGIN_USAGE,
    positionals: [1, 1],
  });
  const host = positionals[0]!;
  const removed = await eraseCredentials(host);
  console.error(removed ? `Removed login credentials for ${host}` : `Not logged in to ${host}`);
}
