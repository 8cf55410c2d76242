import { parseChallenge } from './auth.ts';
import { ClientError } from './errors.ts';
import type { RegistryHttp } from './registry-http.ts';
import type { HttpResponse } from './response.ts';

/** What a refused request was for, to name it in the error: `ACTION SUBJECT: why`. */
export interface RefusedRequest {
  /** The registry the request went to (its host, and whether credentials were sent there). */
  registry: RegistryHttp;
  /** What was asked, as a user would say it: `get manifest`, `upload blob`, `list tags of`. */
  action: string;
  /** What it was asked of, in full: `HOST/REPO:TAG`, `HOST/REPO@DIGEST`, `HOST/REPO` or `HOST`. */
  subject: string;
  /** The access the request needed, for a refusal's wording ("not allowed to push"). */
  access: 'pull' | 'push' | 'delete' | 'list the catalog';
}

interface WireError {
  code?: unknown;
  message?: unknown;
  detail?: unknown;
}

/** One error of a registry's answer, flattened for a one-line message. */
interface RefusalReason {
  code: string;
  message: string;
  /** The digest the error's `detail` names, if any (a missing blob, a descriptor of the wrong size). */
  digest?: string;
}

/**
 * The one way the client turns a registry's refusal into a message, e.g.
 * `get manifest 127.0.0.1:5000/nope:v1: not found (NAME_UNKNOWN)`. It names the repository and
 * reference (a bare `get manifest v1: HTTP 404` left the user to guess which registry said so), and
 * tells a missing login from a login without the rights: when credentials were sent and the registry
 * still refuses for want of scope (a token service that granted pull but not push answers 401
 * `insufficient_scope`; a Basic registry 403 `DENIED`), logging in again would not help. Reads the body.
 */
export async function refusal(res: HttpResponse, request: RefusedRequest): Promise<ClientError> {
  const errors = await wireErrors(res);
  const codes = errors.map((e) => e.code).join(', ');
  const detail = describe(errors);
  const host = request.registry.host;
  let why: string;
  if (res.status === 404) why = `not found${codes ? ` (${codes})` : ''}`;
  else if (res.status === 401 || res.status === 403) {
    const challenge = parseChallenge(res.headers.get('www-authenticate'));
    const insufficientScope =
      challenge?.params.error === 'insufficient_scope' ||
      errors.some((e) => /insufficient.scope/i.test(e.message));
    const sent = request.registry.auth.sentCredentials;
    if (sent && (insufficientScope || res.status === 403))
      why = `not allowed to ${request.access} (${insufficientScope ? 'insufficient scope' : detail || `HTTP ${res.status}`})`;
    else if (sent)
      why = `the registry refused the credentials${paren(detail)}; run \`tether login ${host}\` again, or check -u and the password`;
    // Without credentials a 401's own words add nothing to "authentication required".
    else if (res.status === 401) why = `authentication required; run \`tether login ${host}\``;
    else why = `denied${paren(detail)}; run \`tether login ${host}\``;
  } else if (res.status === 407)
    why = `HTTP 407${paren(detail)} (the HTTP proxy wants credentials: http://USER:PASSWORD@HOST:PORT in HTTP_PROXY or HTTPS_PROXY)`;
  else why = `HTTP ${res.status}${paren(detail)}`;
  return new ClientError(`${request.action} ${request.subject}: ${why}`, res.status);
}

/** Digests named per repeated error before the rest are only counted. */
const DIGESTS_NAMED = 3;

/**
 * The errors as `CODE: message` on one line. A refused manifest PUT can carry one error per bad
 * reference (up to 100, all with the same code and message), so errors that say the same are said once,
 * with the first few digests their details name and a count of the rest.
 */
function describe(errors: RefusalReason[]): string {
  const groups = new Map<string, { count: number; digests: string[] }>();
  for (const e of errors) {
    const key = e.message ? `${e.code}: ${e.message}` : e.code;
    const group = groups.get(key) ?? { count: 0, digests: [] };
    group.count++;
    if (e.digest) group.digests.push(e.digest);
    groups.set(key, group);
  }
  return [...groups]
    .map(([key, { count, digests }]) => {
      if (digests.length === 0) return count > 1 ? `${key} (${count} times)` : key;
      const named = digests.slice(0, DIGESTS_NAMED).join(', ');
      const more = count - Math.min(digests.length, DIGESTS_NAMED);
      return `${key}: ${named}${more > 0 ? ` and ${more} more` : ''}`;
    })
    .join('; ');
}

function paren(text: string): string {
  return text ? ` (${text})` : '';
}

/** Error bodies are small; a larger one is not read to the end. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** A registry's message is quoted on one line, and only so much of it. */
const MAX_MESSAGE_CHARS = 200;

/**
 * The `errors` of an OCI error body, as one-line `{code, message}` strings; none when the body is not
 * one (an HTML page from a proxy, say).
 */
async function wireErrors(res: HttpResponse): Promise<RefusalReason[]> {
  try {
    const body = JSON.parse((await res.bytes(MAX_ERROR_BODY_BYTES)).toString('utf8')) as { errors?: unknown };
    if (!Array.isArray(body?.errors)) return [];
    return (body.errors as WireError[])
      .filter((e) => typeof e?.code === 'string')
      .map((e) => {
        const digest = (e.detail as { digest?: unknown } | null | undefined)?.digest;
        return {
          code: oneLine(e.code as string),
          message: typeof e.message === 'string' ? oneLine(e.message) : '',
          ...(typeof digest === 'string' ? { digest: oneLine(digest) } : {}),
        };
      });
  } catch {
    return [];
  }
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_MESSAGE_CHARS ? `${flat.slice(0, MAX_MESSAGE_CHARS)}…` : flat;
}
