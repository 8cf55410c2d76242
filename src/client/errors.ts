/**
 * Every failure the client reports to a user: a registry's refusal, content that does not match its
 * digest, a layout that is not one. The CLI prints these as one line (exit 1) instead of a stack trace.
 */
export class ClientError extends Error {
  override name = 'ClientError';
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}
