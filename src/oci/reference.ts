import { errors } from './errors.ts';

/**
 * Repository names follow the spec grammar. Clients limit `host[:port]/name` to 255 characters, so names
 * above 255 are refused outright (an upper bound that also protects indexes and logs).
 */
const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
export const MAX_NAME_LENGTH = 255;

export function isValidRepositoryName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME.test(name);
}

export function assertRepositoryName(name: string): string {
  if (!isValidRepositoryName(name)) throw errors.nameInvalid(name);
  return name;
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}
