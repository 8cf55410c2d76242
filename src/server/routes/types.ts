import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from '../../registry/registry.ts';
import type { Caller } from '../auth.ts';

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  registry: Registry;
  /** Who is asking; the route's own access was checked before the handler ran. */
  caller: Caller;
  /** Validated repository name ('' for base and catalog). */
  name: string;
  /** Decoded last path segment. */
  ref: string;
  query: URLSearchParams;
  /** How long a body read whole (a manifest) may take to arrive (`limits.bodyTimeoutSeconds`). */
  bodyTimeoutMs: number;
}

export type Handler = (ctx: RouteContext) => Promise<void>;
