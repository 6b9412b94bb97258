import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CompiledAuth } from '../../../src/config/compile.js';
import type { IssuerConfig } from '../../../src/config/schema.js';
import { GatewayError } from '../../../src/errors.js';
import type { IntrospectionAnswer } from '../../../src/idp/introspection-client.js';
import { checkIntrospectionAnswer, IntrospectionVerifier } from '../../../src/pipeline/verify-introspection.js';

const NOW = 1_800_000_000; // seconds
const introspection = {
  endpoint: 'http://127.0.0.1:1/introspect', clientId: 'gw', clientSecret: 's', authMethod: 'client_secret_basic' as const,
  cacheTtlSec: 60, negativeCacheTtlSec: 5, cacheStore: 'memory' as const, cacheSize: 100, timeoutMs: 1000,
};
function issuer(id: string, over: Partial<IssuerConfig> = {}): IssuerConfig {
  return {
    id, issuer: `https://${id}.example`, discovery: false, algorithms: ['RS256'], clockToleranceSec: 30,
    jwks: { cacheTtlSec: 600, cooldownSec: 30, timeoutMs: 3000, maxStaleSec: 86400, maxBytes: 1 << 20 },
    introspection, ...over,
  } as IssuerConfig;
}
function auth(issuers: IssuerConfig[], audiences: string[] | null = null): CompiledAuth {
  return {
    mode: 'introspection',
    issuersByIss: new Map(issuers.map((i) => [i.issuer, i])),
    issuersById: new Map(issuers.map((i) => [i.id, i])),
    issuerIds: issuers.map((i) => i.id),
    audiences, scopesAll: [], scopesAny: [], requiredScopeText: '', claims: [],
  };
}
const ans = (o: Record<string, unknown>) => Object.freeze({ active: true, exp: NOW + 60, ...o }) as IntrospectionAnswer;
function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof GatewayError);
    return e.reason;
  }
  return 'ok';
}

test('active answers are still checked (RFC 7662 §4)', () => {
  const a = issuer('a');
  const route = auth([a]);
  const check = (o: Record<string, unknown>, r = route, iss = a) => reasonOf(() => checkIntrospectionAnswer(ans(o), iss, r, NOW));
  assert.equal(check({}), 'ok');
  assert.equal(check({ exp: undefined }), 'missing_exp', 'exp is required');
  assert.equal(check({ exp: '9999999999' }), 'missing_exp');
  assert.equal(check({ exp: NOW - 30 }), 'expired', 'exp + tolerance reached');
  assert.equal(check({ exp: NOW - 29 }), 'ok', 'within the clock tolerance');
  assert.equal(check({ nbf: NOW + 31 }), 'not_yet_valid');
  assert.equal(check({ nbf: NOW + 30 }), 'ok');
  assert.equal(check({ nbf: 'x' }), 'claims_invalid');
  assert.equal(check({ iat: NOW + 31 }), 'issued_in_future');
  assert.equal(check({ iat: null }), 'claims_invalid');
  assert.equal(check({ iss: 'https://a.example' }), 'ok');
  assert.equal(check({ iss: 'https://b.example' }), 'issuer');
  assert.equal(check({ iss: 'https://a.example/' }), 'issuer', 'exact match');
  assert.equal(check({ token_type: 'Bearer' }), 'ok');
  assert.equal(check({ token_type: 'refresh_token' }), 'token_type');
  assert.equal(check({ token_type: 'Refresh' }), 'token_type');
  assert.equal(check({ typ: 'Refresh' }), 'token_type', 'Keycloak spelling');
});

test('aud is checked when present, against the route audiences, else the issuer ones', () => {
  const a = issuer('a', { audiences: ['api'] });
  const check = (o: Record<string, unknown>, r: CompiledAuth) => reasonOf(() => checkIntrospectionAnswer(ans(o), a, r, NOW));
  assert.equal(check({ aud: 'api' }, auth([a])), 'ok');
  assert.equal(check({ aud: ['x', 'api'] }, auth([a])), 'ok');
  assert.equal(check({ aud: 'other' }, auth([a])), 'audience');
  assert.equal(check({ aud: 'api' }, auth([a], ['orders'])), 'audience', 'the route list overrides the issuer list');
  assert.equal(check({ aud: 'orders' }, auth([a], ['orders'])), 'ok');
  assert.equal(check({}, auth([a], ['orders'])), 'ok', 'absent aud is not checked (RFC 7662: optional)');
});

