/**
 * configHash: the label of `tokengate_config_info`, which tells which config each process
 * runs. Any change of policy changes it; a secret never shows in it, and changing only a
 * secret cannot be told from it (so the label reveals nothing about one).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileConfig, configHash } from '../../../src/config/compile.js';
import { parseConfig } from '../../../src/config/load.js';

const yaml = (o: { route?: string; secret?: string; nonce?: string; redis?: string } = {}) => `
server:
  dpop: { nonce: true, nonceSecret: "${o.nonce ?? 'n'.repeat(32)}", replayStore: redis }
  redis: { url: "${o.redis ?? 'redis://user:pw1@127.0.0.1:6379/0'}" }
issuers:
  - id: a
    issuer: https://i.test/
    jwksUri: https://i.test/jwks
    audiences: [api]
    introspection: { endpoint: https://i.test/introspect, clientId: gw, clientSecret: "${o.secret ?? 's3cret-one'}" }
routes:
  - { id: api, match: { pathPrefix: ${o.route ?? '/api'} }, upstream: http://127.0.0.1:1, auth: { mode: jwt } }
`;
const hash = (o: Parameters<typeof yaml>[0] = {}) => compileConfig(parseConfig(yaml(o), 'c.yaml', {})).hash;

test('the same config gives the same 16-hex hash; a policy change gives another', () => {
  assert.match(hash(), /^[0-9a-f]{16}$/);
  assert.equal(hash(), hash());
  assert.notEqual(hash({ route: '/api2' }), hash());
  assert.notEqual(hash({ redis: 'redis://user:pw1@127.0.0.2:6379/0' }), hash(), 'another Redis host is another config');
});

test('secrets are left out: changing only clientSecret, nonceSecret or the Redis credentials keeps the hash', () => {
  assert.equal(hash({ secret: 'another-secret' }), hash());
  assert.equal(hash({ nonce: 'm'.repeat(40) }), hash());
  assert.equal(hash({ redis: 'redis://other:pw2@127.0.0.1:6379/0' }), hash());
});

test('configHash of a parsed config equals the compiled config\'s hash', () => {
  const cfg = parseConfig(yaml(), 'c.yaml', {});
  assert.equal(configHash(cfg), compileConfig(cfg).hash);
});

test('a tracing endpoint with credentials in its URL is refused (they belong in tracing.headers, which are never hashed)', () => {
  const withTracing = (endpoint: string) => `${yaml()}tracing:\n  endpoint: "${endpoint}"\n  headers: { authorization: "Bearer collector-key" }\n`;
  assert.throws(() => parseConfig(withTracing('https://user:collector-pw@otel.example/v1/traces'), 'c.yaml', {}), (e: unknown) => {
    const msg = (e as Error).message;
    assert.match(msg, /c\.yaml:\d+ tracing\.endpoint must not carry credentials: put them in tracing\.headers/);
    assert.doesNotMatch(msg, /collector-pw/, 'the password is not echoed');
    return true;
  });
  // Control: the same endpoint without them, credentials in headers.
  assert.doesNotThrow(() => parseConfig(withTracing('https://otel.example/v1/traces'), 'c.yaml', {}));
});
