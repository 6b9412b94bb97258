/**
 * The outbound fetch policy of src/idp/http.ts (issue 6 §4): https only, plain http
 * only to `server.allowInsecureHttpHosts` (loopback by default); no credentials in
 * URLs; discovery-provided URLs only on the issuer's origin or `discoveryOrigins`; and
 * the same policy enforced at config load, so a refused URL is a config error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkDiscoveredUrl, fetchJson, FetchError, isLoopbackHost, LOOPBACK_HOSTS, outboundUrlProblem } from '../../../src/idp/http.js';
import { ConfigError, parseConfig } from '../../../src/config/load.js';

test('https is always allowed; http only to listed hosts (loopback by default)', () => {
  assert.deepEqual([...LOOPBACK_HOSTS], ['127.0.0.1', 'localhost', '::1']);
  for (const ok of ['https://idp.example.com/jwks', 'http://127.0.0.1:8080/jwks', 'http://localhost/jwks', 'http://[::1]:9/jwks', 'http://LOCALHOST/x']) {
    assert.equal(outboundUrlProblem(ok), null, ok);
  }
  assert.match(outboundUrlProblem('http://idp.example.com/jwks') ?? '', /^must be https: plain http is only allowed to server\.allowInsecureHttpHosts \(idp\.example\.com is not listed\)$/);
  assert.match(outboundUrlProblem('http://127.0.0.2/jwks') ?? '', /127\.0\.0\.2 is not listed/);
  assert.match(outboundUrlProblem('http://169.254.169.254/latest') ?? '', /not listed/);
  assert.equal(outboundUrlProblem('http://idp.internal/jwks', ['idp.internal']), null);
  assert.match(outboundUrlProblem('http://127.0.0.1/jwks', []) ?? '', /not listed/);
  assert.match(outboundUrlProblem('ftp://idp.example.com/jwks') ?? '', /must be https \(got ftp:\)/);
  assert.match(outboundUrlProblem('file:///etc/passwd') ?? '', /must be https/);
  assert.equal(outboundUrlProblem('https://user:pw@idp.example.com/'), 'must not carry credentials');
  assert.equal(outboundUrlProblem('not a url'), 'is not a valid URL');
});

test('isLoopbackHost', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', 'a.localhost', '::1', '[::1]']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['10.0.0.1', 'idp.local', '0.0.0.0', '::', '127.0.0.1.nip.io']) assert.ok(!isLoopbackHost(h), h);
});

test('discovered URLs must be on the issuer origin or in discoveryOrigins', () => {
  const iss = 'https://idp.example.com/realms/a';
  assert.equal(checkDiscoveredUrl('https://idp.example.com/realms/a/certs', iss, []), 'https://idp.example.com/realms/a/certs');
  assert.throws(() => checkDiscoveredUrl('https://keys.example.net/certs', iss, []), (e: FetchError) => e.kind === 'policy' && /keys\.example\.net/.test(e.message));
  assert.throws(() => checkDiscoveredUrl('https://idp.example.com:8443/certs', iss, []), (e: FetchError) => e.kind === 'policy');
  assert.throws(() => checkDiscoveredUrl('http://idp.example.com/certs', iss, []), (e: FetchError) => e.kind === 'policy' && /must be https/.test(e.message));
  assert.equal(checkDiscoveredUrl('https://keys.example.net/certs', iss, ['https://keys.example.net']), 'https://keys.example.net/certs');
});

test('fetchJson refuses a URL outside the policy before connecting', async () => {
  await assert.rejects(fetchJson('http://192.0.2.1/jwks', { timeoutMs: 100, maxBytes: 1024 }),
    (e: FetchError) => e.kind === 'policy');
});

test('config load: an IdP URL outside the policy is a config error with its key path', () => {
  const cfg = (server: string, url: string) => `${server}
issuers:
  - id: corp
    issuer: https://idp.example.com
    jwksUri: ${url}
routes:
  - { id: r, match: { pathPrefix: / }, upstream: "http://127.0.0.1:1", auth: { mode: jwt } }
`;
  assert.throws(() => parseConfig(cfg('', 'http://idp.example.com/jwks'), 'g.yaml'), (e: ConfigError) =>
    e.problems.length === 1 && e.problems[0].path === 'issuers[0].jwksUri' && e.problems[0].line === 5 && /must be https/.test(e.problems[0].message));
  assert.doesNotThrow(() => parseConfig(cfg('server: { allowInsecureHttpHosts: [idp.example.com] }', 'http://idp.example.com/jwks'), 'g.yaml'));
  assert.doesNotThrow(() => parseConfig(cfg('', 'http://127.0.0.1:9/jwks'), 'g.yaml'));
  const intro = `
issuers:
  - id: corp
    issuer: http://idp.example.com
    discovery: true
    introspection: { endpoint: http://idp.example.com/introspect, clientId: c, clientSecret: s }
routes:
  - { id: r, match: { pathPrefix: / }, upstream: "http://127.0.0.1:1", auth: { mode: introspection } }
`;
  assert.throws(() => parseConfig(intro, 'g.yaml'), (e: ConfigError) =>
    e.problems.map((p) => p.path).join() === 'issuers[0].issuer,issuers[0].introspection.endpoint');
});
