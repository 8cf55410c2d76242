import { readFile, rename, rm, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ParseArgsOptionsConfig } from 'node:util';
import {
  type ArtifactFile,
  attachArtifact,
  type PulledArtifact,
  pullArtifact,
  pushArtifact,
} from '../client/artifact.ts';
import { cleanPath, duplicateName } from '../client/artifact-paths.ts';
import { fileSource } from '../client/blob-source.ts';
import { ClientError, type FetchedManifest, type ReferrersMode, RegistryClient } from '../client/client.ts';
import { type CopyResult, copyGraph } from '../client/copy.ts';
import { DIRECTORY_MEDIA_TYPE } from '../client/directory-archive.ts';
import { getCredentials } from '../client/docker-config.ts';
import { pourToFile } from '../client/file-streams.ts';
import { type Endpoint, isLayoutReference, parseEndpoint } from '../client/reference.ts';
import { withScratch } from '../client/scratch.ts';
import { type ContentTarget, LayoutTarget, pourBlob, RegistryTarget } from '../client/target.ts';
import type { TlsSettings } from '../client/tls.ts';
import { ConfigError } from '../config-error.ts';
import { digestOf, tryParseDigest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';
import { MediaType } from '../oci/mediatypes.ts';
import { isValidRepositoryName, isValidTag } from '../oci/reference.ts';
import { NOTARY_SIGNATURE_ARTIFACT_TYPE } from '../sign/media-types.ts';
import type { SignatureOutcome } from '../sign/registry.ts';
import { type Arity, parseCommand } from './args.ts';
import { listNamespace } from './catalog.ts';
import { ProgressBars, size } from './progress.ts';
import {
  COPY_CREDENTIAL_FLAGS,
  COPY_TLS_FLAGS,
  CREDENTIAL_FLAGS,
  type CredentialValues,
  credentialsBySide,
  registryFlags,
  type Side,
  TLS_FLAGS,
  type TlsValues,
  tlsSettings,
  warnIfInsecure,
  warnIfPasswordFlags,
} from './registry-access.ts';

/** Flags every client command takes. */
const COMMON = {
  'plain-http': { type: 'boolean' },
  ...CREDENTIAL_FLAGS,
  ...TLS_FLAGS,
  'referrers-mode': { type: 'string' },
  'force-referrers-tag': { type: 'boolean' },
  format: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  concurrency: { type: 'string' },
  'chunk-size': { type: 'string' },
  chunked: { type: 'boolean' },
  monolithic: { type: 'boolean' },
} as const;

export interface CommonValues extends CredentialValues, TlsValues {
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
  if (Number(m[1]) === 0) throw new ConfigError(`${flag} takes a size above 0, got "${value}"`);
  return Number(m[1]) * unit;
}

/** The registries of a copy: `--from-*` flags are for the source's host, `--to-*` ones for the destination's. */
export interface CopySides {
  from: string | undefined;
  to: string | undefined;
}

/**
 * The client a command works with, from its flags (all checked, and a CA file read, before anything is
 * sent). `ends` are the command's references (both ends of a copy, a push's subject too): when none of
 * them is a registry, the credential and TLS flags would do nothing, so they are refused rather than
 * ignored (as `cp` refuses a `--from-*` or `--to-*` flag for a side that is a layout). For a copy,
 * `sides` names the hosts the `--from-*` and `--to-*` flags are for; any other host (of
 * `--referrers-from`, say) is reached as the flags without a side say.
 */
export async function client(
  values: CommonValues,
  ends: readonly Endpoint[],
  sides?: CopySides,
): Promise<RegistryClient> {
  const mode = values['referrers-mode'] ?? 'auto';
  if (!['auto', 'api', 'tag'].includes(mode))
    throw new ConfigError('--referrers-mode must be auto, api or tag');
  if (values.chunked && values.monolithic)
    throw new ConfigError('--chunked and --monolithic exclude each other');
  const concurrency = positiveInteger(values.concurrency, '--concurrency');
  const chunkSize = byteSize(values['chunk-size'], '--chunk-size');
  const layoutsOnly = ends.length > 0 && ends.every((end) => end.kind === 'layout');
  const unused = layoutsOnly ? registryFlags(values) : [];
  if (unused.length > 0) {
    const layouts = ends.map((end) => (end.kind === 'layout' ? `oci:${end.dir}` : ''));
    throw new ConfigError(
      layouts.length === 1
        ? `${unused[0]}: ${layouts[0]} is an OCI layout, not a registry`
        : `${unused[0]}: ${layouts.join(' and ')} are OCI layouts, not registries`,
    );
  }
  const tls: Record<Side, TlsSettings | undefined> = {
    '': await tlsSettings(values),
    'from-': sides ? await tlsSettings(values, 'from-') : undefined,
    'to-': sides ? await tlsSettings(values, 'to-') : undefined,
  };
  const credentials = await credentialsBySide(values);
  warnIfInsecure(values);
  warnIfPasswordFlags(values);
  const sideOf = (host: string): Side => {
    const name = host.toLowerCase();
    if (sides?.from?.toLowerCase() === name) return 'from-';
    return sides?.to?.toLowerCase() === name ? 'to-' : '';
  };
  return new RegistryClient({
    plainHttp: values['plain-http'] === true,
    // Credentials on the command line replace config.json (and its helpers) for their registries.
    credentials: async (host) => credentials[sideOf(host)] ?? getCredentials(host),
    tls: (host) => tls[sideOf(host)],
    referrersMode: mode as ReferrersMode,
    forceReferrersTag: values['force-referrers-tag'] === true,
    ...(concurrency ? { concurrency } : {}),
    ...(chunkSize ? { chunkSize } : {}),
    ...(values.chunked ? { chunked: true } : values.monolithic ? { chunked: false } : {}),
  });
}

/** A command's REF as written: a registry reference or an OCI layout. */
function endpoint(value: string | undefined, usage: string): Endpoint {
  if (!value) throw new ConfigError(usage);
  try {
    return parseEndpoint(value);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
}

/** A command's REF, opened: the repository or layout it names, and the tag and digest it gives. */
export interface OpenedReference {
  target: ContentTarget;
  /** What to read: the digest, else the tag, else `latest` (as everywhere in the Docker world). */
  reference: string;
  tag: string | undefined;
  digest: string | undefined;
}

/**
 * Opens a command's REF, the one way every client command does: `HOST/REPO[:TAG][@DIGEST]` is a
 * registry repository reached through `c`, `oci:DIR[:TAG][@DIGEST]` (or `ocidir://…`) an OCI image
 * layout, which `create` makes when it is not there yet (commands that write).
 */
async function open(
  at: Endpoint,
  c: RegistryClient,
  values: CommonValues,
  options: { create?: boolean } = {},
): Promise<OpenedReference> {
  const { tag, digest } = at.kind === 'registry' ? at.ref : at;
  const target =
    at.kind === 'registry'
      ? new RegistryTarget(c, at.ref)
      : await LayoutTarget.open(at.dir, {
          create: options.create === true,
          fallbackTag: values['referrers-mode'] === 'tag',
        });
  return { target, reference: digest ?? tag ?? 'latest', tag, digest };
}

/** The one REF of a command, opened (see `open`) with the client its flags make (see `client`). */
export async function openReference(
  value: string | undefined,
  usage: string,
  values: CommonValues,
  options: { create?: boolean } = {},
): Promise<OpenedReference> {
  const at = endpoint(value, usage);
  return open(at, await client(values, [at]), values, options);
}

/** The flags every client command takes, and what its exit status means (`tether help client`, `-h`). */
const COMMON_HELP = `Common flags: -u/--username USER with --password-stdin (or -p PASSWORD, which warns): credentials
  for the command's registries instead of those \`tether login\` stored (a password or token without -u
  is an identity token), --plain-http, --ca-file PEM (trust this CA too, for the registry and its
  token service), --insecure (do not verify TLS certificates: a warning says so); these credential
  and TLS flags are refused when every REF is an OCI layout; --referrers-mode auto|api|tag,
  --force-referrers-tag, --format json,
  -q/--quiet (no progress or summaries), --concurrency N (parallel blob transfers per host, default 4),
  --chunked / --monolithic / --chunk-size SIZE (how blobs go up: by default one PUT below 128 MiB,
  32 MiB PATCH chunks from there, never smaller than the registry's OCI-Chunk-Min-Length)
  -h/--help (print the command's usage and do nothing else)
Exit codes: 0 success, 1 failure (the message says what failed and what to do), 2 usage error,
  141 stdout was closed early (\`… | head\`), 70 a bug in tether`;

export const CLIENT_USAGE = `Client commands (any OCI registry; localhost, 127.0.0.0/8 and ::1 are asked in plain HTTP
first, over HTTPS once their port answers as TLS):
REF is HOST/REPO[:TAG][@DIGEST] on a registry, or oci:DIR[:TAG][@DIGEST] (also ocidir://DIR…) in an OCI
image layout; every command takes either (repo ls lists a registry's repositories only).
  resolve REF                         print the digest of a tag or digest reference
  manifest get|put|delete REF [FILE]  read, write or delete a manifest (digests verified); put takes
                                      --media-type TYPE (default: the file's mediaType, else OCI's)
  blob get|put|delete REF             read (-o FILE), upload or delete a blob
  repo ls HOST[/NAMESPACE] | repo tags REF
                                      list repositories (under NAMESPACE/, named relative to it) or tags
  push REF FILE|DIR[:TYPE]... --artifact-type TYPE [--annotation K=V] [--subject REF]
       [--disable-path-validation]    files titled by their relative paths (absolute ones refused),
                                      directories packed as gzipped tars, as oras does
  pull REF [-o DIR]                   write an artifact's files at their paths under DIR, unpack its
                                      directories (streamed, verified)
  cp [-r] SRC DST [--platform P] [--referrers-from R] [--referrers-to R]
                                      copy an image or index (with -r: its referrers, recursively)
  tag REF NEWTAG...                   point more tags at REF's manifest
  attach REF FILE|DIR[:MEDIATYPE]... --artifact-type TYPE [--annotation K=V]... [--disable-path-validation]
                                      push files as an artifact referring to REF
  discover REF [--artifact-type TYPE] [--depth N] [--format tree|json|table]
       [--verify [--scope S] [--trust-policy FILE] [--trust-store DIR]]
                                      list what refers to REF (recursively; an index's manifests too)
${COMMON_HELP}`;

/**
 * Parses a client command's arguments (see `parseCommand`): the common flags and the command's own;
 * `-h` prints the usage and the common flags.
 */
export function parseClientCommand<const O extends ParseArgsOptionsConfig>(
  argv: string[],
  usage: string,
  positionals: Arity | Record<string, Arity>,
  options: O,
) {
  return parseCommand(argv, {
    options: { ...COMMON, ...options },
    usage,
    help: `${usage}\n\n${COMMON_HELP}`,
    positionals,
  });
}

export async function resolveCommand(argv: string[]): Promise<void> {
  const usage = 'usage: tether resolve REF';
  const { values, positionals } = parseClientCommand(argv, usage, [1, 1], {});
  const { target, reference } = await openReference(positionals[0], usage, values);
  console.log((await target.resolve(reference)).digest);
}

const MANIFEST_USAGE = 'usage: tether manifest get REF | put REF FILE [--media-type TYPE] | delete REF';

export async function manifestCommand(argv: string[]): Promise<void> {
  const { values, action, positionals } = parseClientCommand(
    argv,
    MANIFEST_USAGE,
    { get: [1, 1], put: [2, 2], delete: [1, 1] },
    { 'media-type': { type: 'string' } },
  );
  const at = await openReference(positionals[0], MANIFEST_USAGE, values, {
    create: action === 'put',
  });
  switch (action) {
    case 'get': {
      const { bytes, descriptor } = await at.target.fetchManifest(at.reference);
      if (values.format === 'json')
        console.log(JSON.stringify({ descriptor, manifest: JSON.parse(bytes.toString()) }, null, 2));
      else process.stdout.write(bytes);
      return;
    }
    case 'put': {
      const file = positionals[1]!;
      const bytes = await readFile(file);
      let json: unknown;
      try {
        json = JSON.parse(bytes.toString());
      } catch (err) {
        // One line: the parser quotes the text around the mistake, line breaks and all.
        throw new ClientError(
          `${file} is not a JSON manifest: ${(err as Error).message.replace(/\s+/g, ' ')}`,
        );
      }
      if (typeof json !== 'object' || json === null || Array.isArray(json))
        throw new ClientError(`${file} is not a JSON manifest: not a JSON object`);
      const mediaType =
        values['media-type'] ?? (json as { mediaType?: string }).mediaType ?? MediaType.ociManifest;
      const digest = digestOf(at.digest ? tryParseDigest(at.digest)!.algorithm : 'sha256', bytes);
      // Checked before anything is stored (a registry would refuse it; a layout would not).
      if (at.digest && at.digest !== digest)
        throw new ClientError(`${file} hashes to ${digest}, not to ${at.digest}`);
      const manifest: FetchedManifest = {
        descriptor: { mediaType, digest, size: bytes.length },
        bytes,
        json: json as Record<string, unknown>,
      };
      // By digest first: a manifest with a subject is also recorded where referrers are looked up
      // (the fallback index, where the registry needs one). Then the tag, `latest` unless a digest alone
      // was named.
      await at.target.pushManifest(manifest);
      const tag = at.tag ?? (at.digest ? undefined : 'latest');
      if (tag) await at.target.tag(manifest, tag);
      console.log(digest);
      return;
    }
    case 'delete':
      console.log(await at.target.deleteManifest(at.reference));
      return;
  }
}

const BLOB_USAGE = 'usage: tether blob get REF@DIGEST [-o FILE] | put REF FILE | delete REF@DIGEST';

export async function blobCommand(argv: string[]): Promise<void> {
  const { values, action, positionals } = parseClientCommand(
    argv,
    BLOB_USAGE,
    { get: [1, 1], put: [2, 2], delete: [1, 1] },
    { output: { type: 'string', short: 'o' } },
  );
  const at = await openReference(positionals[0], BLOB_USAGE, values, {
    create: action === 'put',
  });
  if (action === 'put') {
    const source = await fileSource(positionals[1]!);
    const descriptor = { mediaType: 'application/octet-stream', digest: source.digest, size: source.size };
    await at.target.pushBlob(descriptor, source);
    console.log(source.digest);
    return;
  }
  if (!at.digest) throw new ConfigError(BLOB_USAGE);
  const blob = { digest: at.digest };
  if (action === 'get') {
    if (!values.output) {
      await pipeline(await at.target.openBlob(blob), process.stdout, { end: false });
      return;
    }
    // Written beside the target and renamed once verified, so a bad download never replaces a file.
    const temp = `${values.output}.tether-partial`;
    const output = values.output;
    await withScratch(temp, async () => {
      try {
        await pourToFile(temp, (sink) => pourBlob(at.target, blob, sink));
        await rename(temp, output);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
    });
  } else await at.target.deleteBlob(at.digest);
}

export async function repoCommand(argv: string[]): Promise<void> {
  const usage = 'usage: tether repo ls HOST[/NAMESPACE] | tether repo tags REF';
  const { values, action, positionals } = parseClientCommand(argv, usage, { ls: [1, 1], tags: [1, 1] }, {});
  const named = positionals[0]!;
  let list: string[];
  if (action === 'tags') list = await (await openReference(named, usage, values)).target.tags();
  else {
    if (isLayoutReference(named))
      throw new ConfigError(
        `repo ls lists a registry's repositories; an OCI layout holds one: list its tags with "tether repo tags ${named}"`,
      );
    // Like oras: `repo ls HOST/NS` lists the repositories under NS/, named relative to it.
    const slash = named.indexOf('/');
    const namespace = slash < 0 ? '' : named.slice(slash + 1).replace(/\/+$/, '');
    const host = slash < 0 ? named : named.slice(0, slash);
    if (namespace && !isValidRepositoryName(namespace))
      throw new ConfigError(`"${namespace}" is not a valid repository namespace`);
    const c = await client(values, []);
    list = namespace ? await listNamespace(c.http(host), namespace) : await c.listRepositories(host);
  }
  if (values.format === 'json') console.log(JSON.stringify(list));
  else for (const item of list) console.log(item);
}

/**
 * `PATH[:MEDIATYPE]` arguments; the files are streamed at upload time, not read here, and a directory is
 * packed then (as oras packs one: a gzipped tar that pulls unpack). Each is titled by
 * its path as given, cleaned (`./d//y.txt` is `d/y.txt`), as oras titles them, so files of the same name
 * in different directories stay apart and a pull recreates the tree. An absolute path is refused unless
 * `allowAbsolute` (oras's `--disable-path-validation`): pullers refuse to write such a title.
 */
async function artifactFiles(specs: string[], allowAbsolute: boolean): Promise<ArtifactFile[]> {
  const files = await Promise.all(
    specs.map(async (spec) => {
      const colon = spec.lastIndexOf(':');
      const path = colon > 0 && spec.slice(colon + 1).includes('/') ? spec.slice(0, colon) : spec;
      const title = cleanPath(path);
      if (isAbsolute(title) && !allowAbsolute)
        throw new ConfigError(
          `${path}: an absolute path (pulls refuse to write it); name the file by a relative path, or add --disable-path-validation`,
        );
      const info = await stat(path).catch(() => undefined);
      const directory = info?.isDirectory() === true;
      if (!directory && !info?.isFile()) throw new ConfigError(`${path} is not a readable file or directory`);
      const mediaType =
        path !== spec ? spec.slice(colon + 1) : directory ? DIRECTORY_MEDIA_TYPE : 'application/octet-stream';
      return { mediaType, path, title, ...(directory ? { directory } : {}) };
    }),
  );
  const duplicate = duplicateName(files.map((file) => file.title));
  if (duplicate) throw new ConfigError(`${duplicate}: duplicate name`);
  return files;
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
  const usage = 'usage: tether push REF FILE|DIR[:TYPE]... --artifact-type TYPE [--disable-path-validation]';
  const { values, positionals } = parseClientCommand(argv, usage, [1, Infinity], {
    'artifact-type': { type: 'string' },
    annotation: { type: 'string', multiple: true },
    subject: { type: 'string' },
    'disable-path-validation': { type: 'boolean' },
  });
  const ref = endpoint(positionals[0], usage);
  const subjectRef = values.subject ? endpoint(values.subject, '--subject takes a reference') : undefined;
  const c = await client(values, subjectRef ? [ref, subjectRef] : [ref]);
  // Checked before the layout is made or anything is sent.
  const files = await artifactFiles(positionals.slice(1), values['disable-path-validation'] === true);
  const at = await open(ref, c, values, { create: true });
  // The digest is the pushed manifest's, known only once it is built: one named in advance would be
  // ignored (and `latest` moved instead), so it is refused before anything is sent.
  if (at.digest)
    throw new ConfigError(
      `${positionals[0]}: push takes a tag, not a digest (the digest is that of the manifest pushed)\n${usage}`,
    );
  if (!values['artifact-type']) throw new ConfigError('--artifact-type is required');
  let subject: Descriptor | undefined;
  if (subjectRef) {
    const named = await open(subjectRef, c, values);
    subject = await named.target.resolve(named.reference);
  }
  const progress = ProgressBars.forTerminal(values);
  let descriptor: Descriptor;
  try {
    descriptor = await pushArtifact(at.target, {
      artifactType: values['artifact-type'],
      files,
      annotations: parseAnnotations(values.annotation),
      ...(subject ? { subject } : {}),
      tag: at.tag ?? 'latest',
      ...(progress ? { progress } : {}),
    });
  } finally {
    progress?.finish();
  }
  if (values.format === 'json') console.log(JSON.stringify(descriptor, null, 2));
  else console.log(descriptor.digest);
}

const COPY_USAGE = `usage: tether cp [-r] SRC DST [--platform OS/ARCH[/VARIANT]] [--referrers-from REF] [--referrers-to REF]
  SRC, DST: HOST/REPO[:TAG][@DIGEST] or oci:DIR[:TAG][@DIGEST] (also ocidir://DIR:TAG)
  --from-username U, --from-password P, --from-ca-file PEM, --from-insecure, and the same with --to-:
  for the source's or the destination's registry only, in place of -u/-p/--ca-file, which are for
  both (--insecure too); --password-stdin gives the password of the one user name given without one`;

/** `os/arch[/variant]`, as `--platform` takes it. */
const PLATFORM = /^[^/\s]+\/[^/\s]+(\/[^/\s]+)?$/;

/**
 * The hosts `--from-*` and `--to-*` flags are for. A flag for a side that is a layout, or for one side
 * of a copy within one registry (where both sides share connections and credentials), would do
 * nothing, so it is refused rather than ignored.
 */
function copySides(values: Record<string, unknown>, from: Endpoint, to: Endpoint): CopySides {
  const given = (side: Side) =>
    Object.keys(values).filter((flag) => flag.startsWith(side) && values[flag] !== undefined);
  for (const [side, end, name] of [
    ['from-', from, 'the source'],
    ['to-', to, 'the destination'],
  ] as const) {
    const flags = given(side);
    if (flags.length > 0 && end.kind === 'layout')
      throw new ConfigError(`--${flags[0]}: ${name} is an OCI layout, not a registry`);
  }
  const fromHost = from.kind === 'registry' ? from.ref.host : undefined;
  const toHost = to.kind === 'registry' ? to.ref.host : undefined;
  const sided = [...given('from-'), ...given('to-')];
  if (fromHost && toHost && fromHost.toLowerCase() === toHost.toLowerCase() && sided.length > 0)
    throw new ConfigError(
      `--${sided[0]}: the source and destination are one registry (${fromHost}); give the flag without from-/to-`,
    );
  return { from: fromHost, to: toHost };
}

export async function copyCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseClientCommand(argv, COPY_USAGE, [2, 2], {
    ...COPY_CREDENTIAL_FLAGS,
    ...COPY_TLS_FLAGS,
    recursive: { type: 'boolean', short: 'r' },
    platform: { type: 'string' },
    'referrers-from': { type: 'string' },
    'referrers-to': { type: 'string' },
  });
  if (values.platform !== undefined && !PLATFORM.test(values.platform))
    throw new ConfigError(`--platform takes OS/ARCH[/VARIANT] (linux/arm64/v8), got "${values.platform}"`);
  const from = endpoint(positionals[0], COPY_USAGE);
  const to = endpoint(positionals[1], COPY_USAGE);
  const referrersFrom = values['referrers-from'] ? endpoint(values['referrers-from'], COPY_USAGE) : undefined;
  const referrersTo = values['referrers-to'] ? endpoint(values['referrers-to'], COPY_USAGE) : undefined;
  const ends = [from, to, ...(referrersFrom ? [referrersFrom] : []), ...(referrersTo ? [referrersTo] : [])];
  const c = await client(values, ends, copySides(values, from, to));
  const progress = ProgressBars.forTerminal(values);
  const src = await open(from, c, values);
  const dst = await open(to, c, values, { create: true });
  // A copy keeps the digest, so a digest on the destination can only confirm the source's: checked
  // before anything is copied. With --platform the copied image is the platform's, not the source's:
  // name it on the source instead (SRC@DIGEST).
  let at = src.reference;
  if (dst.digest) {
    if (values.platform)
      throw new ConfigError(
        `${positionals[1]}: a destination digest cannot be combined with --platform; copy SRC@DIGEST of the platform's image instead`,
      );
    at = (await src.target.resolve(src.reference)).digest;
    if (at !== dst.digest)
      throw new ClientError(
        `${positionals[1]}: the source ${src.target.name}@${at} has another digest, and a copy keeps the digest`,
      );
  }
  const referrersSource = referrersFrom ? (await open(referrersFrom, c, values)).target : undefined;
  const referrersTarget = referrersTo
    ? (await open(referrersTo, c, values, { create: true })).target
    : undefined;
  // Like oras and regctl: with no tag on the destination, the source's tag is kept (a destination
  // named by digest alone gets none).
  const tag = dst.tag ?? (dst.digest ? undefined : src.digest ? undefined : src.reference);
  let result: CopyResult;
  try {
    result = await copyGraph(src.target, at, dst.target, tag, {
      referrers: values.recursive === true,
      ...(values.platform ? { platform: values.platform } : {}),
      ...(referrersSource ? { referrersSource } : {}),
      ...(referrersTarget ? { referrersTarget } : {}),
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
  const usage = 'usage: tether pull REF [-o DIR]';
  const { values, positionals } = parseClientCommand(argv, usage, [1, 1], {
    output: { type: 'string', short: 'o' },
  });
  const { target, reference } = await openReference(positionals[0], usage, values);
  const progress = ProgressBars.forTerminal(values);
  let pulled: PulledArtifact;
  try {
    pulled = await pullArtifact(target, reference, values.output ?? '.', progress ? { progress } : {});
  } finally {
    progress?.finish();
  }
  if (values.format === 'json') console.log(JSON.stringify(pulled.files, null, 2));
  else if (!values.quiet)
    for (const file of pulled.files)
      console.error(`${file.annotations?.['org.opencontainers.image.title']} (${size(file.size)})`);
  // Said even with -q: it explains why fewer files (or none) arrived than the manifest holds.
  if (pulled.skipped.length) console.error(skippedNote(positionals[0]!, pulled));
}

/** Why a pull wrote less than the manifest holds, and what copies all of it (as oras says it). */
function skippedNote(ref: string, { manifest, skipped }: PulledArtifact): string {
  const hint = `to copy all of it, use: tether cp ${ref} oci:DIR`;
  if (manifest.mediaType === MediaType.ociIndex || manifest.mediaType === MediaType.dockerManifestList)
    return `skipped the ${plural(skipped.length, 'manifest')} of the index ${ref} (pull writes an artifact's files); ${hint}`;
  return `skipped ${plural(skipped.length, 'layer')} without a file name (no org.opencontainers.image.title annotation); ${hint}`;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

export async function tagCommand(argv: string[]): Promise<void> {
  const usage = 'usage: tether tag REF NEWTAG...';
  const { values, positionals } = parseClientCommand(argv, usage, [2, Infinity], {});
  const [source, ...tags] = positionals;
  const at = await openReference(source, usage, values);
  // All checked before the first is set, so a typo in the third tag does not leave two of three set.
  for (const t of tags) if (!isValidTag(t)) throw new ConfigError(`"${t}" is not a valid tag`);
  // Read once: every tag gets the manifest the first one got, even if REF's tag moves meanwhile.
  const manifest = await at.target.fetchManifest(at.reference);
  for (const t of tags) {
    await at.target.tag(manifest, t);
    console.error(`tagged ${at.target.name}:${t} -> ${manifest.descriptor.digest}`);
  }
}

export async function attachCommand(argv: string[]): Promise<void> {
  const usage =
    'usage: tether attach REF FILE|DIR[:MEDIATYPE]... --artifact-type TYPE [--annotation K=V]... [--disable-path-validation]';
  const { values, positionals } = parseClientCommand(argv, usage, [1, Infinity], {
    'artifact-type': { type: 'string' },
    annotation: { type: 'string', multiple: true },
    'disable-path-validation': { type: 'boolean' },
  });
  const at = await openReference(positionals[0], usage, values);
  const artifactType = values['artifact-type'];
  if (!artifactType) throw new ConfigError('--artifact-type is required');
  const annotations = parseAnnotations(values.annotation);
  const files = await artifactFiles(positionals.slice(1), values['disable-path-validation'] === true);
  const progress = ProgressBars.forTerminal(values);
  let descriptor: Descriptor;
  try {
    descriptor = await attachArtifact(at.target, at.reference, {
      artifactType,
      files,
      annotations,
      ...(progress ? { progress } : {}),
    });
  } finally {
    progress?.finish();
  }
  if (values.format === 'json') console.log(JSON.stringify(descriptor, null, 2));
  else console.log(descriptor.digest);
}

interface Node extends Descriptor {
  /** An index's manifests, each with its own referrers (and, for an index, its manifests). */
  manifests?: Node[];
  referrers: Node[];
  /** With `--verify`, the verdict on a Notary signature. */
  verification?: string;
  /**
   * Set on an index's manifest that is an index itself and is not stored (a mirror that copied some
   * platforms): its referrers are still listed, its manifests cannot be.
   */
  absent?: true;
}

/** A node the tree may start from: a subject that is absent has no media type or size to show. */
type SubjectNode = Omit<Node, 'mediaType' | 'size'>;

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

const isIndex = (d: Descriptor) =>
  d.mediaType === MediaType.ociIndex || d.mediaType === MediaType.dockerManifestList;

/** `linux/arm64/v8` from an index entry's `platform`. */
function platformOf(descriptor: Descriptor): string | undefined {
  const p = descriptor.platform as { os?: string; architecture?: string; variant?: string } | undefined;
  if (!p?.os || !p.architecture) return undefined;
  return [p.os, p.architecture, ...(p.variant ? [p.variant] : [])].join('/');
}

export async function discoverCommand(argv: string[]): Promise<void> {
  const usage =
    'usage: tether discover REF [--artifact-type TYPE] [--depth N] [--format tree|json|table]\n' +
    '                           [--verify [--scope SCOPE] [--trust-policy FILE] [--trust-store DIR]]\n' +
    '  REF: HOST/REPO:TAG|@DIGEST or oci:DIR:TAG|@DIGEST';
  const { values, positionals } = parseClientCommand(argv, usage, [1, 1], {
    'artifact-type': { type: 'string' },
    depth: { type: 'string' },
    verify: { type: 'boolean' },
    'trust-policy': { type: 'string' },
    'trust-store': { type: 'string' },
    scope: { type: 'string' },
  });
  const format = values.format ?? 'tree';
  if (!['tree', 'json', 'table'].includes(format))
    throw new ConfigError('--format takes tree, json or table');
  const depth = positiveInteger(values.depth, '--depth') ?? 8;
  const at = await openReference(positionals[0], usage, values);
  const t = at.target;
  if (values.verify) checkScopeFlag(t, values.scope);
  else if (values.scope !== undefined) throw new ConfigError('--scope goes with --verify');
  // A subject named by digest may be absent: the spec lets referrers name a manifest the repository
  // does not hold (yet, or at all). That is shown, not hidden: with referrers they are listed under a
  // note, without any the digest is reported not found (a typo must not look like "no referrers").
  const present = at.digest === undefined || (await t.hasManifest(at.digest));
  const root = present ? await t.resolve(at.reference) : undefined;
  const subject = root?.digest ?? at.digest!;
  const seen = new Set<string>([subject]);
  // Referrers of referrers, and the manifests of every index with theirs, each digest once (loop-safe).
  // A referrer is a level of --depth; an index's manifest is part of its subject, so it is not, and
  // --artifact-type filters a subject's own referrers and those of its manifests alike.
  const referrersOf = async (digest: string, level: number): Promise<Node[]> => {
    if (level >= depth) return [];
    const found = await t.referrers(digest, level === 0 ? values['artifact-type'] : undefined);
    const nodes: Node[] = [];
    for (const d of found) {
      if (seen.has(d.digest)) continue;
      seen.add(d.digest);
      nodes.push(await nodeOf(d, level + 1));
    }
    return nodes;
  };
  const nodeOf = async (d: Descriptor, level: number): Promise<Node> => {
    const referrers = await referrersOf(d.digest, level);
    if (!isIndex(d)) return { ...d, referrers };
    const fetched = await t.fetchManifest(d.digest).catch(async (err: unknown) => {
      // Only an index that is not there is shown as such; any other failure (one that does not match
      // its digest, a registry error) still ends the command.
      if (await t.hasManifest(d.digest).catch(() => true)) throw err;
      return undefined;
    });
    if (!fetched) return { ...d, absent: true, referrers };
    const { json } = fetched;
    const manifests: Node[] = [];
    for (const child of (Array.isArray(json.manifests) ? json.manifests : []) as Descriptor[]) {
      if (typeof child?.digest !== 'string' || seen.has(child.digest)) continue;
      seen.add(child.digest);
      manifests.push(await nodeOf(child, level));
    }
    return { ...d, manifests, referrers };
  };
  const tree: SubjectNode = root
    ? await nodeOf(root, 0)
    : { digest: subject, referrers: await referrersOf(subject, 0) };
  if (!root) {
    const referred = tree.referrers.length > 0 || (await t.referrers(subject)).length > 0;
    if (!referred)
      throw new ClientError(`${positionals[0]}: not found (no such manifest, and nothing refers to it)`);
    console.error(`note: ${subject} itself is not in ${t.name}; what refers to it there is listed`);
  }
  if (values.verify) {
    // Loaded here, not with the module: ten modules of certificate and policy code that no other
    // client command needs (~5 ms of every command's start-up).
    const [{ firstFailure, loadTrustPolicy, verifySignatureManifest }, { defaultTrustStoreDir }] =
      await Promise.all([import('../sign/registry.ts'), import('../sign/trust-store.ts')]);
    const options = {
      policy: await loadTrustPolicy(values['trust-policy']),
      trustStoreDir: values['trust-store'] ?? defaultTrustStoreDir(),
      ...(values.scope ? { scope: values.scope } : {}),
    };
    const check = async (n: SubjectNode, signed: Descriptor | undefined) => {
      for (const r of n.referrers) {
        if (r.artifactType === NOTARY_SIGNATURE_ARTIFACT_TYPE) {
          const outcome: SignatureOutcome = signed
            ? await verifySignatureManifest(t, signed, r, options)
            : { digest: r.digest, skipped: `the signed manifest ${n.digest} is not in ${t.name}` };
          r.verification = outcome.result?.ok
            ? `verified (policy "${outcome.result.policyName}", signer ${outcome.result.signer})`
            : `NOT verified: ${outcome.skipped ?? firstFailure(outcome.result) ?? 'failed'}`;
        }
        await check(r, r);
      }
      for (const m of n.manifests ?? []) await check(m, m);
    };
    await check(tree, root);
  }
  if (format === 'json') {
    // An absent subject has no media type or size to show. With --verify, each Notary signature
    // carries the table's VERIFICATION text as `verification`.
    console.log(JSON.stringify(referenced(tree, t.name), null, 2));
    return;
  }
  if (format === 'table') {
    // One row per referrer, depth-first (a subject's referrers, then its manifests'); SUBJECT says
    // what each one refers to.
    const rows: string[][] = [
      ['DEPTH', 'DIGEST', 'ARTIFACT TYPE', 'SIZE', 'SUBJECT', ...(values.verify ? ['VERIFICATION'] : [])],
    ];
    const add = (n: SubjectNode, level: number) => {
      for (const r of n.referrers) {
        rows.push([
          String(level + 1),
          r.digest,
          r.artifactType ?? r.mediaType,
          String(r.size),
          n.digest,
          ...(values.verify ? [r.verification ?? ''] : []),
        ]);
        add(r, level + 1);
      }
      for (const m of n.manifests ?? []) add(m, level);
    };
    add(tree, 0);
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
  console.log(`${t.name}@${subject}`);
  printTree(treeLines(tree), '');
}

/**
 * A discover node for `--format json` as oras shapes it: each node, the root too, led by its
 * `reference` (`HOST/REPO@DIGEST` or `oci:DIR@DIGEST`), so a script can take any node's reference and
 * use it as it is.
 */
function referenced(n: SubjectNode, name: string): object {
  return {
    reference: `${name}@${n.digest}`,
    ...n,
    referrers: n.referrers.map((r) => referenced(r, name)),
    ...(n.manifests ? { manifests: n.manifests.map((m) => referenced(m, name)) } : {}),
  };
}

/** A line of the discover tree and the lines under it. */
interface TreeLine {
  text: string;
  below: TreeLine[];
}

/**
 * Under each node, as oras draws it: its annotations (`[annotations]`, one `key: value` each), its
 * referrers, then, for an index, its manifests (`[manifest linux/amd64]`) with their own referrers.
 * The subject's own annotations are not repeated.
 */
function treeLines(n: SubjectNode, withAnnotations = false): TreeLine[] {
  const annotations = withAnnotations ? Object.entries(n.annotations ?? {}) : [];
  const verdict = (r: Node) =>
    r.verification ? `  ${r.verification.startsWith('verified') ? '✓' : '✗'} ${r.verification}` : '';
  return [
    ...(annotations.length
      ? [
          {
            text: '[annotations]',
            below: annotations.map(([k, v]) => ({
              text: `${k}: ${/[\r\n]/.test(v) ? JSON.stringify(v) : v}`,
              below: [],
            })),
          },
        ]
      : []),
    ...n.referrers.map((r) => {
      const kind = kindOf(r.artifactType);
      return {
        text: `${kind ? `[${kind}] ` : ''}${r.artifactType ?? r.mediaType}  ${r.digest}${verdict(r)}`,
        below: treeLines(r, true),
      };
    }),
    ...(n.manifests ?? []).map((m) => {
      const platform = platformOf(m);
      return {
        text: `[manifest${platform ? ` ${platform}` : ''}] ${m.mediaType}  ${m.digest}${m.absent ? '  (not stored here)' : ''}`,
        below: treeLines(m, true),
      };
    }),
  ];
}

function printTree(lines: TreeLine[], prefix: string): void {
  lines.forEach((line, i) => {
    const last = i === lines.length - 1;
    console.log(`${prefix}${last ? '└── ' : '├── '}${line.text}`);
    printTree(line.below, `${prefix}${last ? '    ' : '│   '}`);
  });
}

/**
 * Verification's `--scope`, as notation has it: a registry reference is judged under its own HOST/REPO,
 * so --scope is refused there; a layout has no such name, so --scope must give the one its trust policy
 * is selected by.
 */
export function checkScopeFlag(t: ContentTarget, scope: string | undefined): void {
  if (t instanceof RegistryTarget && scope !== undefined)
    throw new ConfigError(
      '--scope is for OCI layouts; a registry reference is verified under its own HOST/REPO scope',
    );
  if (!(t instanceof RegistryTarget) && scope === undefined)
    throw new ConfigError(
      `${t.name} is an OCI layout: name the trust policy scope to verify it under with --scope REGISTRY/REPOSITORY (as notation's --scope)`,
    );
}

export { ClientError };
