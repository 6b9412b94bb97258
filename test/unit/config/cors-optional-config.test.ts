/**
 * Config checks of `auth.optional` and `cors`: an optional route cannot ask anything of a
 * token it may not get; CORS origins are exact origins, `"*"` never goes with credentials;
 * every problem as `file:line key.path why`, and the compiled policy is what was meant.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, formatProblem, parseConfig } from '../../../src/config/load.js';
import { lintConfig } from '../../../src/config/lint.js';
import { describeRoutes } from '../../../src/config/index.js';
import { compileYaml, ISSUER_A } from '../../helpers/config.js';

const errors = (yaml: string): string[] => {
  try {
    parseConfig(yaml, 'gw.yaml', {});
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems.map(formatProblem);
  }
  return [];
};

const route = (auth: string, extra = '') => `issuers:${ISSUER_A}
routes:
  - id: r
    match: { pathPrefix: /r }
    upstream: http://u
    auth: ${auth}
${extra}`;

test('optional on a token mode is valid and compiled; the route list says so', () => {
  for (const mode of ['jwt', 'introspection', 'jwt_or_introspection']) {
    const issuers = mode === 'jwt' ? ISSUER_A : `${ISSUER_A}\n    introspection: { endpoint: https://a.test/i, clientId: c, clientSecret: s }`;
    const c = compileYaml(`issuers:${issuers}\nroutes:\n  - { id: r, match: { pathPrefix: /r }, upstream: http://u, auth: { mode: ${mode}, optional: true } }\n`);
    assert.equal(c.routes[0].auth.optional, true, mode);
    assert.match(describeRoutes(c)[0], / optional /);
  }
  assert.equal(compileYaml(route('{ mode: jwt }')).routes[0].auth.optional, false);
});

test('optional with scopes, claims or a required binding is an error that says why, at auth.optional', () => {
  assert.deepEqual(errors(route('{ mode: jwt, optional: true, scopes: { allOf: [read] } }')), [
    'gw.yaml:10 routes[0].auth.optional cannot be combined with auth.scopes: a request without a token would pass without it; put the paths that need it on a route without optional',
  ]);
  assert.deepEqual(errors(route('{ mode: jwt, optional: true, scopes: { anyOf: [read] } }')).length, 1);
  assert.match(errors(route('{ mode: jwt, optional: true, claims: { tenant: acme } }'))[0], /^gw\.yaml:10 routes\[0\]\.auth\.optional cannot be combined with auth\.claims: /);
  for (const b of ['require-dpop', 'require-mtls', 'require-any']) {
    assert.match(errors(route(`{ mode: jwt, optional: true, binding: ${b} }`))[0], new RegExp(`routes\\[0\\]\\.auth\\.optional cannot be combined with binding: ${b}: a request without a token`));
  }
  // Each conflict is reported.
  assert.equal(errors(route('{ mode: jwt, optional: true, binding: require-dpop, claims: { a: b }, scopes: { allOf: [x] } }')).length, 3);
  assert.deepEqual(errors(route('{ mode: none, optional: true }')), [
    'gw.yaml:10 routes[0].auth.optional applies to jwt, introspection and jwt_or_introspection only: mode none takes no token at all',
  ]);
  assert.match(errors(route('{ mode: jwt, optional: yes-please }'))[0], /routes\[0\]\.auth\.optional must be boolean/);
});

const withCors = (cors: string) => route('{ mode: jwt }', `    cors:\n${cors}`);

test('cors defaults, and the compiled policy', () => {
  const c = compileYaml(withCors('      allowOrigins: [HTTPS://App.Example.com:443, http://localhost:5173]\n'));
  const r = c.routes[0];
  assert.ok(r.cors);
  assert.deepEqual([...r.cors.origins.keys()], ['https://app.example.com', 'http://localhost:5173']);
  assert.equal(r.cors.any, null);
  assert.deepEqual([...r.cors.methods], ['GET', 'HEAD', 'POST']);
  assert.deepEqual([...r.cors.headers], ['authorization', 'content-type']);
  assert.equal(r.cors.origins.get('https://app.example.com')?.preflight['access-control-max-age'], '600');
  assert.equal(compileYaml(route('{ mode: jwt }')).routes[0].cors, null);
  assert.match(describeRoutes(c)[0], / cors=HTTPS:\/\/App\.Example\.com:443,http:\/\/localhost:5173 /);
});

test('"*" with allowCredentials is an error at the entry; "*" with other origins too', () => {
  assert.deepEqual(errors(withCors('      allowOrigins: ["*"]\n      allowCredentials: true\n')), [
    'gw.yaml:12 routes[0].cors.allowOrigins[0] "*" cannot be used with allowCredentials: true (browsers refuse a credentialed answer to any origin); list the exact origins',
  ]);
  assert.deepEqual(errors(withCors('      allowOrigins: ["*", https://a.example]\n')), [
    'gw.yaml:12 routes[0].cors.allowOrigins[1] is already allowed by "*" in the same list: list exact origins, or "*" alone',
  ]);
  assert.deepEqual(errors(withCors('      allowOrigins: ["*", "null"]\n')), []);
  assert.deepEqual(errors(withCors('      allowOrigins: ["*"]\n')), []);
});

test('every origin must be an exact http(s) origin, listed once', () => {
  const bad = errors(withCors(`      allowOrigins:
        - https://app.example.com/
        - https://app.example.com/app
        - app.example.com
        - https://*.example.com
        - ftp://files.example.com
        - https://user:pw@app.example.com
        - https://ok.example
        - HTTPS://OK.example:443
`));
  assert.deepEqual(bad, [
    'gw.yaml:13 routes[0].cors.allowOrigins[0] must be an exact origin: http(s)://host[:port], with no path (not even /), query or credentials (got "https://app.example.com/")',
    'gw.yaml:14 routes[0].cors.allowOrigins[1] must be an exact origin: http(s)://host[:port], with no path (not even /), query or credentials (got "https://app.example.com/app")',
    'gw.yaml:15 routes[0].cors.allowOrigins[2] must be an exact origin: http(s)://host[:port], with no path (not even /), query or credentials (got "app.example.com")',
    'gw.yaml:16 routes[0].cors.allowOrigins[3] must be an exact origin: http(s)://host[:port], with no path (not even /), query or credentials (got "https://*.example.com")',
    'gw.yaml:17 routes[0].cors.allowOrigins[4] must be an exact origin: http(s)://host[:port], with no path (not even /), query or credentials (got "ftp://files.example.com")',
    'gw.yaml:18 routes[0].cors.allowOrigins[5] must be an exact origin: http(s)://host[:port], with no path (not even /), query or credentials (got "https://user:pw@app.example.com")',
    'gw.yaml:20 routes[0].cors.allowOrigins[7] is the same origin as allowOrigins[6] (https://ok.example)',
  ]);
  assert.match(errors(withCors('      allowOrigins: []\n'))[0], /routes\[0\]\.cors\.allowOrigins must NOT have fewer than 1 items/);
  assert.match(errors(withCors('      allowOrigins: [https://a.example]\n      allowMethods: [get]\n'))[0], /allowMethods\[0\] must be an upper-case method name/);
  assert.match(errors(withCors('      allowOrigins: [https://a.example]\n      allowHeaders: ["bad header"]\n'))[0], /allowHeaders\[0\] must be an HTTP header name/);
  assert.match(errors(withCors('      allowOrigins: [https://a.example]\n      allowOrigin: [https://a.example]\n'))[0], /routes\[0\]\.cors\.allowOrigin is not a known key/);
});

test('lint: "null" and plain-http non-loopback origins are warned about', () => {
  const c = parseConfig(withCors('      allowOrigins: ["null", http://app.example.com, http://localhost:3000, https://app.example.com]\n'), 'gw.yaml', {});
  const w = lintConfig(c).filter((p) => p.path[2] === 'cors').map((p) => `${p.path.join('.')} ${p.message}`);
  assert.deepEqual(w, [
    'routes.0.cors.allowOrigins.0 "null" is the origin of every sandboxed iframe and local file: any page can send it',
    'routes.0.cors.allowOrigins.1 app.example.com over plain http: anyone on the network path can serve pages as this origin; use https',
  ]);
});
