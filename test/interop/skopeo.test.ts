/**
 * Interop smoke test (registry-core): `skopeo copy` (Debian package) of OCI images into Tether and back
 * out to an OCI image layout directory, byte-identical.
 *
 * The source layouts are generated here (no network, no prebuilt images): real gzip-compressed tar
 * layers, a valid image config whose rootfs.diff_ids are the uncompressed tar digests, and manifests
 * serialized with non-canonical whitespace so any re-serialization anywhere on the path shows up.
 *
 * skopeo is required: if it is missing the test fails (it does not skip).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { type RunningRegistry, startRegistry } from '../../src/server/start.ts';
import { sha256 } from '../helpers/oci.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const REF_NAME = 'org.opencontainers.image.ref.name';
const SKOPEO_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------------------------------------------
// skopeo

interface SkopeoResult {
  stdout: Buffer;
  stderr: string;
}

let policyPath = '';

function skopeo(args: string[]): Promise<SkopeoResult> {
  const fullArgs = policyPath ? ['--policy', policyPath, ...args] : args;
  return new Promise((resolve, reject) => {
    // Asynchronous on purpose: the registry runs in this process, a synchronous exec would deadlock.
    execFile(
      'skopeo',
      fullArgs,
      {
        encoding: 'buffer',
        maxBuffer: 64 * 1024 * 1024,
        timeout: SKOPEO_TIMEOUT_MS,
        // Loopback only: never route the registry traffic through a proxy from the environment.
        env: { ...process.env, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' },
      },
      (err, stdout, stderr) => {
        if (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
            reject(
              new Error(
                'skopeo is not installed (not found on PATH). This interop test requires the Debian ' +
                  '`skopeo` package: `apt-get update && apt-get install -y skopeo` ' +
                  '(scripts/ensure-tools.sh installs it in CI).',
              ),
            );
            return;
          }
          reject(
            new Error(
              `skopeo ${fullArgs.join(' ')} failed (${err.killed ? 'timed out' : `exit ${err.code}`}):\n` +
                `${stderr.toString()}${stdout.toString()}`,
            ),
          );
          return;
        }
        resolve({ stdout, stderr: stderr.toString() });
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------------
// tar + OCI layout generation

interface TarEntry {
  name: string;
  /** Omitted for directories. */
  data?: Buffer;
  mode?: number;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0');
}

