/**
 * IssuerRuntime with `discovery: true`: when the JWKS fetch fails (the IdP moved its keys
 * and the old `jwks_uri` answers 404), the next attempt reads discovery again instead of
 * retrying the stale URL until a reload.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { IssuerRuntime } from '../../src/gateway.js';
import { Metrics } from '../../src/metrics.js';

test('a failed JWKS fetch makes the next attempt rediscover jwks_uri', async () => {
  const { publicKey } = await generateKeyPair('ES256');
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] });
  let current = '/keys-a';
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    if (req.url === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ issuer, jwks_uri: issuer + current }));
    }
    if (req.url === current) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(jwks);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const config = parseConfig(`
issuers:
  - id: idp
    issuer: ${issuer}
    discovery: true
    audiences: [api]
    jwks: { cooldownSec: 0 }
routes:
  - id: r
    match: { pathPrefix: /r }
    upstream: http://127.0.0.1:1
    auth: { mode: jwt }
`, 'inline.yaml');
    const rt = new IssuerRuntime(config.issuers[0], new Metrics(), pino({ level: 'silent' }), Date.now, config.server.allowInsecureHttpHosts);
    const jwksCache = rt.jwks!;
    await jwksCache.refresh();
    assert.ok(jwksCache.ready);
    assert.deepEqual(hits, ['/.well-known/openid-configuration', '/keys-a']);

    current = '/keys-b'; // the IdP moves its keys; /keys-a now answers 404
    hits.length = 0;
    await jwksCache.refresh(); // fails on the stale URL
    await jwksCache.refresh(); // reads discovery again, then the new URL
    assert.deepEqual(hits, ['/keys-a', '/.well-known/openid-configuration', '/keys-b']);
    assert.equal((await jwksCache.getKey('k1', 'ES256')).id.length > 0, true);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
