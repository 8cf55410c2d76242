import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
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
  manifest get|put|delete REF [FILE]  read, write or delete a manifest (digests verified)
  blob get|put|delete REF             read (-o FILE), upload or delete a blob
  repo ls HOST | repo tags HOST/REPO  list repositories or tags (all pages)
  push HOST/REPO:TAG FILE[:TYPE]... --artifact-type TYPE [--annotation K=V] [--subject REF]
  pull REF [-o DIR]                   write an artifact's files (verified)
  cp [-r] SRC DST                     copy an image or index (with -r: its referrers, recursively)
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

const MANIFEST_USAGE = 'usage: tether manifest get|put|delete REF [FILE] [--media-type TYPE]';

export async function manifestCommand(argv: string[]): Promise<void> {
  const [action, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { ...COMMON, 'media-type': { type: 'string' } },
  });
  const ref = reference(positionals[0], MANIFEST_USAGE);
  const c = client(values);
  switch (action) {
    case 'get': {
      const { bytes, descriptor } = await c.getManifest(ref);
      if (values.format === 'json')
        console.log(JSON.stringify({ descriptor, manifest: JSON.parse(bytes.toString()) }, null, 2));
      else process.stdout.write(bytes);
      return;
    }
    case 'put': {
      if (!positionals[1]) throw new ConfigError(MANIFEST_USAGE);
      const bytes = await readFile(positionals[1]);
      const parsed = JSON.parse(bytes.toString()) as { mediaType?: string };
      const mediaType =
        values['media-type'] ?? parsed.mediaType ?? 'application/vnd.oci.image.manifest.v1+json';
      console.log((await c.putManifest(ref, ref.digest ?? ref.tag ?? 'latest', bytes, mediaType)).digest);
      return;
    }
    case 'delete':
      console.log(await c.deleteManifest(ref));
      return;
    default:
      throw new ConfigError(MANIFEST_USAGE);
  }
}

const BLOB_USAGE =
  'usage: tether blob get HOST/REPO@DIGEST [-o FILE] | put HOST/REPO FILE | delete HOST/REPO@DIGEST';

export async function blobCommand(argv: string[]): Promise<void> {
  const [action, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { ...COMMON, output: { type: 'string', short: 'o' } },
  });
  const ref = reference(positionals[0], BLOB_USAGE);
  const c = client(values);
  if (action === 'put') {
    if (!positionals[1]) throw new ConfigError(BLOB_USAGE);
    console.log((await c.pushBlob(ref, await readFile(positionals[1]))).digest);
    return;
  }
  if (!ref.digest) throw new ConfigError(BLOB_USAGE);
  if (action === 'get') {
    const bytes = await c.getBlob(ref, ref.digest);
    if (values.output) await writeFile(values.output, bytes);
    else process.stdout.write(bytes);
  } else if (action === 'delete') {
    await c.deleteBlob(ref, ref.digest);
  } else throw new ConfigError(BLOB_USAGE);
}

export async function repoCommand(argv: string[]): Promise<void> {
  const [action, ...rest] = argv;
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: COMMON });
  const usage = 'usage: tether repo ls HOST | tether repo tags HOST/REPO';
  const target = positionals[0];
  if (!target) throw new ConfigError(usage);
  const c = client(values);
  let list: string[];
  if (action === 'ls') list = await c.listRepositories(target);
  else if (action === 'tags') list = await c.listTags(reference(target, usage));
  else throw new ConfigError(usage);
  if (values.format === 'json') console.log(JSON.stringify(list));
  else for (const item of list) console.log(item);
}

async function readFiles(specs: string[]) {
  return Promise.all(
    specs.map(async (spec) => {
      const colon = spec.lastIndexOf(':');
      const path = colon > 0 && spec.slice(colon + 1).includes('/') ? spec.slice(0, colon) : spec;
      const mediaType = path === spec ? 'application/octet-stream' : spec.slice(colon + 1);
      return { mediaType, bytes: await readFile(path), title: basename(path) };
    }),
  );
}

function parseAnnotations(values: string[] | undefined): Record<string, string> {
  const annotations: Record<string, string> = {};
  for (const a of values ?? []) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--annotation takes KEY=VALUE, got "${a}"`);
    annotations[a.slice(0, eq)] = a.slice(eq + 1);
  }
  return annotations;
}

export async function pushCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON,
      'artifact-type': { type: 'string' },
      annotation: { type: 'string', multiple: true },
      subject: { type: 'string' },
    },
  });
  const ref = reference(
    positionals[0],
    'usage: tether push HOST/REPO:TAG FILE[:TYPE]... --artifact-type TYPE',
  );
  if (!values['artifact-type']) throw new ConfigError('--artifact-type is required');
  const c = client(values);
  const subject = values.subject
    ? await c.resolve(reference(values.subject, '--subject takes a reference'))
    : undefined;
  const descriptor = await c.pushArtifact(ref, {
    artifactType: values['artifact-type'],
    files: await readFiles(positionals.slice(1)),
    annotations: parseAnnotations(values.annotation),
    ...(subject ? { subject } : {}),
    tag: ref.tag ?? 'latest',
  });
  if (values.format === 'json') console.log(JSON.stringify(descriptor, null, 2));
  else console.log(descriptor.digest);
}

export async function copyCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...COMMON, recursive: { type: 'boolean', short: 'r' } },
  });
  const usage = 'usage: tether cp [-r] SRC DST   (HOST/REPO[:TAG|@DIGEST])';
  const src = reference(positionals[0], usage);
  const dst = reference(positionals[1], usage);
  const descriptor = await client(values).copy(src, dst, { referrers: values.recursive === true });
  console.error(`copied ${descriptor.digest}${values.recursive ? ' with its referrers' : ''}`);
  console.log(descriptor.digest);
}

export async function pullCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...COMMON, output: { type: 'string', short: 'o' } },
  });
  const ref = reference(positionals[0], 'usage: tether pull REF [-o DIR]');
  const dir = values.output ?? '.';
  await mkdir(dir, { recursive: true });
  for (const file of await client(values).pullArtifact(ref)) {
    await writeFile(join(dir, file.title), file.bytes);
    console.error(`${file.title} (${file.bytes.length} bytes)`);
  }
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
  const annotations = parseAnnotations(values.annotation);
  const files = await readFiles(positionals.slice(1));
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
