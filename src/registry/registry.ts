import type { Logger } from 'pino';
import { errors } from '../oci/errors.ts';
import type { BlobReader, BlobStore } from '../storage/blob/types.ts';
import type { MetaStore, Page } from '../storage/meta/types.ts';
import { defaultRegistryOptions, type RegistryContext, type RegistryOptions } from './context.ts';
import * as manifests from './manifests.ts';
import { PolicyResolver } from './policy.ts';
import { listReferrers, type ReferrersPage, type ReferrersRequest, referrersETag } from './referrers.ts';
import { Uploads } from './uploads.ts';

/**
 * The registry service: OCI rules over a BlobStore and a MetaStore. The HTTP layer calls it; it knows
 * nothing about HTTP beyond the OciError statuses it throws.
 */
export class Registry {
  readonly ctx: RegistryContext;
  readonly uploads: Uploads;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(blobs: BlobStore, meta: MetaStore, log: Logger, options: Partial<RegistryOptions> = {}) {
    const merged = { ...defaultRegistryOptions, ...options };
    this.ctx = {
      blobs,
      meta,
      log,
      options: merged,
      policies: new PolicyResolver(merged.policyRules, merged.defaultPolicy),
    };
    this.uploads = new Uploads(this.ctx);
  }

  get options(): RegistryOptions {
    return this.ctx.options;
  }

  /** Starts the periodic sweep of abandoned uploads (every tenth of the TTL, at most hourly). */
  startMaintenance(): void {
    const every = Math.min(Math.max(this.options.uploadTtlMs / 10, 1000), 60 * 60 * 1000);
    this.#sweeper = setInterval(() => {
      this.uploads.sweep().catch((err) => this.ctx.log.error({ err }, 'upload sweep failed'));
    }, every);
    this.#sweeper.unref();
  }

  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper);
    await this.ctx.meta.close();
    await this.ctx.blobs.close();
  }

  // Blobs -------------------------------------------------------------------------------------------

  /** Size of a blob this repository serves, or 404 BLOB_UNKNOWN. */
  async blobSize(repo: string, digest: string): Promise<number> {
    const size = await this.ctx.meta.blobSize(repo, digest);
    if (size === undefined) throw errors.blobUnknown(digest);
    return size;
  }

  async readBlob(digest: string, range?: { start: number; end: number }): Promise<BlobReader> {
    return this.ctx.blobs.read(digest, range);
  }

  async deleteBlob(repo: string, digest: string): Promise<void> {
    if (!this.options.deleteEnabled) throw errors.unsupported('deletion is disabled on this registry');
    if (!(await this.ctx.meta.unlinkBlob(repo, digest))) throw errors.blobUnknown(digest);
  }

  /**
   * Cross-repository mount. Links the blob when `from` holds it (or, without `from` and with automatic
   * mount on, when any repository does) and answers true; false means "start an upload instead".
   */
  async mount(
    repo: string,
    digest: string,
    from: string | undefined,
    canRead: (repo: string) => boolean = () => true,
  ): Promise<boolean> {
    let size: number | undefined;
    if (from !== undefined) size = await this.ctx.meta.blobSize(from, digest);
    else if (this.options.automaticMount) {
      // Automatic mount only from repositories the caller may read, so it cannot probe for blobs.
      for (const holder of await this.ctx.meta.blobRepositories(digest, 1000)) {
        if (canRead(holder)) {
          size = await this.ctx.meta.blobSize(holder, digest);
          break;
        }
      }
    }
    if (size === undefined) return false;
    // The bytes must really be there, all of them: a link to nothing, or to a file damaged behind our
    // back (short), would be served as a broken blob. The client uploads instead, which repairs the file.
    // (A file of the right size with altered bytes is not found here: that takes reading it.)
    if ((await this.ctx.blobs.stat(digest)) !== size) return false;
    await this.ctx.meta.linkBlob(repo, digest, size);
    return true;
  }

  // Manifests ---------------------------------------------------------------------------------------

  putManifest(input: manifests.PutManifestInput) {
    return manifests.putManifest(this.ctx, input);
  }

  getManifest(repo: string, reference: manifests.ManifestReference) {
    return manifests.getManifest(this.ctx, repo, reference);
  }

  deleteManifest(repo: string, reference: manifests.ManifestReference, ifMatch?: string[]) {
    return manifests.deleteManifest(this.ctx, repo, reference, ifMatch);
  }

  // Discovery ---------------------------------------------------------------------------------------

  async listTags(repo: string, page: Page): Promise<string[]> {
    if (!(await this.ctx.meta.repositoryExists(repo))) throw errors.nameUnknown(repo);
    return page.limit === 0 ? [] : this.ctx.meta.listTags(repo, page);
  }

  /** A page of repository names, optionally only those `visible` accepts (pages stay full). */
  async listRepositories(page: Page, visible?: (repo: string) => boolean): Promise<string[]> {
    if (page.limit === 0) return [];
    if (!visible) return this.ctx.meta.listRepositories(page);
    const out: string[] = [];
    let after = page.after;
    for (;;) {
      const batch = await this.ctx.meta.listRepositories({ limit: 1000, ...(after ? { after } : {}) });
      for (const repo of batch) {
        if (visible(repo)) out.push(repo);
        if (out.length === page.limit) return out;
      }
      if (batch.length < 1000) return out;
      after = batch.at(-1);
    }
  }

  listReferrers(request: ReferrersRequest): Promise<ReferrersPage> {
    return listReferrers(this.ctx, request);
  }

  referrersETag(request: ReferrersRequest): Promise<string> {
    return referrersETag(this.ctx, request);
  }
}
