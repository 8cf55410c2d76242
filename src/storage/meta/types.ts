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
  /** Blob digests the manifest needs in this repository (config, distributable layers). */
  blobs: string[];
  /** Index children: each must be a manifest or a blob in this repository. */
  children: string[];
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
  mediaType: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface TagPrecondition {
  /** The tag must currently point at this digest (`If-Match`). */
  ifMatch?: string[];
  /** The tag must not exist (`If-None-Match: *`). */
  ifNoneMatchAny?: boolean;
}

export type PutManifestResult =
  | { status: 'ok' }
  | { status: 'missing'; missing: string[] }
  | { status: 'precondition-failed'; current?: string };

export interface UploadRecord {
  id: string;
  repo: string;
  offset: number;
  /** Hash algorithm the registry runs while bytes stream in. */
  algorithm: string;
  startedAt: number;
  updatedAt: number;
}

export interface Page {
  after?: string;
  limit: number;
}

export interface ReferrersQuery extends Page {
  artifactTypes?: string[];
}

export interface MetaStore {
  putManifest(
    record: ManifestRecord,
    tags: string[],
    precondition?: TagPrecondition,
  ): Promise<PutManifestResult>;
  getManifest(repo: string, digest: string): Promise<StoredManifest | undefined>;
  getManifestByTag(repo: string, tag: string): Promise<StoredManifest | undefined>;
  /** Deletes a manifest, the tags pointing at it, its references and its referrers row. */
  deleteManifest(repo: string, digest: string): Promise<boolean>;
  deleteTag(
    repo: string,
    tag: string,
    ifMatch?: string[],
  ): Promise<'deleted' | 'missing' | 'precondition-failed'>;
  listTags(repo: string, page: Page): Promise<string[]>;
  listReferrers(repo: string, subjectDigest: string, query: ReferrersQuery): Promise<ReferrerRow[]>;

  repositoryExists(repo: string): Promise<boolean>;
  listRepositories(page: Page): Promise<string[]>;

  linkBlob(repo: string, digest: string, size: number): Promise<void>;
  /** Size of a blob this repository may serve. */
  blobSize(repo: string, digest: string): Promise<number | undefined>;
  /** Size of a blob linked into any repository (automatic cross-repository mount). */
  findBlob(digest: string): Promise<number | undefined>;
  unlinkBlob(repo: string, digest: string): Promise<boolean>;

  createUpload(upload: UploadRecord): Promise<void>;
  getUpload(id: string): Promise<UploadRecord | undefined>;
  setUploadOffset(id: string, offset: number, updatedAt: number): Promise<void>;
  /** Links the finished blob into the upload's repository and forgets the session, in one transaction. */
  completeUpload(id: string, digest: string, size: number): Promise<void>;
  deleteUpload(id: string): Promise<void>;
  listStaleUploads(updatedBefore: number, limit: number): Promise<UploadRecord[]>;
  hasUpload(id: string): Promise<boolean>;

  close(): Promise<void>;
}
