/**
 * Route matching: the first route, in file order, whose host, path and method all match.
 *
 * The routes are indexed once per config ({@link buildRouteIndex}) in a trie of path
 * segments, so that a request looks only at the routes whose path rule lies on its own
 * path, whatever the number of routes; among those, the lowest file position that also
 * matches host and method wins, exactly as a scan in file order would choose
 * ({@link matchRouteLinear}, the reference the index is tested against).
 *
 * @example
 *   const index = buildRouteIndex(compiled.routes);
 *   const route = matchRoute(index, 'GET', hostOnly(req.headers.host), '/orders/1');
 */
import type { CompiledRoute, RouteIndex, RouteIndexNode } from '../config/compiled-types.js';

export { hostOnly } from './host.js';

/** Whether `path` (normalized) falls under `route`'s path rule, at a segment boundary. */
export function pathMatches(route: CompiledRoute, path: string): boolean {
  if (route.exactPath !== null) return path === route.exactPath;
  const p = route.prefix as string;
  if (p === '') return true;
  return path.startsWith(p) && (path.length === p.length || path.charCodeAt(p.length) === 0x2f /* / */);
}

/** The reference matcher: a scan in file order. `host` is already `hostOnly`. */
export function matchRouteLinear(
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

interface BuildNode {
  children: Map<string, BuildNode>;
  prefixByHost: Map<string, number[]>;
  prefixAnyHost: number[];
  exactByHost: Map<string, number[]>;
  exactAnyHost: number[];
}

const newNode = (): BuildNode => ({ children: new Map(), prefixByHost: new Map(), prefixAnyHost: [], exactByHost: new Map(), exactAnyHost: [] });

/**
 * Indexes `routes` (in file order) for {@link matchRoute}: each route's path rule is split
 * into segments — `pathPrefix: /a/b` ends at node a → b and covers every path below it, a
 * prefix of `/` is the root, `path: /a/b` names node a → b exactly. A path matches a prefix
 * at a segment boundary exactly when the prefix's segments begin the path's, so walking the
 * request's segments meets every route that can match it, and no other. Linear in the
 * total length of the routes' paths.
 */
export function buildRouteIndex(routes: readonly CompiledRoute[]): RouteIndex {
  const root = newNode();
  routes.forEach((r, i) => {
    const rule = r.exactPath ?? (r.prefix as string);
    let node = root;
    // Rules are absolute paths (the schema requires the leading `/`); '' is the prefix `/`.
    if (rule !== '' && rule.charCodeAt(0) !== 0x2f) throw new Error(`route ${r.id}: path rule is not absolute`);
    if (rule !== '') {
      let start = 1;
      for (;;) {
        const slash = rule.indexOf('/', start);
        const seg = slash === -1 ? rule.slice(start) : rule.slice(start, slash);
        let next = node.children.get(seg);
        if (!next) node.children.set(seg, (next = newNode()));
        node = next;
        if (slash === -1) break;
        start = slash + 1;
      }
    }
    const exact = r.exactPath !== null;
    if (r.host === null) (exact ? node.exactAnyHost : node.prefixAnyHost).push(i);
    else {
      const byHost = exact ? node.exactByHost : node.prefixByHost;
      const list = byHost.get(r.host);
      if (list) list.push(i);
      else byHost.set(r.host, [i]);
    }
  });
  return Object.freeze({ routes, root: freezeNode(root) });
}

function freezeNode(n: BuildNode): RouteIndexNode {
  const children = new Map<string, RouteIndexNode>();
  for (const [seg, child] of n.children) children.set(seg, freezeNode(child));
  return Object.freeze({
    children,
    prefixByHost: n.prefixByHost,
    prefixAnyHost: Object.freeze(n.prefixAnyHost),
    exactByHost: n.exactByHost,
    exactAnyHost: Object.freeze(n.exactAnyHost),
  });
}

/**
 * The first matching route in file order, or null (→ 404). `host` is already `hostOnly`;
 * `path` is the normalized path. Given a route array instead of an index, scans it.
 */
export function matchRoute(
  table: RouteIndex | readonly CompiledRoute[],
  method: string,
  host: string,
  path: string,
): CompiledRoute | null {
  if (Array.isArray(table)) return matchRouteLinear(table as readonly CompiledRoute[], method, host, path);
  const { routes, root } = table as RouteIndex;
  let best = Infinity;
  let node: RouteIndexNode | undefined = root;
  best = firstFit(routes, node.prefixAnyHost, method, best);
  best = firstFit(routes, node.prefixByHost.get(host), method, best);
  if (path.charCodeAt(0) === 0x2f /* / */) {
    let start = 1;
    for (;;) {
      const slash = path.indexOf('/', start);
      node = node.children.get(slash === -1 ? path.slice(start) : path.slice(start, slash));
      if (node === undefined) break;
      best = firstFit(routes, node.prefixAnyHost, method, best);
      best = firstFit(routes, node.prefixByHost.get(host), method, best);
      if (slash === -1) {
        // The whole path walked: exact-path routes of this very path apply too.
        best = firstFit(routes, node.exactAnyHost, method, best);
        best = firstFit(routes, node.exactByHost.get(host), method, best);
        break;
      }
      start = slash + 1;
    }
  }
  return best === Infinity ? null : routes[best];
}

/**
 * The lowest position in `list` (ascending) below `best` whose route allows `method`, else
 * `best`. Host and path are already known to match for every route in the list.
 */
function firstFit(routes: readonly CompiledRoute[], list: readonly number[] | undefined, method: string, best: number): number {
  if (list === undefined) return best;
  for (let k = 0; k < list.length; k++) {
    const i = list[k];
    if (i >= best) return best;
    const m = routes[i].methods;
    if (m === null || m.has(method)) return i;
  }
  return best;
}

/**
 * The first of `corsRoutes` (the routes with `cors`, in file order) whose host and path
 * match, whatever its methods. CORS is about a resource (Fetch §3.2): a preflight for a
 * method the route does not take is refused by that route's policy, and a 404 for another
 * method is readable by its origins.
 */
export function corsRouteAt(corsRoutes: readonly CompiledRoute[], host: string, path: string): CompiledRoute | null {
  for (let i = 0; i < corsRoutes.length; i++) {
    const r = corsRoutes[i];
    if ((r.host === null || r.host === host) && pathMatches(r, path)) return r;
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
