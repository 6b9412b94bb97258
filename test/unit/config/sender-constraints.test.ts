import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../../src/config/load.js';
import { compileConfig } from '../../../src/config/compile.js';

const base = (server = '', auth = '{ mode: jwt }') => `
server:
${server}
issuers:
  - { id: a, issuer: https://idp.example.com, jwksUri: https://idp.example.com/jwks }
routes:
  - id: r
    match: { pathPrefix: /api }
    upstream: http://127.0.0.1:9
    auth: ${auth}
`;

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, 'g.yaml', env);
    return [];
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.problems.map((p) => `${p.path} ${p.message}`);
  }
}

test('defaults are the SPEC ones', () => {
  const c = parseConfig(base('  port: 8080'), 'g.yaml', {});
  assert.deepEqual(c.server.dpop, { proofMaxAgeSec: 60, algorithms: ['ES256', 'EdDSA', 'RS256', 'PS256'], nonce: false, replayStore: 'memory', replayCacheSize: 200000 });
  assert.deepEqual(c.server.redis, { url: 'redis://127.0.0.1:6379', commandTimeoutMs: 500 });
  assert.deepEqual(c.server.clientCert, { header: 'x-forwarded-client-cert', trustedProxies: ['127.0.0.1/32'] });
  assert.equal(c.routes[0].auth.binding, 'allow');
  const compiled = compileConfig(c);
  assert.equal(compiled.dpopAlgs, 'ES256 EdDSA RS256 PS256');
  assert.equal(compiled.clientCert.trusted('127.0.0.1'), true);
  assert.equal(compiled.clientCert.trusted('::ffff:127.0.0.1'), true);
  assert.equal(compiled.clientCert.trusted('127.0.0.2'), false);
  assert.equal(compiled.clientCert.trusted(undefined), false);
});

test('server.redis.url defaults to $REDIS_URL when set (${REDIS_URL:-redis://127.0.0.1:6379})', () => {
  assert.equal(parseConfig(base('  port: 1'), 'g.yaml', { REDIS_URL: 'rediss://cache:6380/2' }).server.redis.url, 'rediss://cache:6380/2');
  assert.equal(parseConfig(base('  redis: { url: "redis://x:1" }'), 'g.yaml', { REDIS_URL: 'redis://y:2' }).server.redis.url, 'redis://x:1');
});

test('binding values, and what is refused', () => {
  for (const b of ['allow', 'require-dpop', 'require-mtls', 'require-any']) {
    assert.deepEqual(problems(base('  port: 1', `{ mode: jwt, binding: ${b} }`)), []);
  }
  assert.match(problems(base('  port: 1', '{ mode: jwt, binding: require-everything }'))[0], /^routes\[0\]\.auth\.binding must be one of allow, require-dpop, require-mtls, require-any/);
  assert.deepEqual(problems(base('  port: 1', '{ mode: none, binding: require-dpop }')), ['routes[0].auth.binding needs a token: mode none cannot require a binding']);
  assert.deepEqual(problems(base('  dpop: { nonce: true }')), ['server.dpop.nonceSecret is required when nonce: true (every replica must derive the same nonces)']);
  assert.deepEqual(problems(base('  dpop: { nonce: true, nonceSecret: short }'))[0], 'server.dpop.nonceSecret must NOT have fewer than 32 characters'); // the value itself is never echoed
  assert.deepEqual(problems(base('  dpop: { algorithms: [HS256] }')).length, 1);
  assert.deepEqual(problems(base('  clientCert: { trustedProxies: [10.0.0.0/33] }')), ['server.clientCert.trustedProxies[0] is not an IP address or CIDR block (got "10.0.0.0/33")']);
  assert.deepEqual(problems(base('  clientCert: { header: authorization }')), ['server.clientCert.header is a header the gateway reads for another purpose']);
  assert.deepEqual(problems(base('  redis: { url: "http://x" }')), ['server.redis.url must be a redis:// or rediss:// URL']);
  assert.deepEqual(problems(base('  dpop: { replayStore: disk }')).length, 1);
});
