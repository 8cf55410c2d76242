/** Access scopes in the Docker registry token format: `repository:<name>:pull,push`, `registry:catalog:*`. */
export type Action = 'pull' | 'push' | 'delete' | '*';
export const ACTIONS: Action[] = ['pull', 'push', 'delete'];

export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

/** Parses one scope string; unknown resource types are kept (and simply never granted). */
export function parseScope(scope: string): AccessEntry | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const type = scope.slice(0, first).replace(/\(.*\)$/, '');
  const name = scope.slice(first + 1, last);
  const actions = scope
    .slice(last + 1)
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  if (name === '' || name.length > 300) return undefined;
  return { type, name, actions };
}

export function formatScope(entry: AccessEntry): string {
  return `${entry.type}:${entry.name}:${entry.actions.join(',')}`;
}
