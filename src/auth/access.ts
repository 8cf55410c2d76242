import { globToRegExp } from '../registry/policy.ts';
import { ACTIONS, type Action } from './scope.ts';

/**
 * Who may do what. Grants are additive: a caller's actions on a repository are the union of every rule
 * that matches the repository and names the caller (a user, one of its groups, `authenticated` for any
 * logged-in user, `anonymous` for everyone). Admins may do everything, everywhere.
 */
export interface AccessRule {
  repositories: string;
  users?: string[];
  groups?: string[];
  anonymous?: boolean;
  authenticated?: boolean;
  actions: Action[];
}

export interface GroupDefinition {
  name: string;
  users: string[];
}

export interface Principal {
  /** Undefined for anonymous callers. */
  user?: string;
}

export class AccessPolicy {
  readonly #rules: (AccessRule & { pattern: RegExp })[];
  readonly #groupsOf = new Map<string, Set<string>>();
  readonly #admins: Set<string>;

  constructor(rules: AccessRule[], groups: GroupDefinition[], admins: string[]) {
    this.#rules = rules.map((rule) => ({ ...rule, pattern: globToRegExp(rule.repositories) }));
    for (const group of groups) {
      for (const user of group.users) {
        if (!this.#groupsOf.has(user)) this.#groupsOf.set(user, new Set());
        this.#groupsOf.get(user)!.add(group.name);
      }
    }
    this.#admins = new Set(admins);
  }

  isAdmin(principal: Principal): boolean {
    return principal.user !== undefined && this.#admins.has(principal.user);
  }

  /** True when anonymous callers have any grant at all (then the catalog and /v2/ are open to them). */
  get hasAnonymousRules(): boolean {
    return this.#rules.some((r) => r.anonymous);
  }

  allowed(principal: Principal, repository: string): Set<Action> {
    if (this.isAdmin(principal)) return new Set(ACTIONS);
    const granted = new Set<Action>();
    const { user } = principal;
    const groups = user ? this.#groupsOf.get(user) : undefined;
    for (const rule of this.#rules) {
      if (!rule.pattern.test(repository)) continue;
      const applies =
        rule.anonymous === true ||
        (user !== undefined &&
          (rule.authenticated === true ||
            rule.users?.includes(user) === true ||
            rule.groups?.some((g) => groups?.has(g)) === true));
      if (!applies) continue;
      for (const action of rule.actions) {
        if (action === '*') for (const a of ACTIONS) granted.add(a);
        else granted.add(action);
      }
    }
    return granted;
  }
}

function stringList(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string'))
    throw new Error(`${where} must be a list of strings`);
  return value as string[];
}

export function parseAccessRules(value: unknown): AccessRule[] {
  if (!Array.isArray(value))
    throw new Error('must be a list of {repositories, actions, users?, groups?, anonymous?, authenticated?}');
  return value.map((entry, i) => {
    if (typeof entry !== 'object' || entry === null) throw new Error(`entry ${i} must be an object`);
    const { repositories, actions, users, groups, anonymous, authenticated, ...rest } = entry as Record<
      string,
      unknown
    >;
    if (Object.keys(rest).length > 0)
      throw new Error(`entry ${i} has unknown keys: ${Object.keys(rest).join(', ')}`);
    if (typeof repositories !== 'string' || repositories === '')
      throw new Error(`entry ${i}: repositories must be a glob`);
    const acts = stringList(actions, `entry ${i}: actions`);
    for (const a of acts)
      if (a !== '*' && !ACTIONS.includes(a as Action)) throw new Error(`entry ${i}: unknown action ${a}`);
    const rule: AccessRule = { repositories, actions: acts as Action[] };
    if (users !== undefined) rule.users = stringList(users, `entry ${i}: users`);
    if (groups !== undefined) rule.groups = stringList(groups, `entry ${i}: groups`);
    if (anonymous !== undefined) rule.anonymous = anonymous === true;
    if (authenticated !== undefined) rule.authenticated = authenticated === true;
    return rule;
  });
}

export function parseGroups(value: unknown): GroupDefinition[] {
  if (!Array.isArray(value)) throw new Error('must be a list of {name, users}');
  return value.map((entry, i) => {
    const { name, users } = (entry ?? {}) as Record<string, unknown>;
    if (typeof name !== 'string' || name === '') throw new Error(`entry ${i}: name must be a string`);
    return { name, users: stringList(users, `entry ${i}: users`) };
  });
}

export function parseStringList(value: unknown): string[] {
  return stringList(value, 'value');
}
