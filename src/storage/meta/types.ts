/**
 * Rows, not files, are the truth for names: repositories, which blobs each repository may serve, manifests,
 * tags, the referrers index and upload sessions. Every method is async so SQL engines with network round
 * trips (PostgreSQL) fit the same interface; nothing engine-specific leaks above it.
 */
export interface ManifestRecord {
  repo: string;
  digest: string;
  mediaType: string;
  /** Referrers-API artifact type (explicit, else config.mediaType; absent for an index without one). */
  artifactType?: string;
  size: number;
  subjectDigest?: string;
  annotations?: Record<string, string>;
  bytes: Buffer;
  /** Blobs the manifest needs in this repository (config, distributable layers), as declared. */
  blobs: DeclaredReference[];
  /** Index children: each must be a manifest or a blob in this repository, of the declared size. */
  children: DeclaredReference[];
}

/** What a descriptor names and the size it declares: what the store checks against its rows. */
export interface DeclaredReference {
  digest: string;
  size: number;
}

/** A descriptor whose declared size is not the size of the blob or manifest the repository holds. */
export interface SizeMismatch {
  digest: string;
  declared: number;
  stored: number;
}

export interface StoredManifest {
  digest: string;
  mediaType: string;
  size: number;
  bytes: Buffer;
  subjectDigest?: string;
}

export interface ReferrerRow {
  digest: string;
  /**
   * The referrer's descriptor as it appears in the referrers index, serialized: `mediaType`, `digest`,
   * `size`, then `artifactType` and `annotations` when the manifest has them.
   */
  descriptor: string;
}

/** Whether an `If-Match` list admits a tag's current target: `*` admits any, as long as there is one (RFC 9110 §13.1.1). */
export function ifMatchAdmits(ifMatch: readonly string[], current: string | undefined): boolean {
  return current !== undefined && (ifMatch.includes('*') || ifMatch.includes(current));
}

export interface TagPrecondition {
  /** The tag must currently point at one of these digests, or exist at all for `*` (`If-Match`). */
  ifMatch?: string[];
  /** The tag must not exist (`If-None-Match: *`). */
  ifNoneMatchAny?: boolean;
}

export interface PutManifestOptions {
  precondition?: TagPrecondition;
  /** Refuse the push when the subject is not a manifest of this repository (`subjectPolicy: require`). */
  requireSubject?: boolean;
}

export type PutManifestResult =
  | { status: 'ok' }
  | { status: 'missing'; missing: string[] }
  | { status: 'subject-missing'; subject: string }
  | { status: 'size-mismatch'; mismatched: SizeMismatch[] }
  | { status: 'precondition-failed'; current?: string };

export interface UploadRecord {
  id: string;
  repo: string;
  offset: number;
  /** Hash algorithm the registry runs while bytes stream in. */
  algorithm: string;
  startedAt: number;
  updatedAt: number;
  /**
   * A digest whose blob starts with the acknowledged bytes: theirs exactly (`setUploadOffset`), or the
   * blob they are being published in (`markUploadPublishing`). A staged file lost by a crash between
   * publishing and linking is restored from it.
   */
  contentDigest?: string;
}

export interface Page {
  after?: string;
  limit: number;
}

export interface ReferrersQuery extends Page {
  /** OR: the referrer's artifact type is one of these. */
  artifactTypes?: string[];
  /** AND: the referrer carries every one of these annotation key/value pairs. */
  annotations?: [string, string][];
}

