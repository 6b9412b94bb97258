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

test('a failed discovery is kept for cooldownSec: callers in that window do not each ask the IdP', async () => {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits++;
    res.writeHead(500).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let now = 1_000_000;
  try {
    const config = parseConfig(`
issuers:
  - id: idp
    issuer: ${issuer}
    discovery: true
    jwks: { cooldownSec: 30 }
    introspection: { clientId: gw, clientSecret: s }
routes:
  - id: r
    match: { pathPrefix: /r }
    upstream: http://127.0.0.1:1
    auth: { mode: introspection }
`, 'inline.yaml');
    const rt = new IssuerRuntime(config.issuers[0], new Metrics(), pino({ level: 'silent' }), () => now, config.server.allowInsecureHttpHosts);
    for (let i = 0; i < 5; i++) await assert.rejects(rt.discover());
    assert.equal(hits, 1, 'one request to the IdP inside the cooldown');
    now += 29_000;
    await assert.rejects(rt.discover());
    assert.equal(hits, 1);
    now += 1_000;
    await assert.rejects(rt.discover());
    assert.equal(hits, 2, 'asked again once the cooldown has passed');
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
