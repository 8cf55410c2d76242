import { refusal } from '../client/refusal.ts';
import type { RegistryHttp } from '../client/registry-http.ts';

/** Pages of the catalog read at most, as for a whole listing. */
const MAX_PAGES = 10_000;

/**
 * The repositories under `namespace/` in a registry's catalog, named relative to it as oras names them
 * (`many/r1` is `r1`). Registries list their catalog in lexical order (Distribution, zot, Harbor,
 * Tether), so the walk starts at `last=namespace` and stops at the first page that reaches past the
 * namespace instead of reading the whole catalog. A registry whose answer is out of that order may have skipped names
 * before `last`, so the walk then starts over from the first page and reads to the end.
 */
export async function listNamespace(http: RegistryHttp, namespace: string): Promise<string[]> {
  const prefix = `${namespace}/`;
  const sorted = await walk(http, prefix, `/v2/_catalog?last=${encodeURIComponent(namespace)}`, namespace);
  return (sorted ?? (await walk(http, prefix, '/v2/_catalog', undefined)) ?? []).map((name) =>
    name.slice(prefix.length),
  );
}

/**
 * The names starting with `prefix`, page by page from `first`. With `after` (the catalog is taken to
 * be sorted and to start past it), stops at the first page that ends past the prefix, and answers
 * undefined when the registry's order contradicts that (a whole page is checked before stopping, so a
 * registry that ignores `last` and lists in an order of its own is caught on its first page).
 */
async function walk(
  http: RegistryHttp,
  prefix: string,
  first: string,
  after: string | undefined,
): Promise<string[] | undefined> {
  const found: string[] = [];
  let previous = after;
  let path: string | undefined = first;
  for (let pages = 0; path && pages < MAX_PAGES; pages++) {
    const res = await http.request('GET', path, { scope: 'registry:catalog:*' });
    if (res.status !== 200)
      throw await refusal(res, {
        registry: http,
        action: 'list repositories under',
        subject: `${http.host}/${prefix}`,
        access: 'list the catalog',
      });
    const names = ((await res.json()) as { repositories?: string[] | null }).repositories ?? [];
    found.push(...names.filter((name) => name.startsWith(prefix)));
    if (after !== undefined) {
      for (const name of names) {
        if (previous !== undefined && name <= previous) return undefined;
        previous = name;
      }
      if (previous !== undefined && previous > prefix && !previous.startsWith(prefix)) return found;
    }
    const link = res.headers.get('link');
    path = link ? /<([^>]+)>\s*;\s*rel="next"/.exec(link)?.[1]?.replace(/^https?:\/\/[^/]+/, '') : undefined;
  }
  return found;
}
