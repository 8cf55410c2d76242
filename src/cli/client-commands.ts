import { readFile, rename, rm, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import {
  type ArtifactFile,
  ClientError,
  fileSource,
  type ReferrersMode,
  RegistryClient,
} from '../client/client.ts';
import { type CopyResult, copyGraph } from '../client/copy.ts';
import { pourToFile } from '../client/file-streams.ts';
import { type Endpoint, parseEndpoint, parseImageReference } from '../client/reference.ts';
import { type ContentTarget, LayoutTarget, RegistryTarget } from '../client/target.ts';
import { ConfigError } from '../config-error.ts';
import { digestOf, tryParseDigest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { NOTARY_SIGNATURE_ARTIFACT_TYPE } from '../sign/media-types.ts';
import { ProgressBars, size } from './progress.ts';

/** Flags every client command takes. */
export const COMMON = {
  'plain-http': { type: 'boolean' },
  'referrers-mode': { type: 'string' },
  'force-referrers-tag': { type: 'boolean' },
  format: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  concurrency: { type: 'string' },
  'chunk-size': { type: 'string' },
  chunked: { type: 'boolean' },
  monolithic: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface CommonValues {
  'plain-http'?: boolean;
  'referrers-mode'?: string;
  'force-referrers-tag'?: boolean;
  format?: string;
  quiet?: boolean;
  concurrency?: string;
  'chunk-size'?: string;
  chunked?: boolean;
  monolithic?: boolean;
}

function positiveInteger(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new ConfigError(`${flag} takes a positive integer, got "${value}"`);
  return n;
}

/** `64MiB`, `1048576`, `512KiB`. */
function byteSize(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+)\s*(B|KiB|MiB|GiB)?$/i.exec(value.trim());
  if (!m) throw new ConfigError(`${flag} takes a size like 16MiB, got "${value}"`);
  const unit = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase()]!;
  return Number(m[1]) * unit;
}

export function client(values: CommonValues, progress?: ProgressBars): RegistryClient {
  const mode = values['referrers-mode'] ?? 'auto';
  if (!['auto', 'api', 'tag'].includes(mode))
    throw new ConfigError('--referrers-mode must be auto, api or tag');
  if (values.chunked && values.monolithic)
    throw new ConfigError('--chunked and --monolithic exclude each other');
  const concurrency = positiveInteger(values.concurrency, '--concurrency');
  const chunkSize = byteSize(values['chunk-size'], '--chunk-size');
  return new RegistryClient({
    plainHttp: values['plain-http'] === true,
    referrersMode: mode as ReferrersMode,
    forceReferrersTag: values['force-referrers-tag'] === true,
    ...(concurrency ? { concurrency } : {}),
    ...(chunkSize ? { chunkSize } : {}),
    ...(values.chunked ? { chunked: true } : values.monolithic ? { chunked: false } : {}),
    ...(progress ? { progress } : {}),
  });
}

/** Opens either end of a transfer: a registry repository or an OCI layout (created when writing). */
async function target(
  value: string | undefined,
  usage: string,
  c: RegistryClient,
  values: CommonValues,
  write: boolean,
): Promise<{ target: ContentTarget; reference: string | undefined; tag: string | undefined }> {
  if (!value) throw new ConfigError(usage);
  let endpoint: Endpoint;
  try {
    endpoint = parseEndpoint(value);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (endpoint.kind === 'registry') {
    const { ref } = endpoint;
    // Reading `HOST/REPO` means its `latest`, as everywhere in the Docker world.
    const reference = ref.digest ?? ref.tag ?? (write ? undefined : 'latest');
    return { target: new RegistryTarget(c, ref), reference, tag: ref.tag };
  }
  const layout = await LayoutTarget.open(endpoint.dir, {
    create: write,
    fallbackTag: values['referrers-mode'] === 'tag',
  });
  return { target: layout, reference: endpoint.digest ?? endpoint.tag, tag: endpoint.tag };
}

export function reference(value: string | undefined, usage: string) {
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
  pull REF [-o DIR]                   write an artifact's files (streamed, verified)
  cp [-r] SRC DST [--platform P] [--referrers-from R] [--referrers-to R]
                                      copy an image or index (with -r: its referrers, recursively);
                                      SRC/DST: HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG|@DIGEST]
  tag REF NEWTAG                      point another tag at REF's manifest
  attach REF FILE[:MEDIATYPE]... --artifact-type TYPE [--annotation K=V]...
                                      push files as an artifact referring to REF
  discover REF [--artifact-type TYPE] [--depth N] [--format tree|json|table] [--verify]
                                      list what refers to REF (recursively; REF may be oci:DIR:TAG)
Common flags: --plain-http, --referrers-mode auto|api|tag, --force-referrers-tag, --format json,
  -q/--quiet (no progress or summaries), --concurrency N (parallel blob transfers per host, default 4),
  --chunked / --monolithic / --chunk-size SIZE (how blobs go up: by default one PUT below 128 MiB,
  32 MiB PATCH chunks from there, never smaller than the registry's OCI-Chunk-Min-Length)
Exit codes: 0 success, 1 failure (the message says what failed and what to do), 2 usage error`;

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
      const json = JSON.parse(bytes.toString()) as Record<string, unknown>;
      const digest = digestOf('sha256', bytes);
      // A manifest with a subject is also recorded in the fallback index where the registry needs it.
      await c.putManifestWithSubject(ref, ref.digest ?? ref.tag ?? 'latest', {
        descriptor: { mediaType, digest, size: bytes.length },
        bytes,
        json,
      });
      console.log(digest);
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
    const source = await fileSource(positionals[1]);
    await c.uploadBlob(ref, source);
    console.log(source.digest);
    return;
  }
  if (!ref.digest) throw new ConfigError(BLOB_USAGE);
  if (action === 'get') {
    const digest = ref.digest;
    if (!values.output) {
      await pipeline(await c.openBlob(ref, digest), process.stdout, { end: false });
      return;
    }
    // Written beside the target and renamed once verified, so a bad download never replaces a file.
    const temp = `${values.output}.tether-partial`;
    try {
      await pourToFile(temp, (sink) => c.readBlob(ref, digest, sink));
      await rename(temp, values.output);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
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

/** `PATH[:MEDIATYPE]` arguments; the files are streamed at upload time, not read here. */
async function artifactFiles(specs: string[]): Promise<ArtifactFile[]> {
  return Promise.all(
    specs.map(async (spec) => {
      const colon = spec.lastIndexOf(':');
      const path = colon > 0 && spec.slice(colon + 1).includes('/') ? spec.slice(0, colon) : spec;
      const mediaType = path === spec ? 'application/octet-stream' : spec.slice(colon + 1);
      const info = await stat(path).catch(() => undefined);
      if (!info?.isFile()) throw new ConfigError(`${path} is not a readable file`);
      return { mediaType, path, title: basename(path) };
    }),
  );
}

export function parseAnnotations(values: string[] | undefined): Record<string, string> {
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
  const progress = ProgressBars.forTerminal(values);
  const c = client(values, progress);
  const subject = values.subject
    ? await c.resolve(reference(values.subject, '--subject takes a reference'))
    : undefined;
  const descriptor = await c.pushArtifact(ref, {
    artifactType: values['artifact-type'],
    files: await artifactFiles(positionals.slice(1)),
    annotations: parseAnnotations(values.annotation),
    ...(subject ? { subject } : {}),
    tag: ref.tag ?? 'latest',
  });
  progress?.finish();
  if (values.format === 'json') console.log(JSON.stringify(descriptor, null, 2));
  else console.log(descriptor.digest);
}

const COPY_USAGE = `usage: tether cp [-r] SRC DST [--platform OS/ARCH[/VARIANT]] [--referrers-from REPO] [--referrers-to REPO]
  SRC, DST: HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG|@DIGEST] (also ocidir://DIR:TAG)`;

export async function copyCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON,
      recursive: { type: 'boolean', short: 'r' },
      platform: { type: 'string' },
      'referrers-from': { type: 'string' },
      'referrers-to': { type: 'string' },
    },
  });
  const progress = ProgressBars.forTerminal(values);
  const c = client(values, progress);
  const src = await target(positionals[0], COPY_USAGE, c, values, false);
  const dst = await target(positionals[1], COPY_USAGE, c, values, true);
  if (!src.reference) throw new ConfigError(`${positionals[0]}: say which image (:TAG or @DIGEST)`);
  const from = values['referrers-from']
    ? (await target(values['referrers-from'], COPY_USAGE, c, values, false)).target
    : undefined;
  const to = values['referrers-to']
    ? (await target(values['referrers-to'], COPY_USAGE, c, values, true)).target
    : undefined;
  // Like oras and regctl: with no tag on the destination, the source's tag is kept.
  const tag =
    dst.tag ?? (dst.reference ? undefined : tryParseDigest(src.reference) ? undefined : src.reference);
  let result: CopyResult;
  try {
    result = await copyGraph(src.target, src.reference, dst.target, tag, {
      referrers: values.recursive === true,
      ...(values.platform ? { platform: values.platform } : {}),
      ...(from ? { referrersSource: from } : {}),
      ...(to ? { referrersTarget: to } : {}),
      ...(progress ? { progress } : {}),
    });
  } finally {
    progress?.finish();
  }
  if (values.format === 'json') {
    console.log(JSON.stringify(result, null, 2));
    return;
  }
  if (!values.quiet) {
    const b = result.blobs;
    console.error(
      `copied ${src.target.name}@${result.root.digest} to ${dst.target.name}${tag ? `:${tag}` : ''}: ` +
        `${result.manifests.copied} manifests (${result.manifests.existed} there already), ` +
        `${b.transferred} blobs sent (${size(result.bytes)}), ${b.mounted} mounted, ${b.exists} there already` +
        (values.recursive ? `, ${result.referrers} referrers` : ''),
    );
  }
  console.log(result.root.digest);
}

