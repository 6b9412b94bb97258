/**
 * Lint warnings for a valid config: choices that are legal but probably not what the
 * operator meant, or that weaken a policy. They never fail a config (`tokengate check`
 * exits 0 and prints them as `file:line key.path warning: ...`; the gateway logs them
 * at start).
 *
 * - an issuer without `audiences` used by a route without `auth.audiences`: tokens the
 *   issuer minted for any other service are accepted (RFC 8725 §3.9, RFC 9068 §4);
 * - a `mode: none` route whose match covers the path of a later protected route: the
 *   first match wins, so those requests pass without a token;
 * - a route that can never match because an earlier one takes every request it would;
 * - plain-http JWKS, discovery or introspection URLs to a non-loopback host (allowed
 *   only through `server.allowInsecureHttpHosts`): keys and answers can be replaced on
 *   the network;
 * - `forward.authorization: pass` to a plain-http upstream on a non-loopback host: the
 *   caller's token crosses the network in clear;
 * - `cors.allowOrigins` listing `"null"`: sandboxed iframes and `file:`/`data:` pages all
 *   send `Origin: null`, so any page on the web can claim it (HTML, "opaque origin");
 * - a `cors` origin on plain http that is not loopback: a network attacker can serve
 *   that origin's pages and call the API as them.
 */
import { isLoopbackHost } from '../idp/http.js';
import { hostOnly } from '../pipeline/host.js';
import type { CrossProblem } from './cross-check.js';
import type { Config, RouteConfig } from './schema.js';

type Match = RouteConfig['match'];

/** A path rule: an exact path or a prefix ('' = everything), as compile.ts reads it. */
function rule(m: Match): { exact: string | null; prefix: string | null } {
  if (m.path !== undefined) return { exact: m.path, prefix: null };
  const p = m.pathPrefix ?? '/';
  return { exact: null, prefix: p.endsWith('/') ? p.slice(0, -1) : p };
}

function under(path: string, prefix: string): boolean {
  return prefix === '' || path === prefix || path.startsWith(prefix + '/');
}

/** Whether every path `b` matches is also matched by `a`. */
function pathCovers(a: Match, b: Match): boolean {
  const ra = rule(a);
  const rb = rule(b);
  if (ra.exact !== null) return rb.exact === ra.exact;
  const pa = ra.prefix as string;
  return rb.exact !== null ? under(rb.exact, pa) : under(rb.prefix as string, pa);
}

// Compared as the matcher compares them (compile.ts, match.ts): case, port and trailing dots ignored.
const hostOf = (m: Match) => (m.host ? hostOnly(m.host) : null);

/** Whether `a` takes every request `b` would (host, methods and path). */
function covers(a: Match, b: Match): boolean {
  if (!pathCovers(a, b)) return false;
  if (hostOf(a) !== null && hostOf(a) !== hostOf(b)) return false;
  if (a.methods === undefined) return true;
  return b.methods !== undefined && b.methods.every((m) => a.methods!.includes(m));
}

/** Whether some request with a path `b` matches could also match `a`'s host and methods. */
function sharesRequests(a: Match, b: Match): boolean {
  if (hostOf(a) !== null && hostOf(b) !== null && hostOf(a) !== hostOf(b)) return false;
  if (a.methods === undefined || b.methods === undefined) return true;
  return a.methods.some((m) => b.methods!.includes(m));
}

/** A node of the trie of route path rules: the routes whose prefix ends here, or whose exact path is this one. */
interface RuleNode {
  children: Map<string, RuleNode>;
  /** Positions in file order (ascending). */
  prefix: number[];
  exact: number[];
}

/** The trie and, by route position, the node its rule ends at. */
interface RuleTrie {
  root: RuleNode;
  ends: RuleNode[];
}

/** The nodes along a rule's segments ('' is the root), creating them; the last is the rule's own. */
function walk(root: RuleNode, path: string): RuleNode[] {
  const nodes = [root];
  if (path === '') return nodes;
  let node = root;
  for (const seg of path.slice(1).split('/')) {
    let next = node.children.get(seg);
    if (!next) node.children.set(seg, (next = { children: new Map(), prefix: [], exact: [] }));
    nodes.push((node = next));
  }
  return nodes;
}

/**
 * The trie of every route's path rule, by segment. A prefix covers a path at a segment
 * boundary exactly when its segments begin the path's (`under`), so the rules covering a
 * route's lie on the route's own walk from the root, and those it covers lie below it.
 */
function ruleTrie(routes: readonly RouteConfig[]): RuleTrie {
  const root: RuleNode = { children: new Map(), prefix: [], exact: [] };
  const ends = routes.map((r, i) => {
    const rr = rule(r.match);
    const nodes = walk(root, rr.exact ?? (rr.prefix as string));
    const end = nodes[nodes.length - 1];
    (rr.exact !== null ? end.exact : end.prefix).push(i);
    return end;
  });
  return { root, ends };
}

