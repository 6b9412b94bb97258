/**
 * Certificate-bound access tokens end to end (RFC 8705 §3): oidc-provider binds a token
 * to a client certificate generated here (openssl); the gateway believes the
 * certificate header only from `clientCert.trustedProxies` (127.0.0.1) and not from
 * another loopback address (127.0.0.2, the source set with `localAddress`).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { IDP_RESOURCES, startIdp, type TestIdp } from '../helpers/idp.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { generateClientCert, xfcc, type TestCert } from '../helpers/cert.js';

let idp: TestIdp; let up: EchoUpstream; let gw: TestGateway;
let cert: TestCert; let otherCert: TestCert; let bound: string; let plain: string;

before(async () => {
  [idp, up] = await Promise.all([startIdp(), startUpstream()]);
  cert = generateClientCert('client-a');
  otherCert = generateClientCert('client-b');
  gw = await startGateway(`
decision: { trustedProxies: [127.0.0.0/8] }
server:
  clientCert: { header: x-forwarded-client-cert, trustedProxies: [127.0.0.1/32] }
issuers:
  - id: idp
    issuer: ${idp.issuer}
    jwksUri: ${idp.jwksUri}
    audiences: [${IDP_RESOURCES.rs256}]
routes:
  - id: mtls
    match: { pathPrefix: /mtls }
    upstream: ${up.url}
    auth: { mode: jwt, binding: require-mtls }
  - id: any
    match: { pathPrefix: /any }
    upstream: ${up.url}
    auth: { mode: jwt, binding: require-any }
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
    forward: { headers: { x-auth-subject: sub } }
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
`);
  await gw.ready();
  bound = await idp.token({ resource: IDP_RESOURCES.rs256, clientCertPem: cert.pem });
  plain = await idp.token({ resource: IDP_RESOURCES.rs256 });
});
after(async () => {
  await gw?.close();
  await up?.close();
  await idp?.close();
});

function call(path: string, headers: Record<string, string>, from = '127.0.0.1') {
  return new Promise<{ status: number; www: string | undefined; error: string | undefined }>((resolve, reject) => {
    const req = request(gw.url + path, { headers, localAddress: from }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, www: res.headers['www-authenticate'], error: res.statusCode === 200 ? undefined : (JSON.parse(body) as { error: string }).error }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

const invalid = (desc: string) => ({ status: 401, www: `Bearer realm="tokengate", error="invalid_token", error_description="${desc}"`, error: 'invalid_token' });

describe('mTLS-bound tokens from oidc-provider', () => {
  test('the IdP bound the token to the certificate', () => {
    const claims = JSON.parse(Buffer.from(bound.split('.')[1], 'base64url').toString()) as { cnf?: Record<string, string> };
    assert.equal(claims.cnf?.['x5t#S256'], cert.x5t);
  });

  test('right certificate from the trusted peer: XFCC Hash, XFCC Cert, URL-encoded PEM all pass', async () => {
    for (const value of [xfcc(cert, { hash: true }), xfcc(cert, { cert: true }), encodeURIComponent(cert.pem)]) {
      up.reset();
      const r = await call('/api/x', { authorization: `Bearer ${bound}`, 'x-forwarded-client-cert': value });
      assert.deepEqual(r, { status: 200, www: undefined, error: undefined }, value.slice(0, 40));
      assert.equal(up.requests[0].headers['x-forwarded-client-cert'], value, 'a trusted header is forwarded');
      assert.equal(up.requests[0].headers['x-auth-subject'], 'app-mtls');
    }
  });

  test('right certificate from an untrusted peer (127.0.0.2): ignored, token refused, upstream not reached', async () => {
    up.reset();
    const r = await call('/api/x', { authorization: `Bearer ${bound}`, 'x-forwarded-client-cert': xfcc(cert) }, '127.0.0.2');
    assert.deepEqual(r, invalid('The access token is bound to a client certificate that was not presented'));
    assert.equal(up.requests.length, 0);
  });

  test('wrong certificate from the trusted peer: 401 invalid_token', async () => {
    const r = await call('/api/x', { authorization: `Bearer ${bound}`, 'x-forwarded-client-cert': xfcc(otherCert) });
    assert.deepEqual(r, invalid('The access token is bound to another client certificate'));
  });

  test('no certificate, or two certificate headers: refused', async () => {
    assert.deepEqual(await call('/api/x', { authorization: `Bearer ${bound}` }), invalid('The access token is bound to a client certificate that was not presented'));
    const two = await new Promise<number>((resolve, reject) => {
      const req = request(gw.url + '/api/x', { headers: { authorization: `Bearer ${bound}`, 'x-forwarded-client-cert': [xfcc(cert), xfcc(cert)] } }, (res) => { res.resume(); resolve(res.statusCode!); });
      req.on('error', reject);
      req.end();
    });
    assert.equal(two, 401);
  });

  test('from an untrusted peer the header is removed before forwarding (any spelling), even on mode: none', async () => {
    up.reset();
    const r = await call('/pub/x', { 'x-forwarded-client-cert': xfcc(cert), 'X_Forwarded_Client_Cert': xfcc(otherCert) }, '127.0.0.2');
    assert.equal(r.status, 200);
    const h = up.requests[0].headers;
    assert.equal(h['x-forwarded-client-cert'], undefined);
    assert.equal(h['x_forwarded_client_cert'], undefined);
  });

  test('decision listener: the certificate is believed from clientCert.trustedProxies only, whatever decision.trustedProxies allows', async () => {
    const ask = (from: string) => new Promise<number>((resolve, reject) => {
      const req = request(gw.decisionUrl! + '/auth', {
        localAddress: from,
        headers: { 'x-forwarded-uri': '/api/x', 'x-forwarded-method': 'GET', authorization: `Bearer ${bound}`, 'x-forwarded-client-cert': xfcc(cert) },
      }, (res) => { res.resume(); resolve(res.statusCode!); });
      req.on('error', reject);
      req.end();
    });
    assert.equal(await ask('127.0.0.1'), 200);
    assert.equal(await ask('127.0.0.2'), 401);
  });

  test('binding: require-mtls refuses an unbound token; require-mtls and require-any take the bound one', async () => {
    assert.deepEqual(await call('/mtls/x', { authorization: `Bearer ${plain}`, 'x-forwarded-client-cert': xfcc(cert) }), invalid('This resource requires a certificate-bound access token'));
    assert.deepEqual(await call('/any/x', { authorization: `Bearer ${plain}` }), invalid('This resource requires a sender-constrained access token'));
    for (const p of ['/mtls/x', '/any/x']) {
      assert.equal((await call(p, { authorization: `Bearer ${bound}`, 'x-forwarded-client-cert': xfcc(cert) })).status, 200, p);
    }
    const text = await (await fetch(gw.adminUrl + '/metrics')).text();
    for (const [route, reason] of [['api', 'client_cert_missing'], ['api', 'client_cert_mismatch'], ['mtls', 'mtls_required'], ['any', 'binding_required']]) {
      assert.match(text, new RegExp(`tokengate_requests_total\\{route="${route}",outcome="denied",reason="${reason}",status_class="\\dxx"\\} [1-9]`), reason);
    }
  });
});