/** A minimal POSIX ustar archive (regular files and directories), as `tar` would write it. */
function tar(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  const mtime = 1_700_000_000;
  for (const entry of entries) {
    const isDir = entry.data === undefined;
    const data = entry.data ?? Buffer.alloc(0);
    const header = Buffer.alloc(512, 0);
    assert.ok(Buffer.byteLength(entry.name) <= 100, `tar entry name too long: ${entry.name}`);
    header.write(entry.name, 0, 100, 'utf8');
    header.write(octal(entry.mode ?? (isDir ? 0o755 : 0o644), 8), 100, 8, 'ascii');
    header.write(octal(0, 8), 108, 8, 'ascii'); // uid
    header.write(octal(0, 8), 116, 8, 'ascii'); // gid
    header.write(octal(data.length, 12), 124, 12, 'ascii');
    header.write(octal(mtime, 12), 136, 12, 'ascii');
    header.fill(0x20, 148, 156); // checksum field counts as spaces while summing
    header.write(isDir ? '5' : '0', 156, 1, 'ascii');
    header.write('ustar\0', 257, 6, 'binary');
    header.write('00', 263, 2, 'ascii');
    header.write('root', 265, 32, 'ascii');
    header.write('root', 297, 32, 'ascii');
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${octal(sum, 7)}\0 `, 148, 8, 'ascii');
    parts.push(header, data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(1024, 0)); // end-of-archive marker
  return Buffer.concat(parts);
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
}

/** Collects blobs for an OCI image layout and writes it out. */
class LayoutBuilder {
  readonly blobs = new Map<string, Buffer>();

  add(mediaType: string, bytes: Buffer, extra: Partial<Descriptor> = {}): Descriptor {
    const digest = sha256(bytes);
    this.blobs.set(digest, bytes);
    return { mediaType, digest, size: bytes.length, ...extra };
  }

  /** A gzip-compressed tar layer; returns its descriptor and diff_id (digest of the uncompressed tar). */
  layer(entries: TarEntry[]): { descriptor: Descriptor; diffId: string } {
    const raw = tar(entries);
    const descriptor = this.add(OCI_LAYER_GZIP, gzipSync(raw, { level: 6 }));
    return { descriptor, diffId: sha256(raw) };
  }

  /** An image config + manifest over `layers`; the manifest is pretty-printed (non-canonical bytes). */
  image(
    layers: { descriptor: Descriptor; diffId: string }[],
    platform: { architecture: string; os: string; variant?: string },
    annotations: Record<string, string>,
  ): { descriptor: Descriptor; bytes: Buffer } {
    const config = {
      created: '2024-01-02T03:04:05Z',
      architecture: platform.architecture,
      ...(platform.variant ? { variant: platform.variant } : {}),
      os: platform.os,
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Cmd: ['/bin/sh'],
        WorkingDir: '/',
        Labels: { 'org.example.tether': 'interop' },
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created: '2024-01-02T03:04:05Z', created_by: `layer ${i}` })),
    };
    const configDesc = this.add(OCI_CONFIG, Buffer.from(JSON.stringify(config)));
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: configDesc,
      layers: layers.map((l) => l.descriptor),
      annotations,
    };
    const bytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
    return { descriptor: this.add(OCI_MANIFEST, bytes, { platform }), bytes };
  }

  async write(dir: string, top: Descriptor, tag: string): Promise<void> {
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    for (const [digest, bytes] of this.blobs) {
      await writeFile(join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), bytes);
    }
    const { platform: _platform, ...desc } = top;
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ ...desc, annotations: { [REF_NAME]: tag } }],
    };
    await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  }
}

interface Layout {
  index: { schemaVersion: number; manifests: Descriptor[] };
  blobs: Map<string, Buffer>;
}

async function readLayout(dir: string): Promise<Layout> {
  const layoutFile = JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')) as Record<string, unknown>;
  assert.equal(layoutFile.imageLayoutVersion, '1.0.0', `${dir}/oci-layout`);
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as Layout['index'];
  const blobs = new Map<string, Buffer>();
  for (const name of await readdir(join(dir, 'blobs', 'sha256'))) {
    const bytes = await readFile(join(dir, 'blobs', 'sha256', name));
    assert.equal(sha256(bytes), `sha256:${name}`, `${dir}: blob content does not match its file name`);
    blobs.set(`sha256:${name}`, bytes);
  }
  return { index, blobs };
}

/** The copied layout must hold exactly the source blobs, byte for byte, and tag the same top manifest. */
function assertLayoutsIdentical(src: Layout, dst: Layout, top: Descriptor, tag: string): void {
  assert.equal(dst.index.schemaVersion, 2);
  const tagged = dst.index.manifests.filter((m) => m.annotations?.[REF_NAME] === tag);
  assert.equal(tagged.length, 1, `exactly one ${REF_NAME}=${tag} in DST index.json`);
  assert.equal(tagged[0]!.digest, top.digest, 'manifest digest in DST index.json');
  assert.equal(tagged[0]!.mediaType, top.mediaType, 'manifest media type in DST index.json');
  assert.equal(tagged[0]!.size, top.size, 'manifest size in DST index.json');
  assert.deepEqual([...dst.blobs.keys()].sort(), [...src.blobs.keys()].sort(), 'same set of blobs');
  for (const [digest, bytes] of src.blobs) {
    assert.ok(bytes.equals(dst.blobs.get(digest)!), `DST blob ${digest} differs from source bytes`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Registry-side checks over HTTP

async function assertManifestServed(
  base: string,
  repo: string,
  reference: string,
  bytes: Buffer,
  mediaType: string,
): Promise<void> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${reference}`, {
    headers: { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` },
  });
  assert.equal(res.status, 200, `GET manifest ${repo}:${reference}`);
  assert.equal(
    res.headers.get('docker-content-digest'),
    sha256(bytes),
    `Docker-Content-Digest of ${reference}`,
  );
  assert.equal(res.headers.get('content-type'), mediaType, `Content-Type of manifest ${reference}`);
  const body = Buffer.from(await res.arrayBuffer());
  assert.ok(body.equals(bytes), `manifest ${repo}:${reference} bytes served by Tether differ from source`);
}

async function assertBlobServed(base: string, repo: string, digest: string, bytes: Buffer): Promise<void> {
  const res = await fetch(`${base}/v2/${repo}/blobs/${digest}`);
  assert.equal(res.status, 200, `GET blob ${repo}@${digest}`);
  assert.equal(res.headers.get('docker-content-digest'), digest, `Docker-Content-Digest of blob ${digest}`);
  const body = Buffer.from(await res.arrayBuffer());
  assert.equal(body.length, bytes.length, `length of blob ${digest}`);
  assert.ok(body.equals(bytes), `blob ${digest} bytes served by Tether differ from source`);
}

async function assertRawInspect(host: string, ref: string, bytes: Buffer): Promise<void> {
  const { stdout } = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${host}/${ref}`]);
  assert.ok(
    stdout.equals(bytes),
    `skopeo inspect --raw docker://${host}/${ref} differs from the source manifest:\n${stdout.toString()}`,
  );
}

// ---------------------------------------------------------------------------------------------------

describe('skopeo interop (oci layout -> Tether -> oci layout)', { timeout: 600_000 }, () => {
  let work = '';
  let reg: RunningRegistry | undefined;

  before(async () => {
    // Fails (rather than skips) when skopeo is missing.
    const { stdout } = await skopeo(['--version']);
    process.stderr.write(`# ${stdout.toString().trim()}\n`);
    work = await mkdtemp(join(tmpdir(), 'tether-skopeo-'));
    policyPath = join(work, 'policy.json');
    await writeFile(policyPath, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    reg = await startRegistry({ storage: { data: join(work, 'data') } });
  });

  after(async () => {
    try {
      await reg?.close();
    } finally {
      if (work) await rm(work, { recursive: true, force: true });
    }
  });

  test('multi-layer image: skopeo copy --preserve-digests in and back out, byte-identical', async () => {
    const { host, url } = reg!;
    const repo = 'interop/skopeo';
    const tag = 'v1.0.0';
    const srcDir = join(work, 'image-src');
    const dstDir = join(work, 'image-dst');

    const b = new LayoutBuilder();
    const layers = [
      // Small: a few directories and text files.
      b.layer([
        { name: 'etc/' },
        { name: 'etc/os-release', data: Buffer.from('NAME="Tether interop"\nID=tether\n') },
        { name: 'etc/hostname', data: Buffer.from('tether\n') },
        { name: 'bin/' },
        { name: 'bin/hello', data: Buffer.from('#!/bin/sh\necho hello\n'), mode: 0o755 },
      ]),
      // Medium, compressible: ~300 KiB of text.
      b.layer([
        { name: 'usr/' },
        { name: 'usr/share/' },
        {
          name: 'usr/share/words.txt',
          data: Buffer.from(
            Array.from({ length: 20_000 }, (_, i) => `line ${i} of the tether skopeo interop test`).join(
              '\n',
            ),
          ),
        },
      ]),
      // Large, incompressible: 4 MiB of random data (so gzip output is ~4 MiB too).
      b.layer([{ name: 'opt/' }, { name: 'opt/random.bin', data: randomBytes(4 * 1024 * 1024) }]),
    ];
    const sizes = layers.map((l) => l.descriptor.size);
    assert.equal(new Set(sizes).size, 3, 'layers have different sizes');
    assert.ok(Math.max(...sizes) > 4_000_000, 'one layer is a few MB');
    const { descriptor: top, bytes: manifestBytes } = b.image(
      layers,
      { architecture: 'amd64', os: 'linux' },
      {
        'org.opencontainers.image.title': 'tether skopeo interop',
        'org.opencontainers.image.created': '2024-01-02T03:04:05Z',
        'org.example.tether.scenario': 'single-image',
      },
    );
    await b.write(srcDir, top, tag);
    const src = await readLayout(srcDir);

    await skopeo([
      'copy',
      '--preserve-digests',
      '--dest-tls-verify=false',
      `oci:${srcDir}:${tag}`,
      `docker://${host}/${repo}:${tag}`,
    ]);

    // Registry side: skopeo's view, then raw HTTP.
    await assertRawInspect(host, `${repo}:${tag}`, manifestBytes);
    await assertRawInspect(host, `${repo}@${top.digest}`, manifestBytes);
    await assertManifestServed(url, repo, tag, manifestBytes, OCI_MANIFEST);
    await assertManifestServed(url, repo, top.digest, manifestBytes, OCI_MANIFEST);
    for (const [digest, bytes] of src.blobs) {
      if (digest !== top.digest) await assertBlobServed(url, repo, digest, bytes);
    }
    const tags = JSON.parse(
      (await skopeo(['list-tags', '--tls-verify=false', `docker://${host}/${repo}`])).stdout.toString(),
    ) as { Tags: string[] };
    assert.deepEqual(tags.Tags, [tag]);

    await skopeo([
      'copy',
      '--preserve-digests',
      '--src-tls-verify=false',
      `docker://${host}/${repo}:${tag}`,
      `oci:${dstDir}:${tag}`,
    ]);
    assertLayoutsIdentical(src, await readLayout(dstDir), top, tag);
  });

  test('multi-platform index: skopeo copy --all --preserve-digests in and back out, byte-identical', async () => {
    const { host, url } = reg!;
    const repo = 'interop/skopeo-multiarch';
    const tag = 'multi';
    const srcDir = join(work, 'index-src');
    const dstDir = join(work, 'index-dst');

    const b = new LayoutBuilder();
    // A base layer shared by both platforms, plus one platform-specific layer each.
    const base = b.layer([
      { name: 'etc/' },
      { name: 'etc/os-release', data: Buffer.from('NAME="Tether interop multi"\n') },
    ]);
    const platforms = [
      { architecture: 'amd64', os: 'linux' },
      { architecture: 'arm64', os: 'linux', variant: 'v8' },
    ];
    const children = platforms.map((platform, i) => {
      const own = b.layer([
        { name: 'app/' },
        { name: `app/${platform.architecture}.bin`, data: randomBytes(256 * 1024 * (i + 1)) },
      ]);
      return b.image([base, own], platform, {
        'org.opencontainers.image.title': `tether interop ${platform.architecture}`,
      });
    });
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: children.map((c) => c.descriptor),
      annotations: { 'org.opencontainers.image.title': 'tether skopeo interop (multi-platform)' },
    };
    const indexBytes = Buffer.from(`${JSON.stringify(index, null, 2)}\n`);
    const top = b.add(OCI_INDEX, indexBytes);
    await b.write(srcDir, top, tag);
    const src = await readLayout(srcDir);

    await skopeo([
      'copy',
      '--all',
      '--preserve-digests',
      '--dest-tls-verify=false',
      `oci:${srcDir}:${tag}`,
      `docker://${host}/${repo}:${tag}`,
    ]);

    await assertRawInspect(host, `${repo}:${tag}`, indexBytes);
    await assertManifestServed(url, repo, tag, indexBytes, OCI_INDEX);
    await assertManifestServed(url, repo, top.digest, indexBytes, OCI_INDEX);
    const manifestDigests = new Set([top.digest]);
    for (const child of children) {
      manifestDigests.add(child.descriptor.digest);
      await assertRawInspect(host, `${repo}@${child.descriptor.digest}`, child.bytes);
      await assertManifestServed(url, repo, child.descriptor.digest, child.bytes, OCI_MANIFEST);
    }
    for (const [digest, bytes] of src.blobs) {
      if (!manifestDigests.has(digest)) await assertBlobServed(url, repo, digest, bytes);
    }

    await skopeo([
      'copy',
      '--all',
      '--preserve-digests',
      '--src-tls-verify=false',
      `docker://${host}/${repo}:${tag}`,
      `oci:${dstDir}:${tag}`,
    ]);
    assertLayoutsIdentical(src, await readLayout(dstDir), top, tag);
  });
});
