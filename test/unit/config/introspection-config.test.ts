import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../../src/config/load.js';
import { compileConfig } from '../../../src/config/compile.js';

function problems(yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(yaml, 'gw.yaml', env);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.problems.map((p) => `${p.line} ${p.path} ${p.message}`);
  }
  return [];
}
const routes = (mode: string, issuers = '') => `
routes:
  - id: r
    match: { pathPrefix: / }
    upstream: http://127.0.0.1:1
    auth: { mode: ${mode}${issuers} }`;

test('cacheStore: redis is accepted (the shared store on server.redis)', () => {
  assert.deepEqual(problems(`
issuers:
  - id: corp
    issuer: https://idp.example
    introspection:
      endpoint: https://idp.example/introspect
      clientId: gw
      clientSecret: \${SECRET}
      cacheStore: redis
${routes('introspection')}`, { SECRET: 's' }), []);
});

test('an introspection-only issuer is valid; clientSecret comes from the environment', () => {
  const yaml = `
issuers:
  - id: corp
    issuer: https://idp.example
    introspection: { endpoint: "https://idp.example/introspect", clientId: gw, clientSecret: "\${SECRET}" }
${routes('introspection')}`;
  assert.deepEqual(problems(yaml, { SECRET: 's' }), []);
  const cfg = parseConfig(yaml, 'gw.yaml', { SECRET: 'from-env' });
  const intro = cfg.issuers[0].introspection!;
  assert.equal(intro.clientSecret, 'from-env');
  assert.deepEqual(
    { authMethod: intro.authMethod, cacheTtlSec: intro.cacheTtlSec, negativeCacheTtlSec: intro.negativeCacheTtlSec, cacheStore: intro.cacheStore },
    { authMethod: 'client_secret_basic', cacheTtlSec: 60, negativeCacheTtlSec: 5, cacheStore: 'memory' },
  );
  assert.match(problems(yaml, {}).join('\n'), /clientSecret/);
});

test('jwt_or_introspection needs an introspection issuer and a JWT issuer', () => {
  const jwtOnly = `
issuers:
  - { id: corp, issuer: "https://idp.example", jwksUri: "https://idp.example/jwks" }
${routes('jwt_or_introspection')}`;
  assert.deepEqual(problems(jwtOnly), ['9 routes[0].auth.mode jwt_or_introspection needs an issuer with an introspection block']);
  const introOnly = `
issuers:
  - { id: corp, issuer: "https://idp.example", introspection: { endpoint: "https://idp.example/i", clientId: gw, clientSecret: s } }
${routes('jwt_or_introspection')}`;
  assert.deepEqual(problems(introOnly), ['9 routes[0].auth.mode jwt_or_introspection needs an issuer with jwksUri or discovery (for the JWTs)']);
});

test('two issuers sharing an `iss` are both reachable by id on a route', () => {
  const cfg = compileConfig(parseConfig(`
issuers:
  - { id: one, issuer: "https://idp.example", introspection: { endpoint: "https://idp.example/i", clientId: a, clientSecret: s } }
  - { id: two, issuer: "https://idp.example", introspection: { endpoint: "https://idp.example/i", clientId: b, clientSecret: s } }
${routes('introspection')}`, 'gw.yaml', {}));
  assert.deepEqual([...cfg.routes[0].auth.issuersById.keys()], ['one', 'two']);
});
