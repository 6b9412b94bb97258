/**
 * Config lint warnings (issue 6 §7): each rule fires where it should, stays quiet on the
 * usual legitimate patterns, and `tokengate check` prints them as
 * `file:line key.path warning: ...` with exit 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseConfig } from '../../../src/config/load.js';
import { lintConfig } from '../../../src/config/lint.js';
import { formatWarning, lintWarnings, loadCompiled } from '../../../src/config/index.js';

const ISSUER = `
issuers:
  - id: corp
    issuer: https://idp.example.com
    jwksUri: https://idp.example.com/jwks
    audiences: [api]
`;

/** Warnings of `routes` (YAML list items) under a standard issuer, as "path: message". */
function lint(routes: string, issuers = ISSUER, server = ''): string[] {
  const config = parseConfig(`${server}${issuers}\nroutes:\n${routes}`, 't.yaml');
  return lintConfig(config).map((w) => `${w.path.map((s) => (typeof s === 'number' ? `[${s}]` : `.${s}`)).join('').slice(1)}: ${w.message}`);
}

const route = (id: string, match: string, auth = '{ mode: jwt }', extra = '') =>
  `  - id: ${id}\n    match: ${match}\n    upstream: https://svc.internal\n    auth: ${auth}\n${extra}`;

test('a clean config has no warnings', () => {
  assert.deepEqual(lint(
    route('health', '{ path: /api/health, methods: [GET] }', '{ mode: none }') +
    route('api', '{ pathPrefix: /api }') +
    route('admin-host', '{ host: admin.test, pathPrefix: /admin }') +
    route('other-host', '{ host: www.test, pathPrefix: /admin }', '{ mode: none }'),
  ), []);
});

test('issuer without audiences: warned when a route relies on it, not when every route sets audiences', () => {
  const noAud = ISSUER.replace('    audiences: [api]\n', '');
  assert.deepEqual(lint(route('a', '{ pathPrefix: /a }') + route('b', '{ pathPrefix: /b }', '{ mode: jwt, audiences: [b-api] }'), noAud),
    ['issuers[0]: has no audiences and route(s) a set none: any token this issuer minted for another service is accepted']);
  assert.deepEqual(lint(route('b', '{ pathPrefix: /b }', '{ mode: jwt, audiences: [b-api] }'), noAud), []);
  assert.deepEqual(lint(route('pub', '{ pathPrefix: /p }', '{ mode: none }'), noAud), []);
});

test('mode: none on a prefix that covers a later protected route: shadow (and unreachable when total)', () => {
  assert.deepEqual(lint(route('pub', '{ pathPrefix: /api }', '{ mode: none }') + route('admin', '{ pathPrefix: /api/admin }')), [
    'routes[0].match: mode: none shadows protected routes[1] (admin): its requests match here first and pass without a token',
    'routes[1].match: is unreachable: routes[0] (pub) comes first and takes every request this route matches',
  ]);
  // GET-only public prefix: POSTs still reach the protected route, GETs do not.
  assert.deepEqual(lint(route('pub', '{ pathPrefix: /api, methods: [GET] }', '{ mode: none }') + route('admin', '{ path: /api/admin }')), [
    'routes[0].match: mode: none shadows protected routes[1] (admin): its requests match here first and pass without a token',
  ]);
  // A catch-all public route first shadows everything.
  assert.equal(lint(route('all', '{ pathPrefix: / }', '{ mode: none }') + route('x', '{ pathPrefix: /x }')).length, 2);
  // Disjoint methods or hosts: nothing shadowed.
  assert.deepEqual(lint(route('pub', '{ pathPrefix: /api, methods: [GET] }', '{ mode: none }') + route('w', '{ pathPrefix: /api, methods: [POST] }')), []);
  assert.deepEqual(lint(route('pub', '{ host: a.test, pathPrefix: /api }', '{ mode: none }') + route('w', '{ host: b.test, pathPrefix: /api }')), []);
});

test('unreachable routes: an earlier route takes every request', () => {
  assert.deepEqual(lint(route('a', '{ pathPrefix: /orders }') + route('b', '{ path: /orders/1 }')),
    ['routes[1].match: is unreachable: routes[0] (a) comes first and takes every request this route matches']);
  assert.deepEqual(lint(route('a', '{ pathPrefix: /orders/ }') + route('b', '{ pathPrefix: /orders, methods: [GET] }')),
    ['routes[1].match: is unreachable: routes[0] (a) comes first and takes every request this route matches']);
  assert.deepEqual(lint(route('a', '{ pathPrefix: /orders, methods: [GET] }') + route('b', '{ pathPrefix: /orders, methods: [GET, POST] }')), []);
  assert.deepEqual(lint(route('a', '{ host: a.test, pathPrefix: /orders }') + route('b', '{ pathPrefix: /orders }')), []);
  assert.deepEqual(lint(route('a', '{ pathPrefix: /ordersX }') + route('b', '{ pathPrefix: /orders }')), []);
});

test('plain-http IdP URLs to a non-loopback host are warned (loopback is not)', () => {
  const remote = `
issuers:
  - id: corp
    issuer: http://idp.internal
    discovery: true
    audiences: [api]
  - id: local
    issuer: http://127.0.0.1:8080
    jwksUri: http://127.0.0.1:8080/jwks
    audiences: [api]
  - id: intro
    issuer: http://intro.internal
    jwksUri: http://intro.internal/jwks
    audiences: [api]
    introspection: { endpoint: http://intro.internal/introspect, clientId: c, clientSecret: s }
`;
  const server = 'server: { allowInsecureHttpHosts: [127.0.0.1, idp.internal, intro.internal] }\n';
  assert.deepEqual(lint(route('a', '{ pathPrefix: /a }'), remote, server), [
    'issuers[0].issuer: discovery over plain http to idp.internal: anyone on the network path can replace keys or answers; use https',
    'issuers[2].jwksUri: JWKS over plain http to intro.internal: anyone on the network path can replace keys or answers; use https',
    'issuers[2].introspection.endpoint: introspection over plain http to intro.internal: anyone on the network path can replace keys or answers; use https',
  ]);
});

