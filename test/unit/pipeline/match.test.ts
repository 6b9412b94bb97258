/** Route matching: host (port, IPv6, case), exact path, segment-boundary prefix, methods, first match. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostOnly, matchRoute, upstreamPath } from '../../../src/pipeline/match.js';
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
const m = (method: string, host: string | undefined, path: string) => matchRoute(config.routes, method, hostOnly(host), path)?.id ?? null;

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
