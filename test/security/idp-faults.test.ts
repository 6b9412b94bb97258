/**
 * Identity-provider faults and the outbound fetch policy (issue 6 §4): an IdP that
 * hangs past `jwks.timeoutMs`, answers garbage, serves a JWKS larger than
 * `jwks.maxBytes` (declared or streamed), redirects (to a "private" address that would
 * serve valid keys), presents an untrusted TLS certificate, or publishes a discovery
 * document pointing at another origin. Every answer is the SPEC's 503 (no challenge,
 * `Retry-After`), in bounded time, and nothing is fetched from where it should not be.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let up: EchoUpstream;
let good: MockIssuer;
const servers: Array<http.Server | https.Server> = [];
const gateways: TestGateway[] = [];

before(async () => {
  up = await startUpstream();
  good = await startMockIssuer();
});
beforeEach(() => up.reset());
after(async () => {
  for (const g of gateways) await g.close();
  for (const s of servers) await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
  await up?.close();
  await good?.close();
});

async function listen<T extends http.Server | https.Server>(s: T, host = '127.0.0.1'): Promise<string> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, host, r));
  return `${s instanceof https.Server ? 'https' : 'http'}://${host}:${(s.address() as AddressInfo).port}`;
}

/** A gateway whose one issuer (`iss`, keys from `jwks` or discovery) protects /orders. */
async function gatewayFor(issuer: string, keys: { jwksUri?: string; discovery?: boolean; extra?: string }): Promise<TestGateway> {
  const g = await startGateway(`
issuers:
  - id: idp
    issuer: ${issuer}
    ${keys.jwksUri ? `jwksUri: ${keys.jwksUri}` : 'discovery: true'}
    audiences: [api]
    jwks: { timeoutMs: 300, maxBytes: 4096, cooldownSec: 1 }
    ${keys.extra ?? ''}
routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: jwt }
`);
  gateways.push(g);
  return g;
}

/** A token the gateway cannot check without keys (signed by a real key, `iss` as given). */
const tokenFor = (iss: string) => good.sign({ claims: { iss } });

async function assertUnavailable(g: TestGateway, iss: string, withinMs = 3000): Promise<void> {
  const start = Date.now();
  const r = await fetch(`${g.url}/orders/1`, { headers: { authorization: `Bearer ${await tokenFor(iss)}` } });
  const took = Date.now() - start;
  assert.equal(r.status, 503, await r.clone().text());
  assert.equal(r.headers.get('www-authenticate'), null);
  assert.match(r.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
  assert.deepEqual(await r.json(), { error: 'temporarily_unavailable', error_description: 'Token keys cannot be obtained now' });
  assert.ok(took < withinMs, `answered after ${took} ms`);
  assert.equal(up.requests.length, 0);
  const health = await fetch(`${g.adminUrl}/healthz`);
  assert.equal(health.status, 200, 'gateway still up');
}

test('IdP hangs past jwks.timeoutMs: 503 within the timeout, not a hung request', async () => {
  const hang = await startMockIssuer();
  hang.mode = 'hang';
  try {
    const g = await gatewayFor(hang.issuer, { jwksUri: hang.jwksUri });
    await assertUnavailable(g, hang.issuer, 3000);
  } finally {
    await hang.close();
  }
});

test('IdP answers garbage: 503', async () => {
  const bad = await startMockIssuer();
  bad.mode = 'garbage';
  try {
    const g = await gatewayFor(bad.issuer, { jwksUri: bad.jwksUri });
    await assertUnavailable(g, bad.issuer);
  } finally {
    await bad.close();
  }
});

for (const declared of [true, false]) {
  test(`JWKS larger than jwks.maxBytes (${declared ? 'Content-Length' : 'streamed, no length'}): 503`, async () => {
    const keys = { keys: good.keys.map((k) => k.publicJwk), pad: 'x'.repeat(50_000) };
    const body = JSON.stringify(keys);
    let sent = 0;
    const url = await listen(http.createServer((_req, res) => {
      res.writeHead(200, declared ? { 'content-type': 'application/json', 'content-length': body.length } : { 'content-type': 'application/json' });
      // streamed in slices so a cap that waits for the end would be visible
      const slice = () => {
        if (res.destroyed || sent >= body.length) { res.end(); return; }
        res.write(body.slice(sent, sent + 1000));
        sent += 1000;
        setImmediate(slice);
      };
      sent = 0;
      slice();
    }));
    const g = await gatewayFor(good.issuer, { jwksUri: `${url}/jwks` });
    await assertUnavailable(g, good.issuer);
    if (!declared) assert.ok(sent < 20_000, `kept reading after the cap (${sent} bytes sent)`);
  });
}

test('a redirect (to a "private" address serving valid keys) is never followed: 503', async () => {
  let privateHits = 0;
  const privateUrl = await listen(http.createServer((_req, res) => {
    privateHits++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: good.keys.map((k) => k.publicJwk) }));
  }), '127.0.0.2'); // another loopback address standing in for 10.x / 169.254.169.254
  for (const status of [301, 302, 307, 308]) {
    const url = await listen(http.createServer((_req, res) => {
      res.writeHead(status, { location: privateUrl + '/latest/meta-data' }).end();
    }));
    const g = await gatewayFor(good.issuer, { jwksUri: `${url}/jwks` });
    await assertUnavailable(g, good.issuer);
  }
  assert.equal(privateHits, 0, 'the redirect target was contacted');
});

test('https JWKS with an untrusted (self-signed) certificate: 503, no HTTP request made', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  let requests = 0;
  const url = await listen(https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (_req, res) => {
    requests++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: good.keys.map((k) => k.publicJwk) }));
  }));
  const g = await gatewayFor(good.issuer, { jwksUri: `${url}/jwks` });
  await assertUnavailable(g, good.issuer);
  assert.equal(requests, 0);
});

test('discovery pointing jwks_uri at another origin is refused; discoveryOrigins allows it', async () => {
  let self = '';
  self = await listen(http.createServer((req, res) => {
    if (req.url === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: self, jwks_uri: good.jwksUri }));
    } else res.writeHead(404).end();
  }));
  const before = good.jwksFetches;
  const refused = await gatewayFor(self, { discovery: true });
  await assertUnavailable(refused, self);
  assert.equal(good.jwksFetches, before, 'the off-origin jwks_uri was fetched');

  const allowed = await gatewayFor(self, { discovery: true, extra: `discoveryOrigins: [${new URL(good.issuer).origin}]` });
  const r = await fetch(`${allowed.url}/orders/1`, { headers: { authorization: `Bearer ${await tokenFor(self)}` } });
  assert.equal(r.status, 200, await r.text());
  assert.ok(good.jwksFetches > before);
});

test('discovery document naming another issuer is refused (mix-up): 503', async () => {
  let self = '';
  self = await listen(http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: good.issuer, jwks_uri: `${self}/jwks` }));
  }));
  const g = await gatewayFor(self, { discovery: true });
  await assertUnavailable(g, self);
});