export async function pullCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...COMMON, output: { type: 'string', short: 'o' } },
  });
  const ref = reference(positionals[0], 'usage: tether pull REF [-o DIR]');
  const progress = ProgressBars.forTerminal(values);
  let files: Descriptor[];
  try {
    files = await client(values, progress).pullArtifact(ref, values.output ?? '.');
  } finally {
    progress?.finish();
  }
  if (values.format === 'json') console.log(JSON.stringify(files, null, 2));
  else if (!values.quiet)
    for (const file of files)
      console.error(`${file.annotations?.['org.opencontainers.image.title']} (${size(file.size)})`);
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
  const files = await artifactFiles(positionals.slice(1));
  const progress = ProgressBars.forTerminal(values);
  const descriptor = await client(values, progress).attach(ref, artifactType, files, annotations);
  progress?.finish();
  if (values.format === 'json') console.log(JSON.stringify(descriptor, null, 2));
  else console.log(descriptor.digest);
}

interface Node extends Descriptor {
  referrers: Node[];
  /** With `--verify`, the verdict on a Notary signature. */
  verification?: string;
}

/** What a referrer is, for people: signatures, SBOMs and attestations by their well-known types. */
function kindOf(artifactType: string | undefined): string | undefined {
  if (!artifactType) return undefined;
  if (artifactType === NOTARY_SIGNATURE_ARTIFACT_TYPE) return 'signature';
  if (artifactType.startsWith('application/vnd.dev.sigstore.bundle')) return 'sigstore bundle';
  if (artifactType.startsWith('application/vnd.dev.cosign.artifact.sig')) return 'signature';
  if (/spdx|cyclonedx|syft/i.test(artifactType)) return 'sbom';
  if (/in-toto|intoto|attestation|provenance|slsa/i.test(artifactType)) return 'attestation';
  if (/vex/i.test(artifactType)) return 'vex';
  return undefined;
}

