/**
 * A setting, flag or argument the user must fix: the CLI prints its message alone and exits with 2.
 * A module of its own so that client commands, which throw it, do not load the server's configuration.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