export interface MetaStore {
  /**
   * Stores a manifest with its references and tags in one transaction, or nothing when refused. Refusals,
   * the first that applies: the precondition; references the repository does not hold (`missing`, all
   * of them); the subject, under `requireSubject`; references of another size than declared
   * (`size-mismatch`, all of them). Unknown references come before sizes because they are what the spec
   * names (MANIFEST_BLOB_UNKNOWN) and what a client can fix by pushing more, and a size can only be
   * compared with something that is there.
   */
  putManifest(
    record: ManifestRecord,
    tags: string[],
    options?: PutManifestOptions,
  ): Promise<PutManifestResult>;
  getManifest(repo: string, digest: string): Promise<StoredManifest | undefined>;
  getManifestByTag(repo: string, tag: string): Promise<StoredManifest | undefined>;
  /**
   * Deletes a manifest with the tags pointing at it and its references, in one transaction; with
   * `cascade`, also its referrers, their referrers and so on (loop-safe), and the tags named in
   * `dropTags` (the subject's fallback tag), in that same transaction. Returns the deleted digests
   * (none, and nothing else deleted, when the manifest does not exist).
   */
  deleteManifest(
    repo: string,
    digest: string,
    options?: { cascade?: boolean; dropTags?: string[] },
  ): Promise<string[]>;
  deleteTag(
    repo: string,
    tag: string,
    ifMatch?: string[],
  ): Promise<'deleted' | 'missing' | 'precondition-failed'>;
  listTags(repo: string, page: Page): Promise<string[]>;
  listReferrers(repo: string, subjectDigest: string, query: ReferrersQuery): Promise<ReferrerRow[]>;
  /**
   * An opaque token that changes whenever the referrer set of any of `keys` (subject digests) changes;
   * equal tokens mean equal sets.
   */
  referrersVersion(repo: string, keys: string[]): Promise<string>;
  /**
   * Whether the stored index `indexDigest` lists exactly the referrers of `subjectDigest` (none when
   * undefined), by digest: every manifest it lists is in the repository and names that subject, and every
   * such manifest is listed.
   */
  listsExactlyTheReferrers(
    repo: string,
    indexDigest: string,
    subjectDigest: string | undefined,
  ): Promise<boolean>;
  /**
   * Records the digest of the index built for a referrers-schema tag (a no-op when unchanged). `subject`
   * is the subject digest, or the tag's digest prefix when no manifest names a subject with it.
   */
  noteServedFallbackIndex(repo: string, subjectDigest: string, digest: string): Promise<void>;
  /** The subject (digest or prefix) whose referrers-schema tag was last served as `digest`, if any. */
  servedFallbackSubject(repo: string, digest: string): Promise<string | undefined>;
  /** Subjects with referrers whose digest starts with `prefix` (resolves truncated referrers tags). */
  findSubjects(repo: string, prefix: string, limit: number): Promise<string[]>;

  repositoryExists(repo: string): Promise<boolean>;
  listRepositories(page: Page): Promise<string[]>;

  linkBlob(repo: string, digest: string, size: number): Promise<void>;
  /** Size of a blob this repository may serve. */
  blobSize(repo: string, digest: string): Promise<number | undefined>;
  /** Size of a blob linked into any repository (automatic cross-repository mount). */
  findBlob(digest: string): Promise<number | undefined>;
  unlinkBlob(repo: string, digest: string): Promise<boolean>;
  /** Repositories that link a blob (at most `limit`, in name order). */
  blobRepositories(digest: string, limit: number): Promise<string[]>;

  /** Records a new session; false (nothing recorded) when `limit` sessions are open already. */
  createUpload(upload: UploadRecord, limit?: number): Promise<boolean>;
  getUpload(id: string): Promise<UploadRecord | undefined>;
  /** Commits an acknowledged append: the new offset, activity time and digest of the bytes so far. */
  setUploadOffset(id: string, offset: number, updatedAt: number, contentDigest?: string): Promise<void>;
  /**
   * Records, durably, that the session's bytes (its acknowledged ones and a last chunk) were verified as
   * `digest` and are about to be published under it, so that a crash after the publish and before
   * `completeUpload` can find them again (`contentDigest`).
   */
  markUploadPublishing(id: string, digest: string): Promise<void>;
  /** Links the finished blob into the upload's repository and forgets the session, in one transaction. */
  completeUpload(id: string, digest: string, size: number): Promise<void>;
  deleteUpload(id: string): Promise<void>;
  listStaleUploads(updatedBefore: number, limit: number): Promise<UploadRecord[]>;
  hasUpload(id: string): Promise<boolean>;

  close(): Promise<void>;
}
