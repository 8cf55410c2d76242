import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { ClientError, type ReferrersMode, RegistryClient } from '../client/client.ts';
import { parseImageReference } from '../client/reference.ts';
import { ConfigError } from '../config.ts';
import type { Descriptor } from '../oci/manifest.ts';

/** Flags every client command takes. */
const COMMON = {
  'plain-http': { type: 'boolean' },
  'referrers-mode': { type: 'string' },
  'force-referrers-tag': { type: 'boolean' },
  format: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function client(values: {
  'plain-http'?: boolean;
  'referrers-mode'?: string;
  'force-referrers-tag'?: boolean;
}): RegistryClient {
  const mode = values['referrers-mode'] ?? 'auto';
  if (!['auto', 'api', 'tag'].includes(mode))
    throw new ConfigError('--referrers-mode must be auto, api or tag');
  return new RegistryClient({
    plainHttp: values['plain-http'] === true,
    referrersMode: mode as ReferrersMode,
    forceReferrersTag: values['force-referrers-tag'] === true,
  });
}

function reference(value: string | undefined, usage: string) {
  if (!value) throw new ConfigError(usage);
  try {
    return parseImageReference(value);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
}

export const CLIENT_USAGE = `Client commands (any OCI registry; plain HTTP is automatic for localhost and 127.0.0.0/8):
  resolve REF                         print the digest of a tag or digest reference
  manifest get REF                    print a manifest (digest verified)
  tag REF NEWTAG                      point another tag at REF's manifest
  attach REF FILE[:MEDIATYPE]... --artifact-type TYPE [--annotation K=V]...
                                      push files as an artifact referring to REF
  discover REF [--artifact-type TYPE] [--depth N] [--format tree|json]
                                      list what refers to REF (recursively)
Common flags: --plain-http, --referrers-mode auto|api|tag, --force-referrers-tag, --format json`;

export async function resolveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: COMMON });
  const ref = reference(positionals[0], 'usage: tether resolve REF');
  console.log((await client(values).resolve(ref)).digest);
}

export async function manifestCommand(argv: string[]): Promise<void> {
  const [action, ...rest] = argv;
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: COMMON });
  if (action !== 'get') throw new ConfigError('usage: tether manifest get REF');
  const ref = reference(positionals[0], 'usage: tether manifest get REF');
  const { bytes, descriptor } = await client(values).getManifest(ref);
  if (values.format === 'json')
    console.log(JSON.stringify({ descriptor, manifest: JSON.parse(bytes.toString()) }, null, 2));
  else process.stdout.write(bytes);
}

export async function tagCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: COMMON });
  const ref = reference(positionals[0], 'usage: tether tag REF NEWTAG');
  if (!positionals[1]) throw new ConfigError('usage: tether tag REF NEWTAG');
  const digest = await client(values).tag(ref, positionals[1]);
  console.error(`tagged ${ref.host}/${ref.repository}:${positionals[1]} -> ${digest}`);
}

export async function attachCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON,
      'artifact-type': { type: 'string' },
      annotation: { type: 'string', multiple: true },
    },
  });
  const ref = reference(positionals[0], 'usage: tether attach REF FILE... --artifact-type TYPE');
  const artifactType = values['artifact-type'];
  if (!artifactType) throw new ConfigError('--artifact-type is required');
  const annotations: Record<string, string> = {};
  for (const a of values.annotation ?? []) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--annotation takes KEY=VALUE, got "${a}"`);
    annotations[a.slice(0, eq)] = a.slice(eq + 1);
  }
  const files = await Promise.all(
    positionals.slice(1).map(async (spec) => {
      const colon = spec.lastIndexOf(':');
      const path = colon > 0 && spec.slice(colon + 1).includes('/') ? spec.slice(0, colon) : spec;
      const mediaType = path === spec ? 'application/octet-stream' : spec.slice(colon + 1);
      return { mediaType, bytes: await readFile(path), title: basename(path) };
    }),
  );
  const descriptor = await client(values).attach(ref, artifactType, files, annotations);
  if (values.format === 'json') console.log(JSON.stringify(descriptor, null, 2));
  else console.log(descriptor.digest);
}

interface Node extends Descriptor {
  referrers: Node[];
}

export async function discoverCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...COMMON, 'artifact-type': { type: 'string' }, depth: { type: 'string' } },
  });
  const ref = reference(positionals[0], 'usage: tether discover REF');
  const c = client(values);
  const root = await c.resolve(ref);
  const depth = values.depth === undefined ? 8 : Number(values.depth);
  const seen = new Set<string>([root.digest]);
  // Recursive and loop-safe: referrers of referrers, each digest once.
  const walk = async (digest: string, level: number): Promise<Node[]> => {
    if (level >= depth) return [];
    const found = await c.referrers({ ...ref, digest }, level === 0 ? values['artifact-type'] : undefined);
    const nodes: Node[] = [];
    for (const d of found) {
      if (seen.has(d.digest)) continue;
      seen.add(d.digest);
      nodes.push({ ...d, referrers: await walk(d.digest, level + 1) });
    }
    return nodes;
  };
  const tree = await walk(root.digest, 0);
  if (values.format === 'json') {
    console.log(JSON.stringify({ reference: positionals[0], ...root, referrers: tree }, null, 2));
    return;
  }
  console.log(`${ref.host}/${ref.repository}@${root.digest}`);
  const print = (nodes: Node[], prefix: string) => {
    nodes.forEach((n, i) => {
      const last = i === nodes.length - 1;
      console.log(`${prefix}${last ? '└── ' : '├── '}${n.artifactType ?? n.mediaType}  ${n.digest}`);
      print(n.referrers, `${prefix}${last ? '    ' : '│   '}`);
    });
  };
  print(tree, '');
}

export { ClientError };
