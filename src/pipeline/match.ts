/**
 * Route matching: the first route, in file order, whose host, path and method all match.
 */
import type { CompiledRoute } from '../config/compile.js';

/**
 * Lower-cased host without port (`[v6]` kept in brackets) and without the trailing dots of a
 * fully-qualified spelling (`admin.test.` names `admin.test`, RFC 1034 §3.1, and upstreams'
 * virtual hosts read it so: it must meet the same route); '' when absent.
 */
export function hostOnly(hostHeader: string | undefined): string {
  if (!hostHeader) return '';
  const h = hostHeader.toLowerCase();
  if (h.charCodeAt(0) === 0x5b /* [ */) {
    const end = h.indexOf(']');
    return end === -1 ? h : h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  let end = colon === -1 ? h.length : colon;
  while (end > 0 && h.charCodeAt(end - 1) === 0x2e /* . */) end--;
  return h.slice(0, end);
}

/** Whether `path` (normalized) falls under `route`'s path rule, at a segment boundary. */
export function pathMatches(route: CompiledRoute, path: string): boolean {
  if (route.exactPath !== null) return path === route.exactPath;
  const p = route.prefix as string;
  if (p === '') return true;
  return path.startsWith(p) && (path.length === p.length || path.charCodeAt(p.length) === 0x2f /* / */);
}

/** The first matching route, or null (→ 404). `host` is already {@link hostOnly}. */
export function matchRoute(
  routes: readonly CompiledRoute[],
  method: string,
  host: string,
  path: string,
): CompiledRoute | null {
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i];
    if (r.host !== null && r.host !== host) continue;
    if (r.methods !== null && !r.methods.has(method)) continue;
    if (pathMatches(r, path)) return r;
  }
  return null;
}

/**
 * The first route with `cors` whose host and path match, whatever its methods. CORS is
 * about a resource (Fetch §3.2): a preflight for a method the route does not take is
 * refused by that route's policy, and a 404 for another method is readable by its origins.
 */
export function corsRouteAt(routes: readonly CompiledRoute[], host: string, path: string): CompiledRoute | null {
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i];
    if (r.cors !== null && (r.host === null || r.host === host) && pathMatches(r, path)) return r;
  }
  return null;
}

/** The path the upstream receives: after `stripPrefix`, under the upstream's base path. */
export function upstreamPath(route: CompiledRoute, path: string): string {
  let p = path;
  if (route.stripPrefix && route.prefix) {
    p = path.slice(route.prefix.length);
    if (p === '') p = '/';
  }
  return route.upstreamBasePath + p;
}
