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
 *   caller's token crosses the network in clear.
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

  config.routes.forEach((route, j) => {
    for (let i = 0; i < j; i++) {
      const earlier = config.routes[i];
      if (covers(earlier.match, route.match)) {
        out.push({ path: ['routes', j, 'match'], message: `is unreachable: routes[${i}] (${earlier.id}) comes first and takes every request this route matches` });
        break;
      }
    }
    if (route.auth.mode === 'none') {
      config.routes.forEach((later, k) => {
        if (k <= j || later.auth.mode === 'none') return;
        if (pathCovers(route.match, later.match) && sharesRequests(route.match, later.match)) {
          out.push({
            path: ['routes', j, 'match'],
            message: `mode: none shadows protected routes[${k}] (${later.id}): its requests match here first and pass without a token`,
          });
        }
      });
    }
    if (route.forward.authorization === 'pass') {
      const host = plainHttpHost(route.upstream);
      if (host) out.push({ path: ['routes', j, 'forward', 'authorization'], message: `pass sends the caller's token in clear to ${host} (plain http upstream)` });
    }
  });
  return out;
}