test('authorization: pass to a plain-http, non-loopback upstream is warned', () => {
  const pass = (upstream: string) => `  - id: p\n    match: { pathPrefix: /p }\n    upstream: ${upstream}\n    auth: { mode: jwt }\n    forward: { authorization: pass }\n`;
  assert.deepEqual(lint(pass('http://orders.internal:3000')),
    ["routes[0].forward.authorization: pass sends the caller's token in clear to orders.internal (plain http upstream)"]);
  assert.deepEqual(lint(pass('https://orders.internal')), []);
  assert.deepEqual(lint(pass('http://127.0.0.1:3000')), []);
  assert.deepEqual(lint(pass('http://localhost:3000')), []);
});

test('warnings carry file, line and key path; `tokengate check` prints them and exits 0', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'tokengate-lint-')), 'g.yaml');
  writeFileSync(file, `${ISSUER}routes:
  - id: pub
    match: { pathPrefix: /api }
    upstream: https://svc.internal
    auth: { mode: none }
  - id: admin
    match: { pathPrefix: /api/admin }
    upstream: https://svc.internal
    auth: { mode: jwt }
`);
  const lines = lintWarnings(file, loadCompiled(file)).map(formatWarning);
  assert.deepEqual(lines, [
    `${file}:9 routes[0].match warning: mode: none shadows protected routes[1] (admin): its requests match here first and pass without a token`,
    `${file}:13 routes[1].match warning: is unreachable: routes[0] (pub) comes first and takes every request this route matches`,
  ]);
  const run = await new Promise<{ code: number; out: string; err: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'check', '--config', file], { timeout: 60_000 }, (e, out, err) =>
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, out, err }));
  });
  assert.equal(run.code, 0, run.err);
  assert.match(run.out, /OK, 2 route\(s\)/);
  assert.equal(run.err, `${lines.join('\n')}\n${file}: 2 warning(s)\n`);
});

// ---- the overlap warnings against an all-pairs reference ---------------------------------

type M = { path?: string; pathPrefix?: string; host?: string; methods?: string[] };
/** The overlap rules read directly: every pair of routes compared, in file order. */
function referenceOverlaps(routes: Array<{ id: string; match: M; none: boolean }>): string[] {
  const prefixOf = (m: M) => (m.pathPrefix === undefined ? null : m.pathPrefix.replace(/\/$/, ''));
  const under = (p: string, pre: string) => pre === '' || p === pre || p.startsWith(pre + '/');
  const pathCovers = (a: M, b: M) => {
    const pa = prefixOf(a);
    if (pa === null) return b.path === a.path;
    return under(b.path ?? (prefixOf(b) as string), pa);
  };
  const host = (m: M) => m.host?.toLowerCase() ?? null;
  const covers = (a: M, b: M) => pathCovers(a, b) && (host(a) === null || host(a) === host(b)) &&
    (a.methods === undefined || (b.methods !== undefined && b.methods.every((x) => a.methods!.includes(x))));
  const shares = (a: M, b: M) => !(host(a) !== null && host(b) !== null && host(a) !== host(b)) &&
    (a.methods === undefined || b.methods === undefined || a.methods.some((x) => b.methods!.includes(x)));
  const out: string[] = [];
  routes.forEach((r, j) => {
    const i = routes.findIndex((e, i) => i < j && covers(e.match, r.match));
    if (i !== -1) out.push(`routes[${j}].match: is unreachable: routes[${i}] (${routes[i].id}) comes first and takes every request this route matches`);
    if (r.none) {
      routes.forEach((l, k) => {
        if (k > j && !l.none && pathCovers(r.match, l.match) && shares(r.match, l.match)) {
          out.push(`routes[${j}].match: mode: none shadows protected routes[${k}] (${l.id}): its requests match here first and pass without a token`);
        }
      });
    }
  });
  return out;
}

test('property: the unreachable and shadow warnings are those of an all-pairs comparison', () => {
  const seg = fc.constantFrom('a', 'b', 'ab', 'c');
  const rulePath = fc.tuple(fc.array(seg, { maxLength: 3 }), fc.boolean()).map(([s, slash]) => '/' + s.join('/') + (slash && s.length ? '/' : ''));
  const routeArb = fc.record({
    kind: fc.constantFrom('path', 'pathPrefix'),
    rule: rulePath,
    host: fc.option(fc.constantFrom('a.test', 'b.test'), { nil: undefined }),
    methods: fc.option(fc.subarray(['GET', 'POST'], { minLength: 1 }), { nil: undefined }),
    none: fc.boolean(),
  });
  fc.assert(fc.property(fc.array(routeArb, { minLength: 1, maxLength: 14 }), (table) => {
    const routes = table.map((r, i) => ({
      id: `r${i}`, none: r.none,
      match: { [r.kind]: r.rule, ...(r.host ? { host: r.host } : {}), ...(r.methods ? { methods: r.methods } : {}) } as M,
    }));
    const yaml = routes.map((r) => route(r.id, JSON.stringify(r.match), r.none ? '{ mode: none }' : '{ mode: jwt }')).join('');
    assert.deepEqual(lint(yaml), referenceOverlaps(routes));
  }), { numRuns: 300 });
});
