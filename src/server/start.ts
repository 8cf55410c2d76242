import { join, resolve } from 'node:path';
import { type Logger, pino } from 'pino';
import { loadConfig, parseListen, type TetherConfig } from '../config.ts';
import { Registry } from '../registry/registry.ts';
import { FsBlobStore } from '../storage/blob/fs.ts';
import { MemoryBlobStore } from '../storage/blob/memory.ts';
import type { BlobStore } from '../storage/blob/types.ts';
import { DataDirectoryLock } from '../storage/data-lock.ts';
import { SqliteMetaStore } from '../storage/meta/sqlite.ts';
import type { MetaStore } from '../storage/meta/types.ts';
import { listen } from './app.ts';
import { Authorizer } from './auth.ts';

export interface RunningRegistry {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** `host:port`, the form registry clients take (`${host}/repo:tag`). */
  host: string;
  config: TetherConfig;
  registry: Registry;
  /** Graceful stop: no new connections, in-flight requests finish, stores close. */
  close(): Promise<void>;
}

interface Stores {
  blobs: BlobStore;
  meta: MetaStore;
  /** Held while a store lives in the data directory (see DataDirectoryLock). */
  lock: DataDirectoryLock | undefined;
}

async function openStores(config: TetherConfig): Promise<Stores> {
  const data = resolve(config.data);
  const onDisk = config.storage.blobs !== 'memory' || config.storage.meta !== 'memory';
  // First of all: nothing in the directory is touched while another server uses it.
  const lock = onDisk ? DataDirectoryLock.acquire(data) : undefined;
  let blobs: BlobStore | undefined;
  try {
    blobs =
      config.storage.blobs === 'memory'
        ? new MemoryBlobStore()
        : await FsBlobStore.open(data, { fsync: config.storage.fsync });
    const meta = new SqliteMetaStore({
      path: config.storage.meta === 'memory' ? ':memory:' : join(data, 'meta.db'),
      synchronous: config.storage.sqliteSynchronous,
    });
    return { blobs, meta, lock };
  } catch (err) {
    await blobs?.close();
    lock?.release();
    throw err;
  }
}

/** Opens the stores named by `config`, starts the HTTP server and the upload sweeper. */
export async function startServer(config: TetherConfig, log: Logger): Promise<RunningRegistry> {
  const { blobs, meta, lock } = await openStores(config);
  const registry = new Registry(blobs, meta, log, {
    deleteEnabled: config.delete.enabled,
    manifestMaxBytes: config.limits.manifestMaxBytes,
    blobMaxBytes: config.limits.blobMaxBytes,
    automaticMount: config.uploads.automaticMount,
    uploadTtlMs: config.uploads.ttlSeconds * 1000,
    maxUploadSessions: config.uploads.maxSessions,
    pageSizeMax: config.limits.pageSizeMax,
    mergeFallbackTags: config.referrers.mergeFallbackTags,
    serveFallbackTags: config.referrers.serveFallbackTags,
    defaultPolicy: {
      subjectPolicy: config.referrers.subjectPolicy,
      onSubjectDelete: config.referrers.onSubjectDelete,
    },
    policyRules: config.referrers.policies,
  });
  const { host, port } = parseListen(config.listen);
  let http: Awaited<ReturnType<typeof listen>>;
  try {
    const auth = await Authorizer.create(config, log);
    const tls =
      config.tls.cert && config.tls.key ? { cert: config.tls.cert, key: config.tls.key } : undefined;
    const limits = {
      maxConnections: config.limits.maxConnections,
      headersTimeoutMs: config.limits.headersTimeoutSeconds * 1000,
      bodyIdleMs: config.limits.bodyIdleSeconds * 1000,
      bodyTimeoutMs: config.limits.bodyTimeoutSeconds * 1000,
      sendIdleMs: config.limits.sendIdleSeconds * 1000,
    };
    http = await listen(registry, log, {
      host,
      port,
      limits,
      ...(auth ? { auth } : {}),
      ...(tls ? { tls } : {}),
    });
  } catch (err) {
    await registry.close();
    lock?.release();
    throw err;
  }
  registry.startMaintenance();
  return {
    url: `${config.tls.cert ? 'https' : 'http'}://${http.address}`,
    host: http.address,
    config,
    registry,
    close: async () => {
      await http.close();
      try {
        await registry.close();
      } finally {
        lock?.release();
      }
    },
  };
}

export interface StartRegistryOptions {
  /** `'memory'` (the default) keeps everything in memory; `{ data }` uses the embedded fs + SQLite store. */
  storage?: 'memory' | { data: string };
  /** `HOST:PORT`; defaults to `127.0.0.1:0`, a free loopback port. */
  listen?: string;
  /** Any other setting by dotted key, e.g. `{ 'delete.enabled': false }`. */
  settings?: Record<string, string | number | boolean | unknown[]>;
  /** A pino logger; by default the embedded registry logs nothing. */
  logger?: Logger;
}

/**
 * Starts an in-process Tether for tests and tools, in one call:
 * `const reg = await startRegistry(); … await reg.close();`
 */
export async function startRegistry(options: StartRegistryOptions = {}): Promise<RunningRegistry> {
  const storage = options.storage ?? 'memory';
  const overrides: Record<string, string | number | boolean | unknown[]> = {
    listen: options.listen ?? '127.0.0.1:0',
    ...(storage === 'memory'
      ? { 'storage.blobs': 'memory', 'storage.meta': 'memory' }
      : { data: storage.data, 'storage.blobs': 'fs', 'storage.meta': 'sqlite' }),
    ...options.settings,
  };
  const config = loadConfig({ overrides });
  return startServer(config, options.logger ?? pino({ level: 'silent' }));
}
