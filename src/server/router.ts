import { errors, OciError } from '../oci/errors.ts';
import { assertRepositoryName } from '../oci/reference.ts';

export type RouteName =
  | 'base'
  | 'catalog'
  | 'manifest'
  | 'uploadStart'
  | 'upload'
  | 'blob'
  | 'tags'
  | 'referrers';

export interface RouteMatch {
  route: RouteName;
  /** Repository name, validated against the spec grammar. */
  name: string;
  /** Last path segment (reference, digest or upload id), percent-decoded. */
  ref: string;
}

const METHODS: Record<RouteName, string[]> = {
  base: ['GET', 'HEAD'],
  catalog: ['GET', 'HEAD'],
  manifest: ['GET', 'HEAD', 'PUT', 'DELETE'],
  uploadStart: ['POST'],
  upload: ['GET', 'HEAD', 'PATCH', 'PUT', 'DELETE'],
  blob: ['GET', 'HEAD', 'DELETE'],
  tags: ['GET', 'HEAD'],
  referrers: ['GET', 'HEAD'],
};

/**
 * Route patterns are matched against the end of the path: names contain slashes, so the endpoint is
 * found from the right and everything before it is the name. Order matters (uploads before blobs).
 */
const PATTERNS: [RouteName, RegExp][] = [
  ['uploadStart', /^\/v2\/(.+)\/blobs\/uploads\/?$/],
  ['upload', /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/],
  ['blob', /^\/v2\/(.+)\/blobs\/([^/]+)$/],
  ['manifest', /^\/v2\/(.+)\/manifests\/([^/]+)$/],
  ['tags', /^\/v2\/(.+)\/tags\/list$/],
  ['referrers', /^\/v2\/(.+)\/referrers\/([^/]+)$/],
];

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw errors.badRequest('malformed percent-encoding in path');
  }
}

export function matchRoute(method: string, path: string): RouteMatch {
  let match: RouteMatch | undefined;
  if (path === '/v2/' || path === '/v2') match = { route: 'base', name: '', ref: '' };
  else if (path === '/v2/_catalog') match = { route: 'catalog', name: '', ref: '' };
  else {
    for (const [route, pattern] of PATTERNS) {
      const m = pattern.exec(path);
      if (!m) continue;
      match = {
        route,
        name: assertRepositoryName(decode(m[1]!)),
        ref: m[2] === undefined ? '' : decode(m[2]),
      };
      break;
    }
  }
  // Not NAME_UNKNOWN: a client would report a missing repository for a mistyped path.
  if (!match) throw new OciError(404, 'UNSUPPORTED', 'no such endpoint', { path: path.slice(0, 300) });
  const allowed = METHODS[match.route];
  if (!allowed.includes(method)) {
    throw new OciError(405, 'UNSUPPORTED', `method ${method} is not allowed here`, undefined, {
      Allow: allowed.join(', '),
    });
  }
  return match;
}
