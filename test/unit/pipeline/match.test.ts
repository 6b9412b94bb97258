/**
 * Route matching: host (port, IPv6, case), exact path, segment-boundary prefix, methods, first
 * match in file order — through the compiled index, which must choose exactly what a scan in
 * file order chooses, on hand-picked overlaps and on random route tables.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildRouteIndex, hostOnly, matchRoute, matchRouteLinear, upstreamPath } from '../../../src/pipeline/match.js';
import { compileYaml } from '../../helpers/config.js';

const config = compileYaml(`
routes:
  - { id: v6, match: { host: "[::1]", pathPrefix: /v6 }, upstream: http://u, auth: { mode: none } }
  - { id: hostport, match: { host: "API.test:8443", pathPrefix: /hp }, upstream: http://u, auth: { mode: none } }
  - { id: exact, match: { path: /exact }, upstream: http://u, auth: { mode: none } }
  - { id: get, match: { pathPrefix: /m, methods: [GET, HEAD] }, upstream: http://u, auth: { mode: none } }
  - { id: post, match: { pathPrefix: /m, methods: [POST] }, upstream: http://u, auth: { mode: none } }
  - { id: slash, match: { pathPrefix: /svc/ }, upstream: http://u/base/, stripPrefix: true, auth: { mode: none } }
  - { id: orders, match: { pathPrefix: /orders }, upstream: http://u, auth: { mode: none } }
  - { id: orders-shadowed, match: { pathPrefix: /orders/x }, upstream: http://u, auth: { mode: none } }
  - { id: hosted, match: { host: a.test, pathPrefix: / }, upstream: http://u, auth: { mode: none } }
`);
const m = (method: string, host: string | undefined, path: string) => matchRoute(config.routeIndex, method, hostOnly(host), path)?.id ?? null;

test('hostOnly: lower case, port dropped, trailing dots dropped, IPv6 brackets kept', () => {
  assert.equal(hostOnly('API.Example.TEST:8080'), 'api.example.test');
  assert.equal(hostOnly('api.example.test.'), 'api.example.test');
  assert.equal(hostOnly('api.example.test..:8080'), 'api.example.test');
  assert.equal(hostOnly('.'), '');
  assert.equal(hostOnly('[::1]:8080'), '[::1]');
  assert.equal(hostOnly('[::1]'), '[::1]');
  assert.equal(hostOnly(undefined), '');
  assert.equal(hostOnly(''), '');
});

test('host: case-insensitive, port ignored on both sides, IPv6', () => {
  assert.equal(m('GET', '[::1]:9', '/v6'), 'v6');
  assert.equal(m('GET', 'api.test', '/hp/x'), 'hostport', 'a port in the config host is ignored too');
  assert.equal(m('GET', 'API.TEST:1', '/hp'), 'hostport');
  assert.equal(m('GET', 'b.test', '/hp'), null);
  assert.equal(m('GET', undefined, '/hp'), null);
  assert.equal(m('GET', 'a.test', '/anything'), 'hosted');
  assert.equal(m('GET', 'a.test.evil', '/anything'), null);
});

test('exact path and segment-boundary prefixes', () => {
  assert.equal(m('GET', 'x', '/exact'), 'exact');
  assert.equal(m('GET', 'x', '/exact/'), null);
  assert.equal(m('GET', 'x', '/exactly'), null);
  assert.equal(m('GET', 'x', '/orders'), 'orders');
  assert.equal(m('GET', 'x', '/orders/'), 'orders');
  assert.equal(m('GET', 'x', '/orders/x/y'), 'orders', 'first match wins over a more specific later route');
  assert.equal(m('GET', 'x', '/ordersX'), null);
  assert.equal(m('GET', 'x', '/order'), null);
  assert.equal(m('GET', 'x', '/svc'), 'slash', 'a trailing slash in pathPrefix still matches the bare prefix');
  assert.equal(m('GET', 'x', '/svcx'), null);
});

test('methods select among routes with the same path; no route → null', () => {
  assert.equal(m('GET', 'x', '/m/1'), 'get');
  assert.equal(m('HEAD', 'x', '/m/1'), 'get');
  assert.equal(m('POST', 'x', '/m/1'), 'post');
  assert.equal(m('DELETE', 'x', '/m/1'), null);
  assert.equal(m('get', 'x', '/m/1'), null, 'methods are case-sensitive (RFC 9110 §9.1)');
});

test('upstreamPath: stripPrefix and base path', () => {
  const slash = config.routes.find((r) => r.id === 'slash')!;
  assert.equal(upstreamPath(slash, '/svc/a'), '/base/a');
  assert.equal(upstreamPath(slash, '/svc'), '/base/');
  assert.equal(upstreamPath(slash, '/svc/'), '/base/');
  const orders = config.routes.find((r) => r.id === 'orders')!;
  assert.equal(upstreamPath(orders, '/orders/1'), '/orders/1');
});

test('first match in file order holds through the index: overlapping prefixes, hosts, methods, exact paths', () => {
  const c = compileYaml(`
routes:
  - { id: deep-post, match: { pathPrefix: /a/b/c, methods: [POST] }, upstream: http://u, auth: { mode: none } }
  - { id: host-a, match: { host: h.test, pathPrefix: /a/b }, upstream: http://u, auth: { mode: none } }
  - { id: exact-ab, match: { path: /a/b }, upstream: http://u, auth: { mode: none } }
  - { id: a-get, match: { pathPrefix: /a, methods: [GET] }, upstream: http://u, auth: { mode: none } }
  - { id: exact-deep, match: { path: /a/b/c/d }, upstream: http://u, auth: { mode: none } }
  - { id: root-host, match: { host: h.test, pathPrefix: / }, upstream: http://u, auth: { mode: none } }
  - { id: a-any, match: { pathPrefix: /a }, upstream: http://u, auth: { mode: none } }
  - { id: exact-slash, match: { path: /a/b/ }, upstream: http://u, auth: { mode: none } }
  - { id: root, match: { pathPrefix: / }, upstream: http://u, auth: { mode: none } }
  - { id: never, match: { path: /a/b }, upstream: http://u, auth: { mode: none } }
`);
  const q = (method: string, host: string, path: string) => matchRoute(c.routeIndex, method, host, path)?.id ?? null;
  assert.equal(q('POST', 'h.test', '/a/b/c/x'), 'deep-post', 'an earlier deeper prefix beats a later shallower one');
  assert.equal(q('GET', 'h.test', '/a/b/c/x'), 'host-a', 'the earlier route of the host, although deeper ones exist');
  assert.equal(q('GET', 'o.test', '/a/b'), 'exact-ab', 'exact path before later prefixes');
  assert.equal(q('GET', 'o.test', '/a/b/c/d'), 'a-get', 'an earlier prefix beats a later exact path');
  assert.equal(q('PUT', 'o.test', '/a/b/c/d'), 'exact-deep');
  assert.equal(q('PUT', 'o.test', '/a/b/'), 'a-any', 'the earlier prefix /a, not the later exact /a/b/');
  assert.equal(q('PUT', 'h.test', '/zzz'), 'root-host');
  assert.equal(q('PUT', 'o.test', '/zzz'), 'root');
  assert.equal(q('PUT', 'o.test', '/ab'), 'root', '/a does not cover /ab');
  assert.equal(q('GET', 'o.test', '/'), 'root');
  for (const [method, host, path] of [['POST', 'h.test', '/a/b/c/x'], ['GET', 'o.test', '/a/b/c/d'], ['PUT', 'o.test', '/a/b/'], ['PUT', 'o.test', '/ab']]) {
    assert.equal(q(method, host, path), matchRouteLinear(c.routes, method, host, path)?.id ?? null);
  }
});

// Random route tables over a small alphabet of segments, hosts and methods, so that rules
// overlap often; random paths over the same alphabet (plus empty and unknown segments).
const seg = fc.constantFrom('a', 'b', 'c', 'ab', 'x');
// Config paths are normalized (no `//`); a trailing slash is allowed.
const rulePath = fc.tuple(fc.array(seg, { minLength: 0, maxLength: 4 }), fc.boolean())
  .map(([segs, slash]) => '/' + segs.join('/') + (slash && segs.length ? '/' : ''));
const routeArb = fc.record({
  kind: fc.constantFrom('pathPrefix', 'path'),
  rule: rulePath,
  host: fc.option(fc.constantFrom('h1.test', 'h2.test', 'H1.test:8080'), { nil: undefined }),
  methods: fc.option(fc.subarray(['GET', 'POST', 'PUT'], { minLength: 1 }), { nil: undefined }),
});

test('property: the index chooses what a scan in file order chooses, on random route tables and paths', () => {
  fc.assert(fc.property(
    fc.array(routeArb, { minLength: 1, maxLength: 25 }),
    fc.array(fc.tuple(rulePath, fc.constantFrom('', '/', '/x', '/a/', '//a'), fc.constantFrom('GET', 'POST', 'DELETE'), fc.constantFrom('h1.test', 'h2.test', 'h3.test', '')), { minLength: 1, maxLength: 20 }),
    (table, requests) => {
      const yaml = 'routes:\n' + table.map((r, i) => `  - id: r${i}\n    match: ${JSON.stringify({ [r.kind]: r.rule, ...(r.host ? { host: r.host } : {}), ...(r.methods ? { methods: r.methods } : {}) })}\n    upstream: http://u\n    auth: { mode: none }\n`).join('');
      const c = compileYaml(yaml);
      const index = buildRouteIndex(c.routes);
      for (const [path, tail, method, host] of requests) {
        const p = path === '/' ? path + tail.slice(1) : path + tail;
        assert.equal(matchRoute(index, method, host, p)?.id ?? null, matchRouteLinear(c.routes, method, host, p)?.id ?? null, `${method} ${host} ${p}`);
      }
    },
  ), { numRuns: 300 });
});

test('matching cost does not grow with the number of routes on other paths', () => {
  // 5 000 routes under other first segments and hosts: the index looks at none of them.
  const routes = Array.from({ length: 5_000 }, (_, i) => `  - { id: r${i}, match: { host: h${i % 50}.test, pathPrefix: /svc${i}/v1 }, upstream: http://u, auth: { mode: none } }`);
  const c = compileYaml(`routes:\n${routes.join('\n')}\n  - { id: last, match: { pathPrefix: /target }, upstream: http://u, auth: { mode: none } }\n`);
  let visited = 0;
  const counting = c.routes.map((r) => new Proxy(r, { get(t, k, rcv) { if (k === 'methods') visited++; return Reflect.get(t, k, rcv); } }));
  const index = buildRouteIndex(counting);
  assert.equal(matchRoute(index, 'GET', 'h1.test', '/target/x')?.id, 'last');
  assert.equal(matchRoute(index, 'GET', 'h49.test', '/svc4999/v1/x')?.id, 'r4999');
  assert.equal(matchRoute(index, 'GET', 'h1.test', '/svc4999/v1/x'), null, 'another host');
  assert.equal(matchRoute(index, 'GET', 'h1.test', '/nothing'), null);
  assert.ok(visited <= 3, `the index inspected ${visited} routes`);
  visited = 0;
  assert.equal(matchRouteLinear(counting, 'GET', 'h1.test', '/target/x')?.id, 'last');
  assert.ok(visited > 100, 'control: the scan inspects the routes before it');
});
