/**
 * Config loading: every error as `file:line key.path why`, all at once; env substitution
 * (`${VAR}`, `${VAR:-default}`, plain vs quoted); defaults; cross-references.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, formatProblem, loadConfigFile, parseConfig } from '../../../src/config/load.js';
import { compileConfig } from '../../../src/config/compile.js';

const errors = (yaml: string, env: NodeJS.ProcessEnv = {}): string[] => {
  try {
    parseConfig(yaml, 'gw.yaml', env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems.map(formatProblem);
  }
  return [];
};

const ROUTE = `routes:
  - id: r
    match: { pathPrefix: /r }
    upstream: http://u
    auth: { mode: none }
`;

test('unknown keys anywhere are errors at their line', () => {
  assert.deepEqual(errors(`server:\n  port: 1\n  prot: 2\n${ROUTE}`), ['gw.yaml:3 server.prot is not a known key']);
  assert.deepEqual(errors(`${ROUTE}    stripprefix: true\n`), ['gw.yaml:6 routes[0].stripprefix is not a known key']);
  assert.deepEqual(errors(`${ROUTE.replace('mode: none', 'mode: none, scope: x')}`), ['gw.yaml:5 routes[0].auth.scope is not a known key']);
  assert.deepEqual(errors(`extra: 1\n${ROUTE}`), ['gw.yaml:1 extra is not a known key']);
});

test('a missing environment variable is reported at its own line, with the others', () => {
  const yaml = `server:
  host: 127.0.0.1
  port: \${PORT}
admin:
  port: \${ADMIN_PORT:-9091}
issuers:
  - id: a
    issuer: \${ISSUER}
    jwksUri: https://a.test/jwks
${ROUTE}`;
  assert.deepEqual(errors(yaml), [
    'gw.yaml:3 server.port environment variable PORT is not set and has no default',
    'gw.yaml:8 issuers[0].issuer environment variable ISSUER is not set and has no default',
  ]);
  const c = parseConfig(yaml, 'gw.yaml', { PORT: '8088', ISSUER: 'https://a.test' });
  assert.equal(c.server.port, 8088);
  assert.equal(c.admin.port, 9091);
  assert.equal(c.issuers[0].issuer, 'https://a.test');
});

test('plain single references are typed like YAML; quoted ones and embedded ones stay strings', () => {
  assert.deepEqual(errors(`server:\n  port: "\${P}"\n${ROUTE}`, { P: '80' }), ['gw.yaml:2 server.port must be integer (got "80")']);
  const c = parseConfig(`server:\n  port: \${P}\n  trustProxy: \${T:-false}\n  identityHeaderPrefix: x-\${N}-\n${ROUTE}`, 'gw.yaml', { P: '80', N: '1' });
  assert.equal(c.server.port, 80);
  assert.equal(c.server.trustProxy, false);
  assert.equal(c.server.identityHeaderPrefix, 'x-1-');
  const s = parseConfig(`issuers:\n  - { id: a, issuer: "\${I}", jwksUri: https://x/j }\n${ROUTE}`, 'gw.yaml', { I: '123' });
  assert.equal(s.issuers[0].issuer, '123');
  assert.equal(parseConfig(`server: { host: "\${H:-}" }\n${ROUTE}`, 'gw.yaml', {}).server.host, '');
});

test('wrong types and values: key path and what was got', () => {
  assert.deepEqual(errors(`server: { port: 70000, trustProxy: "yes" }\n${ROUTE}`), [
    'gw.yaml:1 server.port must be <= 65535 (got 70000)',
    'gw.yaml:1 server.trustProxy must be boolean (got "yes")',
  ]);
  assert.deepEqual(errors(ROUTE.replace('mode: none', 'mode: nope')), [
    'gw.yaml:5 routes[0].auth.mode must be one of jwt, introspection, jwt_or_introspection, none (got "nope")',
  ]);
  assert.deepEqual(errors(`issuers:\n  - { id: a, issuer: x, jwksUri: https://a/j, algorithms: [HS256] }\n${ROUTE}`), [
    'gw.yaml:2 issuers[0].algorithms[0] must be one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519 (got "HS256")',
  ]);
  assert.deepEqual(errors('routes: []\n'), ['gw.yaml:1 routes must NOT have fewer than 1 items (got [])']);
  assert.deepEqual(errors(ROUTE.replace('    auth: { mode: none }\n', '')), ['gw.yaml:2 routes[0].auth is required']);
});

test('cross-references and policy rules', () => {
  const yaml = `issuers:
  - { id: a, issuer: https://a, jwksUri: https://a/j }
  - { id: a, issuer: https://b, jwksUri: https://b/j }
routes:
  - id: r
    match: { pathPrefix: /r }
    upstream: http://u
    auth: { mode: none, scopes: { allOf: [x] } }
  - id: r
    match: { path: /x, pathPrefix: /x }
    upstream: http://u
    stripPrefix: true
    auth: { mode: jwt, issuers: [zz] }
    forward: { headers: { Host: sub, x-ok: sub } }
  - { id: s, match: { path: /s }, stripPrefix: true, upstream: http://u, auth: { mode: none } }
`;
  assert.deepEqual(errors(yaml), [
    'gw.yaml:3 issuers[1].id duplicates issuers[0].id "a"',
    'gw.yaml:8 routes[0].auth mode: none cannot have issuers, audiences, scopes, claims or forwarded identity',
    'gw.yaml:9 routes[1].id duplicates routes[0].id "r"',
    'gw.yaml:10 routes[1].match needs exactly one of path or pathPrefix',
    'gw.yaml:13 routes[1].auth.issuers[0] names issuer "zz", which is not defined under issuers',
    'gw.yaml:13 routes[1].auth.mode jwt needs at least one issuer',
    'gw.yaml:14 routes[1].forward.headers.Host is a header the gateway does not let a route set',
    'gw.yaml:15 routes[2].stripPrefix needs match.pathPrefix',
  ]);
});

test('a route path that is not in normalized form would never match: refused', () => {
  for (const p of ['/a/../b', '/a//b', '/%61', '/a;b', '/a?x', '/a/./b', '/a%2fb']) {
    const out = errors(ROUTE.replace('pathPrefix: /r', `pathPrefix: "${p}"`));
    assert.equal(out.length, 1, `${p}: ${out.join(' | ')}`);
    assert.match(out[0], /^gw\.yaml:3 routes\[0\]\.match\.pathPrefix must be a normalized path/, p);
  }
});

test('YAML syntax errors and duplicate keys are reported with their line', () => {
  assert.match(errors(`server:\n  port: [1\n${ROUTE}`)[0], /^gw\.yaml:\d+ \(root\) YAML: /);
  assert.match(errors(`server:\n  port: 1\n  port: 2\n${ROUTE}`)[0], /^gw\.yaml:3 \(root\) YAML: Map keys must be unique/);
});

test('defaults from the SPEC are applied; the compiled config is frozen', () => {
  const c = parseConfig(`issuers:\n  - { id: a, issuer: https://a, jwksUri: https://a/j }\n${ROUTE}`, 'gw.yaml', {});
  assert.deepEqual(
    [c.server.host, c.server.port, c.server.trustProxy, c.server.maxTokenBytes, c.server.identityHeaderPrefix, c.server.upstreamTimeoutMs, c.server.shutdownGraceSec],
    ['0.0.0.0', 8080, false, 8192, 'x-auth-', 30000, 30],
  );
  assert.deepEqual([c.admin.host, c.admin.port], ['0.0.0.0', 9090]);
  assert.equal(c.decision, undefined);
  const i = c.issuers[0];
  assert.deepEqual([i.discovery, i.clockToleranceSec, i.jwks.cacheTtlSec, i.jwks.cooldownSec, i.jwks.timeoutMs, i.jwks.maxStaleSec], [false, 30, 600, 30, 3000, 86400]);
  const r = c.routes[0];
  assert.deepEqual([r.stripPrefix, r.websocket, r.forward.authorization, r.auth.scopes.allOf, r.auth.scopes.anyOf], [false, false, 'strip', [], []]);
  const compiled = compileConfig(c);
  assert.ok(Object.isFrozen(compiled) && Object.isFrozen(compiled.routes) && Object.isFrozen(compiled.routes[0].auth));
  assert.ok(Object.isFrozen(compiled.source.issuers[0].jwks));
});

test('loadConfigFile: an unreadable file is one error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tg-'));
  assert.throws(() => loadConfigFile(join(dir, 'missing.yaml')), (e: ConfigError) => /missing\.yaml:0 \(root\) cannot be read: ENOENT/.test(e.message));
  writeFileSync(join(dir, 'ok.yaml'), ROUTE);
  assert.equal(loadConfigFile(join(dir, 'ok.yaml')).routes[0].id, 'r');
});

test('schema errors and cross-reference errors are reported together, in one run', () => {
  const yaml = `issuers:
  - { id: a, issuer: https://a, jwksUri: https://a/j, algorithms: [none] }
routes:
  - id: r
    match: { pathPrefix: /r }
    upstream: http://u
    auth: { mode: jwt, issuers: [b] }
    forward: { headers: { x-a: sub }, extra: 1 }
`;
  assert.deepEqual(errors(yaml), [
    'gw.yaml:2 issuers[0].algorithms[0] must be one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519 (got "none")',
    'gw.yaml:8 routes[0].forward.extra is not a known key',
    'gw.yaml:7 routes[0].auth.issuers[0] names issuer "b", which is not defined under issuers',
    'gw.yaml:7 routes[0].auth.mode jwt needs at least one issuer',
  ]);
  assert.ok(errors('routes: 5\n').length >= 1, 'data too broken for cross-checks still reports the schema error');
});

test('a config error never echoes a secret or a URL that may carry a password', () => {
  const out = errors(`server:\n  redis: { url: 424242 }\n  dpop: { nonceSecret: 31337 }\nissuers:\n  - id: a\n    issuer: https://a.test\n    jwksUri: 55555\n    introspection: { endpoint: 666666, clientId: gw, clientSecret: 987654321 }\n${ROUTE}`);
  assert.equal(out.length, 5, out.join('\n'));
  for (const line of out) {
    assert.match(line, /must be string/);
    assert.doesNotMatch(line, /424242|31337|987654321|55555|666666/, line);
  }
  // Ordinary values are still echoed, which is what makes most errors quick to fix — token sizes included.
  assert.match(errors(`server: { port: "x" }\n${ROUTE}`)[0], /\(got "x"\)/);
  assert.match(errors(`server: { maxTokenBytes: "x" }\n${ROUTE}`)[0], /\(got "x"\)/);
});

test('compiled upstream target: the request options a WebSocket upgrade connects with (IPv6 unbracketed, default port empty)', () => {
  const targets = compileConfig(parseConfig(`
routes:
  - { id: v6, match: { pathPrefix: /a }, upstream: "http://[::1]:8080/base", auth: { mode: none } }
  - { id: tls, match: { pathPrefix: /b }, upstream: "https://API.example.com", auth: { mode: none } }
  - { id: v4, match: { pathPrefix: /c }, upstream: "http://127.0.0.1:81", auth: { mode: none } }
`, 'c.yaml', {})).routes.map((r) => ({ ...r.upstreamTarget }));
  assert.deepEqual(targets, [
    { protocol: 'http:', hostname: '::1', port: '8080' },
    { protocol: 'https:', hostname: 'api.example.com', port: '' },
    { protocol: 'http:', hostname: '127.0.0.1', port: '81' },
  ]);
});

test('server.workers above 4 is refused with the reason (one cache per worker: the IdP load grows with each)', () => {
  const p = errors(`server:\n  workers: 8\n${ROUTE}`);
  assert.equal(p.length, 1);
  assert.match(p[0], /^gw\.yaml:2 server\.workers must be <= 4 \(got 8\): each worker keeps its own key and token caches/);
  assert.equal(errors(`server:\n  workers: 4\n${ROUTE}`).length, 0);
});
