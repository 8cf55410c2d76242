/**
 * SQLite schema, one entry per version; applied in order inside a transaction and recorded in
 * `schema_migrations`. Never edit a shipped entry: add a new one.
 */
export const sqliteMigrations: string[] = [
  `
  CREATE TABLE repositories (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE repository_blobs (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
  ) WITHOUT ROWID;
  CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest);

  CREATE TABLE manifests (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    artifact_type TEXT,
    size INTEGER NOT NULL,
    subject_digest TEXT,
    annotations TEXT,
    bytes BLOB NOT NULL,
    pushed_at INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
  );
  -- The referrers index: one range scan per page, ordered by referrer digest (the keyset cursor).
  CREATE INDEX manifests_by_subject ON manifests (repo, subject_digest, digest)
    WHERE subject_digest IS NOT NULL;

  CREATE TABLE manifest_refs (
    repo TEXT NOT NULL,
    parent_digest TEXT NOT NULL,
    child_digest TEXT NOT NULL,
    PRIMARY KEY (repo, parent_digest, child_digest)
  ) WITHOUT ROWID;
  CREATE INDEX manifest_refs_by_child ON manifest_refs (repo, child_digest);

  CREATE TABLE tags (
    repo TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, name)
  ) WITHOUT ROWID;
  CREATE INDEX tags_by_digest ON tags (repo, digest);

  CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    offset INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX uploads_by_updated ON uploads (updated_at);

  -- Manifests listed by an index stored under a referrers-schema tag (written by clients without the
  -- API). Merged into the API answer, so old and new clients see one truth.
  CREATE TABLE fallback_entries (
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    referrer_digest TEXT NOT NULL,
    PRIMARY KEY (repo, tag, referrer_digest)
  ) WITHOUT ROWID;
  CREATE INDEX fallback_entries_by_referrer ON fallback_entries (repo, referrer_digest);

  -- A random token per referrer set (key: a subject digest or a referrers-schema tag), replaced in the
  -- same transaction as any change to that set. It makes the referrers ETag cheap and exact.
  CREATE TABLE referrer_versions (
    repo TEXT NOT NULL,
    key TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (repo, key)
  ) WITHOUT ROWID;
  `,
  `
  -- The index last served for a referrers-schema tag nobody pushed (built from the API), per subject,
  -- so that a client which resolved the tag to a digest can fetch that digest.
  CREATE TABLE served_fallback_indexes (
    repo TEXT NOT NULL,
    subject_digest TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, subject_digest)
  ) WITHOUT ROWID;
  CREATE INDEX served_fallback_indexes_by_digest ON served_fallback_indexes (repo, digest);
  `,
  `
  -- Entries of fallback indexes are no longer merged into the referrers API: only a listed manifest whose
  -- subject is the tag's digest may count, and such a manifest is a referrer through its own subject
  -- already. Nothing reads or writes fallback_entries any more, nor the version tokens kept per tag (keys
  -- without a ':'); the rows go, the table stays so that an older binary can still open the file.
  DELETE FROM fallback_entries;
  DELETE FROM referrer_versions WHERE instr(key, ':') = 0;
  `,
  `
  -- A digest whose blob starts with the upload session's acknowledged bytes: theirs exactly (set with
  -- each acknowledged append), or the blob they are about to be published in (set before the publish
  -- when a last chunk comes with the PUT). After a crash between publishing the bytes and linking them,
  -- the session's staged file is gone, and its acknowledged bytes are found again there.
  ALTER TABLE uploads ADD COLUMN content_digest TEXT;
  `,
];
