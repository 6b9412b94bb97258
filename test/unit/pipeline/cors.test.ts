/**
 * CORS logic (src/pipeline/cors.ts), without a server: origins serialized as the URL
 * standard does and then matched whole (no prefix, suffix or look-alike tricks), `*`
 * never admitting `null`, preflight detection and judgement (Fetch §3.2.2-3.2.3, §4.8),
 * and how the headers go onto the gateway's own answers and the upstream's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  actualHeaders, answersForOrigin, compileCors, decorateForwarded, decorateOwn, judgePreflight, NO_CORS_HEADERS,
  preflightRequest, requestOrigin, serializeOrigin, varyWithOrigin,
} from '../../../src/pipeline/cors.js';
import type { CorsConfig } from '../../../src/config/schema.js';

const base: CorsConfig = {
  allowOrigins: ['https://app.example.com'],
  allowMethods: ['GET', 'POST'],
  allowHeaders: ['authorization', 'Content-Type'],
  exposeHeaders: ['x-request-id'],
  allowCredentials: false,
  maxAgeSec: 600,
};
const cors = compileCors(base);
const allowed = (origin: string | null) => answersForOrigin(cors, origin) !== null;

test('config origins are serialized as the URL standard does; anything narrower or other than an http(s) origin is refused', () => {
  assert.equal(serializeOrigin('HTTPS://App.Example.COM'), 'https://app.example.com');
  assert.equal(serializeOrigin('https://app.example.com:443'), 'https://app.example.com');
  assert.equal(serializeOrigin('http://app.example.com:80'), 'http://app.example.com');
  assert.equal(serializeOrigin('http://localhost:8080'), 'http://localhost:8080');
  assert.equal(serializeOrigin('http://[::1]:3000'), 'http://[::1]:3000');
  assert.equal(serializeOrigin('https://bücher.example'), 'https://xn--bcher-kva.example');
  for (const bad of [
    'https://app.example.com/', 'https://app.example.com/path', 'https://app.example.com?x', 'https://app.example.com#f',
    'https://user@app.example.com', 'ftp://app.example.com', 'file:///etc', 'null', '*', 'app.example.com', 'https://',
    'javascript:alert(1)', 'https://app.example.com:99999', 'https://*.example.com', 'https://a b.example',
  ]) {
    assert.equal(serializeOrigin(bad), null, bad);
  }
});

test('an Origin matches only as a whole: no prefix, suffix, path or user-info trick', () => {
  assert.ok(allowed('https://app.example.com'));
  for (const evil of [
    'https://app.example.com.evil.test',
    'https://evil.test/https://app.example.com',
    'https://evil-app.example.com',
    'https://app.example.co',
    'https://app.example.com:8443',
    'http://app.example.com',
    'https://app.example.com/',
    'https://app.example.com@evil.test',
    'https://evil.test#https://app.example.com',
    ' https://app.example.com',
    'https://app.example.com ',
    'https://app.example.com\t',
    'https://app.example.com, https://evil.test',
    'https://app.example.\u212Aom', // KELVIN SIGN: lower-cases to ASCII "k" in Unicode, not in ASCII
    'https://app.exampl\u0435.com', // Cyrillic "е"
    'null',
    '',
  ]) {
    assert.equal(allowed(evil), false, JSON.stringify(evil));
  }
});

test('ASCII case is folded (scheme and host are case-insensitive); the answer carries the serialized origin', () => {
  const a = answersForOrigin(cors, 'HTTPS://APP.EXAMPLE.COM');
  assert.ok(a);
  assert.equal(a.actual['access-control-allow-origin'], 'https://app.example.com');
  // A config origin in another case or with its default port is the same origin.
  const c = compileCors({ ...base, allowOrigins: ['HTTPS://App.Example.com:443'] });
  assert.equal(answersForOrigin(c, 'https://app.example.com')?.actual['access-control-allow-origin'], 'https://app.example.com');
});

test('"*" allows any origin but null; null only when listed', () => {
  const any = compileCors({ ...base, allowOrigins: ['*'] });
  assert.equal(answersForOrigin(any, 'https://whoever.test')?.actual['access-control-allow-origin'], '*');
  assert.equal(answersForOrigin(any, 'null'), null);
  assert.equal(answersForOrigin(any, 'NULL'), null);
  const withNull = compileCors({ ...base, allowOrigins: ['null'] });
  assert.equal(answersForOrigin(withNull, 'null')?.actual['access-control-allow-origin'], 'null');
  assert.equal(answersForOrigin(withNull, 'https://app.example.com'), null);
});

test('a repeated Origin header is no origin', () => {
  assert.equal(requestOrigin(['Origin', 'https://app.example.com']), 'https://app.example.com');
  assert.equal(requestOrigin(['Origin', 'https://app.example.com', 'origin', 'https://app.example.com']), null);
  assert.equal(actualHeaders(cors, ['Origin', 'https://app.example.com', 'ORIGIN', 'https://evil.test']), NO_CORS_HEADERS);
  assert.equal(actualHeaders(cors, []), NO_CORS_HEADERS);
});

test('answers to an allowed origin: Allow-Origin, Expose-Headers with the gateway\'s own headers; credentials only when set', () => {
  const h = actualHeaders(cors, ['Origin', 'https://app.example.com']);
  assert.deepEqual(h, {
    'access-control-allow-origin': 'https://app.example.com',
    'access-control-expose-headers': 'www-authenticate, dpop-nonce, retry-after, x-request-id',
  });
  const cred = compileCors({ ...base, allowCredentials: true });
  assert.equal(actualHeaders(cred, ['Origin', 'https://app.example.com'])['access-control-allow-credentials'], 'true');
  assert.ok(Object.isFrozen(h));
});

test('a preflight is OPTIONS (exactly) with Origin and Access-Control-Request-Method', () => {
  const h = ['Origin', 'https://app.example.com', 'Access-Control-Request-Method', 'GET'];
  assert.deepEqual(preflightRequest('OPTIONS', h), { origin: 'https://app.example.com', method: 'GET', headers: '' });
  assert.equal(preflightRequest('options', h), null);
  assert.equal(preflightRequest('GET', h), null);
  assert.equal(preflightRequest('OPTIONS', ['Origin', 'https://app.example.com']), null);
  assert.equal(preflightRequest('OPTIONS', ['Access-Control-Request-Method', 'GET']), null);
  // Repeated Origin: still a preflight (answered, not forwarded), with no origin to allow.
  assert.equal(preflightRequest('OPTIONS', [...h, 'Origin', 'https://x.test'])?.origin, null);
  // Two requested methods: no valid method.
  assert.equal(preflightRequest('OPTIONS', [...h, 'access-control-request-method', 'GET'])?.method, '');
  assert.equal(preflightRequest('OPTIONS', [...h, 'Access-Control-Request-Headers', 'a', 'access-control-request-headers', 'b'])?.headers, 'a,b');
});

test('a preflight is allowed only when origin, method and every requested header are', () => {
  const pf = (origin: string | null, method: string, headers = '') => judgePreflight(cors, { origin, method, headers });
  const ok = pf('https://app.example.com', 'POST', 'authorization,content-type');
  assert.deepEqual(ok, {
    'access-control-allow-origin': 'https://app.example.com',
    'access-control-allow-methods': 'GET, POST',
    'access-control-allow-headers': 'authorization, content-type',
    'access-control-max-age': '600',
    vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
  });
  assert.equal(typeof pf('https://app.example.com', 'GET', ' Authorization , ,CONTENT-TYPE '), 'object');
  assert.equal(pf('https://evil.test', 'GET'), 'cors_origin');
  assert.equal(pf(null, 'GET'), 'cors_origin');
  assert.equal(pf('https://app.example.com.evil.test', 'GET'), 'cors_origin');
  assert.equal(pf('https://app.example.com', 'DELETE'), 'cors_method');
  assert.equal(pf('https://app.example.com', 'get'), 'cors_method'); // methods are case-sensitive
  assert.equal(pf('https://app.example.com', ''), 'cors_method');
  assert.equal(pf('https://app.example.com', 'GET', 'authorization,x-admin'), 'cors_headers');
  assert.equal(pf('https://app.example.com', 'GET', 'authorization x-admin'), 'cors_headers');
  assert.equal(pf('https://app.example.com', 'GET', 'authorization;content-type'), 'cors_headers');
});

test('an empty allowHeaders list announces none and allows none', () => {
  const c = compileCors({ ...base, allowHeaders: [] });
  const ok = judgePreflight(c, { origin: 'https://app.example.com', method: 'GET', headers: '' });
  assert.equal(typeof ok, 'object');
  assert.equal((ok as Record<string, string>)['access-control-allow-headers'], undefined);
  assert.equal(judgePreflight(c, { origin: 'https://app.example.com', method: 'GET', headers: 'authorization' }), 'cors_headers');
});

test('Vary gains Origin once, and never replaces the upstream\'s own', () => {
  assert.equal(varyWithOrigin(undefined), 'Origin');
  assert.equal(varyWithOrigin(''), 'Origin');
  assert.equal(varyWithOrigin('Accept-Encoding'), 'Accept-Encoding, Origin');
  assert.equal(varyWithOrigin('accept-encoding, ORIGIN'), 'accept-encoding, ORIGIN');
  assert.equal(varyWithOrigin('*'), '*');
  assert.equal(varyWithOrigin(['Accept', 'Accept-Language']), 'Accept, Accept-Language, Origin');
  assert.equal(varyWithOrigin('X-Origin-Hint'), 'X-Origin-Hint, Origin');
});

test('a forwarded answer loses every upstream Access-Control-* header and gets the route\'s', () => {
  const up: Record<string, string | string[]> = {
    'content-type': 'application/json',
    'access-control-allow-origin': '*',
    'access-control-allow-credentials': 'true',
    'access-control-allow-headers': 'x-anything',
    'access-control-expose-headers': 'set-cookie',
    vary: 'Accept-Encoding',
  };
  decorateForwarded(up, actualHeaders(cors, ['Origin', 'https://app.example.com']));
  assert.deepEqual(up, {
    'content-type': 'application/json',
    'access-control-allow-origin': 'https://app.example.com',
    'access-control-expose-headers': 'www-authenticate, dpop-nonce, retry-after, x-request-id',
    vary: 'Accept-Encoding, Origin',
  });
  // A disallowed origin: the upstream's CORS headers are still removed, none are added.
  const other: Record<string, string | string[]> = { 'access-control-allow-origin': 'https://evil.test', 'access-control-allow-credentials': 'true' };
  decorateForwarded(other, NO_CORS_HEADERS);
  assert.deepEqual(other, { vary: 'Origin' });
});

test('the gateway\'s own answers get the route\'s headers and Vary: Origin', () => {
  const h: Record<string, string> = { 'www-authenticate': 'Bearer realm="tokengate"' };
  decorateOwn(h, actualHeaders(cors, ['Origin', 'https://app.example.com']));
  assert.equal(h['access-control-allow-origin'], 'https://app.example.com');
  assert.equal(h.vary, 'Origin');
  const none: Record<string, string> = {};
  decorateOwn(none, NO_CORS_HEADERS);
  assert.deepEqual(none, { vary: 'Origin' });
});
