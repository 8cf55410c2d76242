import type { Logger } from 'pino';
import type { BlobStore } from '../storage/blob/types.ts';
import type { MetaStore } from '../storage/meta/types.ts';
import { defaultPolicy, type PolicyResolver, type PolicyRule, type RepositoryPolicy } from './policy.ts';

export interface RegistryOptions {
  /** When false, DELETE of manifests, tags and blobs answers 405 UNSUPPORTED. */
  deleteEnabled: boolean;
  manifestMaxBytes: number;
  /** Largest blob accepted, in bytes; 0 means no limit. */
  blobMaxBytes: number;
  /** Mount without `from`: link a blob from any repository that has it. */
  automaticMount: boolean;
  /** Abandoned upload sessions are removed after this long without activity. */
  uploadTtlMs: number;
  /** Open upload sessions at most; a new one beyond it is refused with 429. */
  maxUploadSessions: number;
  /** Default and largest page of tags, repositories and referrers. */
  pageSizeMax: number;
  /** A pushed referrers-schema tag shows the current referrers when its index lists anything else. */
  mergeFallbackTags: boolean;
  /** Answer GET of an unpushed referrers-schema tag with an index built from the API's referrers. */
  serveFallbackTags: boolean;
  /** Referrer policy for repositories no rule matches. */
  defaultPolicy: RepositoryPolicy;
  /** Per-repository referrer policies, first match wins. */
  policyRules: PolicyRule[];
}

export const defaultRegistryOptions: RegistryOptions = {
  deleteEnabled: true,
  manifestMaxBytes: 4 * 1024 * 1024,
  blobMaxBytes: 0,
  automaticMount: true,
  uploadTtlMs: 24 * 60 * 60 * 1000,
  maxUploadSessions: 10000,
  pageSizeMax: 1000,
  mergeFallbackTags: true,
  serveFallbackTags: true,
  defaultPolicy,
  policyRules: [],
};

/** What every registry operation needs; passed explicitly so modules stay small and testable. */
export interface RegistryContext {
  blobs: BlobStore;
  meta: MetaStore;
  options: RegistryOptions;
  policies: PolicyResolver;
  log: Logger;
}
