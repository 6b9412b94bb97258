/**
 * Attack family: getting a sender-constrained token (or a spoofed binding) past the
 * gateway without the key or certificate it is bound to. Tokens are hand-signed by the
 * mock issuer, so every `cnf` shape can be tried.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';
import { generateClientCert, xfcc, type TestCert } from '../helpers/cert.js';

let iss: MockIssuer; let up: EchoUpstream; let gw: TestGateway; let client: DpopClient; let cert: TestCert;

before(async () => {
  [iss, up, client] = await Promise.all([startMockIssuer({ algs: ['ES256'] }), startUpstream(), dpopClient()]);
  cert = generateClientCert();
  gw = await startGateway(`
issuers:
  - { id: a, issuer: ${iss.issuer}, jwksUri: ${iss.jwksUri}, audiences: [api] }
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
`);
  await gw.ready();
});
after(async () => {
  await gw?.close();
  await up?.close();
  await iss?.close();
});

async function send(path: string, headers: Record<string, string | string[]>, from = '127.0.0.1') {
  return new Promise<{ status: number; reason: string }>((resolve, reject) => {
    const req = request(gw.url + path, { headers, localAddress: from }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, reason: res.statusCode === 200 ? 'ok' : (JSON.parse(body) as { error_description: string }).error_description }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('htu cannot be steered with X-Forwarded-Host / -Proto when trustProxy is off', async () => {
  const token = await iss.sign({ claims: { cnf: { jkt: client.jkt } } });
  const proof = await client.proof({ htm: 'GET', htu: 'https://api.example.com/api/x', token });
  up.reset();
  const r = await send('/api/x', { authorization: `DPoP ${token}`, dpop: proof, 'x-forwarded-host': 'api.example.com', 'x-forwarded-proto': 'https' });
  assert.deepEqual(r, { status: 401, reason: 'The DPoP proof is for another URI' });
  assert.equal(up.requests.length, 0);
});

test('a valid proof for token A does not carry token B bound to the same key (ath)', async () => {
  const a = await iss.sign({ claims: { cnf: { jkt: client.jkt }, sub: 'a' } });
  const b = await iss.sign({ claims: { cnf: { jkt: client.jkt }, sub: 'b' } });
  const proof = await client.proof({ htm: 'GET', htu: `${gw.url}/api/x`, token: a });
  assert.deepEqual(await send('/api/x', { authorization: `DPoP ${b}`, dpop: proof }), { status: 401, reason: 'The DPoP proof ath does not match the access token' });
});

test('malformed or unverifiable cnf (empty object or values, RFC 7800 jwk/kid methods) is refused, never read as "unbound"', async () => {
  for (const cnf of ['jkt', ['x'], null, {}, { jkt: 42 }, { 'x5t#S256': {} }, { jkt: '' }, { 'x5t#S256': '' }, { jwk: { kty: 'EC' } }, { kid: 'k' }]) {
    const token = await iss.sign({ claims: { cnf } });
    assert.deepEqual(await send('/api/x', { authorization: `Bearer ${token}` }), { status: 401, reason: 'The access token claims are invalid' }, JSON.stringify(cnf));
  }
});

test('a token bound to both a key and a certificate needs both', async () => {
  const token = await iss.sign({ claims: { cnf: { jkt: client.jkt, 'x5t#S256': cert.x5t } } });
  const proof = () => client.proof({ htm: 'GET', htu: `${gw.url}/api/x`, token });
  assert.deepEqual(await send('/api/x', { authorization: `DPoP ${token}`, dpop: await proof() }), { status: 401, reason: 'The access token is bound to a client certificate that was not presented' });
  assert.deepEqual(await send('/api/x', { authorization: `Bearer ${token}`, 'x-forwarded-client-cert': xfcc(cert) }), { status: 401, reason: 'A DPoP-bound access token must be sent with the DPoP scheme' });
  assert.deepEqual(await send('/api/x', { authorization: `DPoP ${token}`, dpop: await proof(), 'x-forwarded-client-cert': xfcc(cert) }), { status: 200, reason: 'ok' });
});

test('the certificate header cannot be smuggled from an untrusted peer in another spelling or as a duplicate', async () => {
  const token = await iss.sign({ claims: { cnf: { 'x5t#S256': cert.x5t } } });
  const missing = { status: 401, reason: 'The access token is bound to a client certificate that was not presented' };
  assert.deepEqual(await send('/api/x', { authorization: `Bearer ${token}`, 'X_Forwarded_Client_Cert': xfcc(cert) }), missing, '`_` spelling is not the header');
  assert.deepEqual(await send('/api/x', { authorization: `Bearer ${token}`, 'x-forwarded-client-cert': xfcc(cert) }, '127.0.0.3'), missing);
  assert.deepEqual(await send('/api/x', { authorization: `Bearer ${token}`, 'x-forwarded-client-cert': [xfcc(cert), xfcc(cert)] }), missing, 'two headers are ambiguous');
  assert.deepEqual(await send('/api/x', { authorization: `Bearer ${token}`, 'x-forwarded-client-cert': `${xfcc(cert)},By=x;Hash=${'0'.repeat(64)}` }), missing, 'two XFCC elements are ambiguous');
});

test('a token presented with a proof whose jwk is symmetric or an unknown key type is refused', async () => {
  const token = await iss.sign({ claims: { cnf: { jkt: client.jkt } } });
  for (const jwk of [{ kty: 'oct', k: 'AAAA' }, { kty: 'XYZ', x: 'a' }, { ...client.publicJwk, kty: 'RSA' }]) {
    const proof = await client.proof({ htm: 'GET', htu: `${gw.url}/api/x`, token, jwk: jwk as never });
    assert.deepEqual(await send('/api/x', { authorization: `DPoP ${token}`, dpop: proof }), { status: 401, reason: 'The DPoP proof jwk must be a public key' }, JSON.stringify(jwk));
  }
});

// The thumbprint table is a plain object: `THUMBPRINT_MEMBERS[kty]` once found Object.prototype's members (a 500).
test('a proof jwk with kty __proto__ / constructor / toString is 401 invalid_dpop_proof, never 5xx', async () => {
  up.reset();
  const token = await iss.sign({ claims: { cnf: { jkt: client.jkt } } });
  for (const kty of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    const proof = await client.proof({ htm: 'GET', htu: `${gw.url}/api/x`, token, jwk: { ...client.publicJwk, kty } as never });
    const r = await fetch(gw.url + '/api/x', { headers: { authorization: `DPoP ${token}`, dpop: proof } });
    const body = await r.json() as { error: string };
    assert.deepEqual([r.status, body.error], [401, 'invalid_dpop_proof'], `kty ${kty}`);
  }
  assert.equal(up.requests.length, 0);
});
