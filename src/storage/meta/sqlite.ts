import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { sqliteMigrations } from './migrations/sqlite.ts';
import type {
  ManifestRecord,
  MetaStore,
  Page,
  PutManifestResult,
  ReferrerRow,
  ReferrersQuery,
  StoredManifest,
  TagPrecondition,
  UploadRecord,
} from './types.ts';

export interface SqliteOptions {
  /** File path, or ':memory:' for a throw-away store. */
  path: string;
  /** FULL (default) makes every acknowledged commit survive power loss, NORMAL only process crashes. */
  synchronous?: 'FULL' | 'NORMAL';
}

type Row = Record<string, SQLInputValue>;

/**
 * MetaStore on node:sqlite in WAL mode. node:sqlite is synchronous, so each method runs its whole
 * transaction within one turn of the event loop: no two requests interleave inside a transaction.
 * All SQL is static text with bound parameters.
 */
export class SqliteMetaStore implements MetaStore {
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();

  constructor(options: SqliteOptions) {
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    this.#db = new DatabaseSync(options.path);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = ${options.synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'};
      PRAGMA busy_timeout = 10000;
      PRAGMA foreign_keys = OFF;
    `);
    this.#migrate();
  }

  #migrate(): void {
    this.#db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER)',
    );
    const row = this.#db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as {
      v: number | null;
    };
    const current = row.v ?? 0;
    for (let version = current + 1; version <= sqliteMigrations.length; version++) {
      this.#tx(() => {
        this.#db.exec(sqliteMigrations[version - 1]!);
        this.#db.prepare('INSERT INTO schema_migrations VALUES (?, ?)').run(version, Date.now());
      });
    }
  }

  #stmt(sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  #tx<T>(fn: () => T): T {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const result = fn();
      this.#db.exec('COMMIT');
      return result;
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  #ensureRepository(repo: string, now: number): void {
    this.#stmt('INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING').run(
      repo,
      now,
    );
  }

  #tagTarget(repo: string, tag: string): string | undefined {
    const row = this.#stmt('SELECT digest FROM tags WHERE repo = ? AND name = ?').get(repo, tag) as
      | { digest: string }
      | undefined;
    return row?.digest;
  }

  async putManifest(
    record: ManifestRecord,
    tags: string[],
    precondition?: TagPrecondition,
  ): Promise<PutManifestResult> {
    const now = Date.now();
    return this.#tx((): PutManifestResult => {
      if (precondition) {
        const current = tags[0] === undefined ? undefined : this.#tagTarget(record.repo, tags[0]);
        if (precondition.ifNoneMatchAny && current !== undefined)
          return { status: 'precondition-failed', current };
        if (precondition.ifMatch && (current === undefined || !precondition.ifMatch.includes(current))) {
          return current === undefined
            ? { status: 'precondition-failed' }
            : { status: 'precondition-failed', current };
        }
      }
      const missing: string[] = [];
      const blobLinked = this.#stmt('SELECT 1 FROM repository_blobs WHERE repo = ? AND digest = ?');
      const manifestExists = this.#stmt('SELECT 1 FROM manifests WHERE repo = ? AND digest = ?');
      for (const digest of new Set(record.blobs)) {
        if (!blobLinked.get(record.repo, digest)) missing.push(digest);
      }
      for (const digest of new Set(record.children)) {
        if (!manifestExists.get(record.repo, digest) && !blobLinked.get(record.repo, digest))
          missing.push(digest);
      }
      if (missing.length > 0) return { status: 'missing', missing };

      this.#ensureRepository(record.repo, now);
      this.#stmt(
        `INSERT INTO manifests
           (repo, digest, media_type, artifact_type, size, subject_digest, annotations, bytes, pushed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (repo, digest) DO NOTHING`,
      ).run(
        record.repo,
        record.digest,
        record.mediaType,
        record.artifactType ?? null,
        record.size,
        record.subjectDigest ?? null,
        record.annotations ? JSON.stringify(record.annotations) : null,
        record.bytes,
        now,
      );
      const addRef = this.#stmt(
        'INSERT INTO manifest_refs (repo, parent_digest, child_digest) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
      );
      for (const child of new Set([...record.blobs, ...record.children]))
        addRef.run(record.repo, record.digest, child);
      const setTag = this.#stmt(
        `INSERT INTO tags (repo, name, digest, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
      );
      for (const tag of tags) setTag.run(record.repo, tag, record.digest, now);
      return { status: 'ok' };
    });
  }

  #manifestRow(row: Row | undefined): StoredManifest | undefined {
    if (!row) return undefined;
    const manifest: StoredManifest = {
      digest: row.digest as string,
      mediaType: row.media_type as string,
      size: Number(row.size),
      bytes: Buffer.from(row.bytes as Uint8Array),
    };
    if (row.subject_digest) manifest.subjectDigest = row.subject_digest as string;
    return manifest;
  }

  async getManifest(repo: string, digest: string): Promise<StoredManifest | undefined> {
    return this.#manifestRow(
      this.#stmt(
        'SELECT digest, media_type, size, bytes, subject_digest FROM manifests WHERE repo = ? AND digest = ?',
      ).get(repo, digest) as Row | undefined,
    );
  }

  async getManifestByTag(repo: string, tag: string): Promise<StoredManifest | undefined> {
    return this.#manifestRow(
      this.#stmt(
        `SELECT m.digest, m.media_type, m.size, m.bytes, m.subject_digest
           FROM tags t JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
          WHERE t.repo = ? AND t.name = ?`,
      ).get(repo, tag) as Row | undefined,
    );
  }

  async deleteManifest(repo: string, digest: string): Promise<boolean> {
    return this.#tx(() => {
      const deleted = this.#stmt('DELETE FROM manifests WHERE repo = ? AND digest = ?').run(repo, digest);
      if (deleted.changes === 0) return false;
      this.#stmt('DELETE FROM tags WHERE repo = ? AND digest = ?').run(repo, digest);
      this.#stmt('DELETE FROM manifest_refs WHERE repo = ? AND parent_digest = ?').run(repo, digest);
      return true;
    });
  }

  async deleteTag(
    repo: string,
    tag: string,
    ifMatch?: string[],
  ): Promise<'deleted' | 'missing' | 'precondition-failed'> {
    return this.#tx(() => {
      const current = this.#tagTarget(repo, tag);
      if (current === undefined) return 'missing';
      if (ifMatch && !ifMatch.includes(current)) return 'precondition-failed';
      this.#stmt('DELETE FROM tags WHERE repo = ? AND name = ?').run(repo, tag);
      return 'deleted';
    });
  }

  async listTags(repo: string, page: Page): Promise<string[]> {
    const rows = this.#stmt('SELECT name FROM tags WHERE repo = ? AND name > ? ORDER BY name LIMIT ?').all(
      repo,
      page.after ?? '',
      page.limit,
    ) as { name: string }[];
    return rows.map((r) => r.name);
  }

  async listReferrers(repo: string, subjectDigest: string, query: ReferrersQuery): Promise<ReferrerRow[]> {
    const types = query.artifactTypes ?? [];
    // The filter runs inside the indexed range scan, before the page is cut.
    const rows = (
      types.length === 0
        ? this.#stmt(
            `SELECT digest, media_type, size, artifact_type, annotations FROM manifests
              WHERE repo = ? AND subject_digest = ? AND digest > ? ORDER BY digest LIMIT ?`,
          ).all(repo, subjectDigest, query.after ?? '', query.limit)
        : this.#stmt(
            `SELECT digest, media_type, size, artifact_type, annotations FROM manifests
              WHERE repo = ? AND subject_digest = ? AND digest > ?
                AND artifact_type IN (SELECT value FROM json_each(?))
              ORDER BY digest LIMIT ?`,
          ).all(repo, subjectDigest, query.after ?? '', JSON.stringify(types), query.limit)
    ) as Row[];
    return rows.map((row) => {
      const referrer: ReferrerRow = {
        digest: row.digest as string,
        mediaType: row.media_type as string,
        size: Number(row.size),
      };
      if (row.artifact_type) referrer.artifactType = row.artifact_type as string;
      if (row.annotations) referrer.annotations = JSON.parse(row.annotations as string);
      return referrer;
    });
  }

  async repositoryExists(repo: string): Promise<boolean> {
    return this.#stmt('SELECT 1 FROM repositories WHERE name = ?').get(repo) !== undefined;
  }

  async listRepositories(page: Page): Promise<string[]> {
    const rows = this.#stmt('SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?').all(
      page.after ?? '',
      page.limit,
    ) as { name: string }[];
    return rows.map((r) => r.name);
  }

  #link(repo: string, digest: string, size: number, now: number): void {
    this.#ensureRepository(repo, now);
    this.#stmt('INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING').run(
      digest,
      size,
      now,
    );
    this.#stmt(
      'INSERT INTO repository_blobs (repo, digest, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    ).run(repo, digest, now);
  }

  async linkBlob(repo: string, digest: string, size: number): Promise<void> {
    this.#tx(() => this.#link(repo, digest, size, Date.now()));
  }

  async blobSize(repo: string, digest: string): Promise<number | undefined> {
    const row = this.#stmt(
      `SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
        WHERE rb.repo = ? AND rb.digest = ?`,
    ).get(repo, digest) as { size: number } | undefined;
    return row === undefined ? undefined : Number(row.size);
  }

  async findBlob(digest: string): Promise<number | undefined> {
    const row = this.#stmt(
      'SELECT b.size FROM blobs b WHERE b.digest = ? AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)',
    ).get(digest) as { size: number } | undefined;
    return row === undefined ? undefined : Number(row.size);
  }

  async unlinkBlob(repo: string, digest: string): Promise<boolean> {
    return (
      this.#stmt('DELETE FROM repository_blobs WHERE repo = ? AND digest = ?').run(repo, digest).changes > 0
    );
  }

  async createUpload(upload: UploadRecord): Promise<void> {
    this.#stmt(
      'INSERT INTO uploads (id, repo, offset, algorithm, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
    ).run(upload.id, upload.repo, upload.offset, upload.algorithm, upload.startedAt, upload.updatedAt);
  }

  async getUpload(id: string): Promise<UploadRecord | undefined> {
    const row = this.#stmt('SELECT * FROM uploads WHERE id = ?').get(id) as Row | undefined;
    return row ? uploadFromRow(row) : undefined;
  }

  async hasUpload(id: string): Promise<boolean> {
    return this.#stmt('SELECT 1 FROM uploads WHERE id = ?').get(id) !== undefined;
  }

  async setUploadOffset(id: string, offset: number, updatedAt: number): Promise<void> {
    this.#stmt('UPDATE uploads SET offset = ?, updated_at = ? WHERE id = ?').run(offset, updatedAt, id);
  }

  async completeUpload(id: string, digest: string, size: number): Promise<void> {
    this.#tx(() => {
      const row = this.#stmt('SELECT repo FROM uploads WHERE id = ?').get(id) as { repo: string } | undefined;
      if (!row) throw new Error(`upload ${id} vanished during completion`);
      this.#link(row.repo, digest, size, Date.now());
      this.#stmt('DELETE FROM uploads WHERE id = ?').run(id);
    });
  }

  async deleteUpload(id: string): Promise<void> {
    this.#stmt('DELETE FROM uploads WHERE id = ?').run(id);
  }

  async listStaleUploads(updatedBefore: number, limit: number): Promise<UploadRecord[]> {
    const rows = this.#stmt('SELECT * FROM uploads WHERE updated_at < ? ORDER BY updated_at LIMIT ?').all(
      updatedBefore,
      limit,
    ) as Row[];
    return rows.map(uploadFromRow);
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}

function uploadFromRow(row: Row): UploadRecord {
  return {
    id: row.id as string,
    repo: row.repo as string,
    offset: Number(row.offset),
    algorithm: row.algorithm as string,
    startedAt: Number(row.started_at),
    updatedAt: Number(row.updated_at),
  };
}