/** The first route before `j` that takes every request route `j` would, or -1. */
function firstCovering(routes: readonly RouteConfig[], trie: RuleTrie, j: number): number {
  const rj = rule(routes[j].match);
  const nodes = walk(trie.root, rj.exact ?? (rj.prefix as string));
  let best = -1;
  const consider = (list: readonly number[]) => {
    for (const i of list) {
      if (i >= j || (best !== -1 && i >= best)) return;
      if (covers(routes[i].match, routes[j].match)) {
        best = i;
        return;
      }
    }
  };
  for (const n of nodes) consider(n.prefix);
  if (rj.exact !== null) consider(nodes[nodes.length - 1].exact);
  return best;
}

/** Positions after `j`, ascending, of the routes whose path rule route `j`'s covers. */
function coveredLater(trie: RuleTrie, j: number, exact: boolean): number[] {
  const end = trie.ends[j];
  const found: number[] = [];
  if (exact) {
    for (const k of end.exact) if (k > j) found.push(k);
    return found;
  }
  const stack = [end];
  while (stack.length) {
    const n = stack.pop() as RuleNode;
    for (const k of n.prefix) if (k > j) found.push(k);
    for (const k of n.exact) if (k > j) found.push(k);
    for (const c of n.children.values()) stack.push(c);
  }
  return found.sort((a, b) => a - b);
}

function plainHttpHost(url: string | undefined): string | null {
  if (!url) return null;
  try {
    const u = new URL(url);
    return u.protocol === 'http:' && !isLoopbackHost(u.hostname) ? u.hostname : null;
  } catch {
    return null;
  }
}

/** Every lint warning of a validated `config`, with the key path it concerns. */
export function lintConfig(config: Config): CrossProblem[] {
  const out: CrossProblem[] = [];

  config.issuers.forEach((iss, i) => {
    if (!iss.audiences) {
      const loose = config.routes.filter((r) => r.auth.mode !== 'none' && !r.auth.audiences && (r.auth.issuers ?? [iss.id]).includes(iss.id));
      if (loose.length) {
        out.push({
          path: ['issuers', i],
          message: `has no audiences and route(s) ${loose.map((r) => r.id).join(', ')} set none: any token this issuer minted for another service is accepted`,
        });
      }
    }
    const insecure: Array<[Array<string | number>, string | undefined, string]> = [
      [['issuers', i, 'jwksUri'], iss.jwksUri, 'JWKS'],
      [['issuers', i, 'issuer'], iss.discovery ? iss.issuer : undefined, 'discovery'],
      [['issuers', i, 'introspection', 'endpoint'], iss.introspection?.endpoint, 'introspection'],
    ];
    for (const [path, url, what] of insecure) {
      const host = plainHttpHost(url);
      if (host) out.push({ path, message: `${what} over plain http to ${host}: anyone on the network path can replace keys or answers; use https` });
    }
  });

  // The overlap checks look only at routes whose path rules lie on one path of the segment
  // trie (an ancestor covers, a descendant is covered), so that they stay near-linear in the
  // number of routes instead of comparing every pair.
  const trie = ruleTrie(config.routes);
  config.routes.forEach((route, j) => {
    const earlier = firstCovering(config.routes, trie, j);
    if (earlier !== -1) {
      out.push({ path: ['routes', j, 'match'], message: `is unreachable: routes[${earlier}] (${config.routes[earlier].id}) comes first and takes every request this route matches` });
    }
    if (route.auth.mode === 'none') {
      for (const k of coveredLater(trie, j, route.match.path !== undefined)) {
        const later = config.routes[k];
        if (later.auth.mode === 'none' || !pathCovers(route.match, later.match) || !sharesRequests(route.match, later.match)) continue;
        out.push({
          path: ['routes', j, 'match'],
          message: `mode: none shadows protected routes[${k}] (${later.id}): its requests match here first and pass without a token`,
        });
      }
    }
    if (route.forward.authorization === 'pass') {
      const host = plainHttpHost(route.upstream);
      if (host) out.push({ path: ['routes', j, 'forward', 'authorization'], message: `pass sends the caller's token in clear to ${host} (plain http upstream)` });
    }
    route.cors?.allowOrigins.forEach((origin, i) => {
      const path = ['routes', j, 'cors', 'allowOrigins', i];
      if (origin === 'null') out.push({ path, message: '"null" is the origin of every sandboxed iframe and local file: any page can send it' });
      const host = plainHttpHost(origin);
      if (host) out.push({ path, message: `${host} over plain http: anyone on the network path can serve pages as this origin; use https` });
    });
  });
  return out;
}
