import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from '../../registry/registry.ts';
import type { Caller } from '../auth.ts';
import type { SendIdleGuard } from '../send-idle.ts';

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
  /** Watches a response being sent for a client that stops taking bytes (`limits.sendIdleSeconds`). */
  sends: SendIdleGuard;
}

export type Handler = (ctx: RouteContext) => Promise<void>;