export async function discoverCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON,
      'artifact-type': { type: 'string' },
      depth: { type: 'string' },
      verify: { type: 'boolean' },
      'trust-policy': { type: 'string' },
      'trust-store': { type: 'string' },
    },
  });
  const usage = 'usage: tether discover REF   (HOST/REPO:TAG|@DIGEST or oci:DIR:TAG|@DIGEST)';
  const c = client(values);
  const { target: t, reference: at } = await target(positionals[0], usage, c, values, false);
  if (!at) throw new ConfigError(usage);
  // A digest needs no resolving: the subject may live elsewhere (a separate referrers repository).
  const root = tryParseDigest(at)
    ? await t.resolve(at).catch(() => ({ mediaType: '', digest: at, size: 0 }) as Descriptor)
    : await t.resolve(at);
  const depth = values.depth === undefined ? 8 : Number(values.depth);
  const seen = new Set<string>([root.digest]);
  // Recursive and loop-safe: referrers of referrers, each digest once.
  const walk = async (digest: string, level: number): Promise<Node[]> => {
    if (level >= depth) return [];
    const found = await t.referrers(digest, level === 0 ? values['artifact-type'] : undefined);
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
  if (values.verify) {
    // Notary signatures in the tree get their verdict (registry references only: the policy is per repository).
    if (!(t instanceof RegistryTarget)) throw new ConfigError('--verify works on registry references');
    // Loaded here, not with the module: ten modules of certificate and policy code that no other
    // client command needs (~5 ms of every command's start-up).
    const [{ firstFailure, loadTrustPolicy, verifySignatureManifest }, { defaultTrustStoreDir }] =
      await Promise.all([import('../sign/registry.ts'), import('../sign/trust-store.ts')]);
    const options = {
      policy: await loadTrustPolicy(values['trust-policy']),
      trustStoreDir: values['trust-store'] ?? defaultTrustStoreDir(),
    };
    const check = async (nodes: Node[], subject: Descriptor): Promise<void> => {
      for (const n of nodes) {
        if (n.artifactType === NOTARY_SIGNATURE_ARTIFACT_TYPE) {
          const outcome = await verifySignatureManifest(c, t.ref, subject, n, options);
          n.verification = outcome.result?.ok
            ? `verified (policy "${outcome.result.policyName}", signer ${outcome.result.signer})`
            : `NOT verified: ${outcome.skipped ?? firstFailure(outcome.result) ?? 'failed'}`;
        }
        await check(n.referrers, n);
      }
    };
    await check(tree, root);
  }
  if (values.format === 'table') {
    // One row per referrer, depth-first; SUBJECT says what each one refers to.
    const rows: string[][] = [
      ['DEPTH', 'DIGEST', 'ARTIFACT TYPE', 'SIZE', 'SUBJECT', ...(values.verify ? ['VERIFICATION'] : [])],
    ];
    const add = (nodes: Node[], subject: string, level: number) => {
      for (const n of nodes) {
        rows.push([
          String(level + 1),
          n.digest,
          n.artifactType ?? n.mediaType,
          String(n.size),
          subject,
          ...(values.verify ? [n.verification ?? ''] : []),
        ]);
        add(n.referrers, n.digest, level + 1);
      }
    };
    add(tree, root.digest, 0);
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const r of rows)
      console.log(
        r
          .map((cell, c) => cell.padEnd(widths[c]!))
          .join('  ')
          .trimEnd(),
      );
    return;
  }
  if (values.format !== undefined && values.format !== 'tree')
    throw new ConfigError('--format takes tree, json or table');
  console.log(`${t.name}@${root.digest}`);
  const print = (nodes: Node[], prefix: string) => {
    nodes.forEach((n, i) => {
      const last = i === nodes.length - 1;
      const kind = kindOf(n.artifactType);
      const verdict = n.verification
        ? `  ${n.verification.startsWith('verified') ? '✓' : '✗'} ${n.verification}`
        : '';
      console.log(
        `${prefix}${last ? '└── ' : '├── '}${kind ? `[${kind}] ` : ''}${n.artifactType ?? n.mediaType}  ${n.digest}${verdict}`,
      );
      print(n.referrers, `${prefix}${last ? '    ' : '│   '}`);
    });
  };
  print(tree, '');
}

export { ClientError };