function fakeSource(answers: Record<string, IntrospectionAnswer | 'down'>) {
  const calls: string[] = [];
  return {
    calls,
    source: {
      async introspect(issuerId: string, _token: string): Promise<IntrospectionAnswer> {
        calls.push(issuerId);
        const a = answers[issuerId];
        if (a === 'down') throw new GatewayError('introspection_unavailable', { retryAfterSec: 2 });
        return a;
      },
    },
  };
}
const inactive = Object.freeze({ active: false }) as IntrospectionAnswer;
async function reasonOfAsync(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof GatewayError);
    return e.reason;
  }
  return 'ok';
}

test('issuer selection: config order, first active answer wins', async () => {
  const [a, b, c] = [issuer('a'), issuer('b'), issuer('c')];
  const f = fakeSource({ a: inactive, b: ans({ sub: 'u' }), c: ans({ sub: 'other' }) });
  const v = new IntrospectionVerifier({ source: f.source, now: () => NOW * 1000 });
  const p = await v.verify('tok', auth([a, b, c]));
  assert.equal(p.issuerId, 'b');
  assert.equal(p.source, 'introspection');
  assert.equal(p.claims.sub, 'u');
  assert.deepEqual(f.calls, ['a', 'b']);
});

test('issuers without an introspection block are skipped; none at all: unsupported_token', async () => {
  const jwtOnly = issuer('j', { introspection: undefined, jwksUri: 'https://j.example/jwks' });
  const f = fakeSource({ b: ans({}) });
  const v = new IntrospectionVerifier({ source: f.source, now: () => NOW * 1000 });
  assert.equal((await v.verify('tok', auth([jwtOnly, issuer('b')]))).issuerId, 'b');
  assert.deepEqual(f.calls, ['b']);
  assert.equal(await reasonOfAsync(v.verify('tok', auth([jwtOnly]))), 'unsupported_token');
});

test('the first active answer decides even when its checks fail', async () => {
  const f = fakeSource({ a: ans({ exp: NOW - 100 }), b: ans({}) });
  const v = new IntrospectionVerifier({ source: f.source, now: () => NOW * 1000 });
  assert.equal(await reasonOfAsync(v.verify('tok', auth([issuer('a'), issuer('b')]))), 'expired');
  assert.deepEqual(f.calls, ['a']);
});

test('all inactive: 401 inactive; any unavailable and none active: 503 (fail closed)', async () => {
  const now = () => NOW * 1000;
  let f = fakeSource({ a: inactive, b: inactive });
  assert.equal(await reasonOfAsync(new IntrospectionVerifier({ source: f.source, now }).verify('t', auth([issuer('a'), issuer('b')]))), 'inactive');
  f = fakeSource({ a: 'down', b: inactive });
  assert.equal(await reasonOfAsync(new IntrospectionVerifier({ source: f.source, now }).verify('t', auth([issuer('a'), issuer('b')]))), 'introspection_unavailable');
  f = fakeSource({ a: 'down', b: ans({}) });
  assert.equal((await new IntrospectionVerifier({ source: f.source, now }).verify('t', auth([issuer('a'), issuer('b')]))).issuerId, 'b',
    'an active answer from the next issuer is authoritative for its own token');
});

test('scopes come from `scope` of the answer', async () => {
  const f = fakeSource({ a: ans({ scope: 'orders:read admin' }) });
  const p = await new IntrospectionVerifier({ source: f.source, now: () => NOW * 1000 }).verify('t', auth([issuer('a')]));
  assert.deepEqual(p.scopes, ['orders:read', 'admin']);
  assert.ok(Object.isFrozen(p.claims));
});
