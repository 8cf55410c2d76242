/**
 * The one error type that reaches the wire. Every layer throws `OciError`; the HTTP layer renders it as
 * `{"errors":[{code,message,detail}]}` with its status. Codes are the spec's list (plus 413/416 cases that
 * carry the closest spec code), so clients can act on them.
 */
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS';

export interface OciErrorEntry {
  code: OciErrorCode;
  message: string;
  detail?: unknown;
}

export class OciError extends Error {
  readonly status: number;
  readonly entries: OciErrorEntry[];
  /** Extra response headers that belong to this error (for example `Range` on a 416). */
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    code: OciErrorCode,
    message: string,
    detail?: unknown,
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'OciError';
    this.status = status;
    this.entries = [detail === undefined ? { code, message } : { code, message, detail }];
    this.headers = headers;
  }

  get code(): OciErrorCode {
    return this.entries[0]!.code;
  }

  /** One response carrying several errors of one status (e.g. every missing blob of a manifest). */
  static many(status: number, entries: OciErrorEntry[]): OciError {
    const first = entries[0]!;
    const err = new OciError(status, first.code, first.message, first.detail);
    err.entries.splice(0, 1, ...entries);
    return err;
  }

  toJSON(): { errors: OciErrorEntry[] } {
    return { errors: this.entries };
  }
}

export const errors = {
  blobUnknown: (digest: string) => new OciError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest }),
  uploadUnknown: (id: string) =>
    new OciError(404, 'BLOB_UPLOAD_UNKNOWN', 'blob upload unknown to registry', { id }),
  uploadInvalid: (message: string, detail?: unknown) =>
    new OciError(400, 'BLOB_UPLOAD_INVALID', message, detail),
  digestInvalid: (message: string, detail?: unknown) => new OciError(400, 'DIGEST_INVALID', message, detail),
  manifestInvalid: (message: string, detail?: unknown) =>
    new OciError(400, 'MANIFEST_INVALID', message, detail),
  manifestUnknown: (reference: string) =>
    new OciError(404, 'MANIFEST_UNKNOWN', 'manifest unknown to registry', { reference }),
  nameInvalid: (name: string) =>
    new OciError(400, 'NAME_INVALID', 'invalid repository name', { name: name.slice(0, 300) }),
  nameUnknown: (name: string) =>
    new OciError(404, 'NAME_UNKNOWN', 'repository name not known to registry', { name }),
  sizeInvalid: (message: string, detail?: unknown) => new OciError(400, 'SIZE_INVALID', message, detail),
  unsupported: (message: string, status = 405) => new OciError(status, 'UNSUPPORTED', message),
  tooLarge: (message: string, limit: number) => new OciError(413, 'SIZE_INVALID', message, { limit }),
  badRequest: (message: string, detail?: unknown) => new OciError(400, 'UNSUPPORTED', message, detail),
  rangeNotSatisfiable: (message: string, headers: Record<string, string>) =>
    new OciError(416, 'BLOB_UPLOAD_INVALID', message, undefined, headers),
};
