/** Authorization: scopes allOf/anyOf over `scope` or `scp`, dotted claims, membership, literal dotted keys. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authorize, readClaim } from '../../../src/pipeline/authorize.js';
import { scopesOf, type Principal } from '../../../src/pipeline/principal.js';
import type { GatewayError } from '../../../src/errors.js';
import { compileYaml, ISSUER_A } from '../../helpers/config.js';

const config = compileYaml(`
issuers:${ISSUER_A}
routes:
  - { id: all, match: { pathPrefix: /all }, upstream: http://u, auth: { mode: jwt, scopes: { allOf: [a, b] } } }
  - { id: any, match: { pathPrefix: /any }, upstream: http://u, auth: { mode: jwt, scopes: { anyOf: [c, d] } } }
  - { id: both, match: { pathPrefix: /both }, upstream: http://u, auth: { mode: jwt, scopes: { allOf: [a], anyOf: [a, c] } } }
  - id: claims
    match: { pathPrefix: /claims }
    upstream: http://u
    auth: { mode: jwt, claims: { tenant: acme, realm_access.roles: admin, "https://x.test/org": o1, level: 3, verified: true } }
`);
const auth = (id: string) => config.routes.find((r) => r.id === id)!.auth;
const p = (claims: Record<string, unknown>): Principal => ({ issuerId: 'a', claims, scopes: scopesOf(claims), source: 'jwt' });
const check = (id: string, claims: Record<string, unknown>) => {
  try {
    authorize(p(claims), auth(id));
    return 'ok';
  } catch (e) {
    const g = e as GatewayError;
    return `${g.reason}:${g.scope ?? ''}`;
  }
};

test('scopesOf: scope string (spaces), scp array or string; scope wins', () => {
  assert.deepEqual(scopesOf({ scope: 'a  b c' }), ['a', 'b', 'c']);
  assert.deepEqual(scopesOf({ scp: ['a', 'b', 1] }), ['a', 'b']);
  // not scope tokens: dropped, never split (joined into x-auth-scopes, 'x admin' would read as two)
  assert.deepEqual(scopesOf({ scp: ['x admin', '', 'c'] }), ['c']);
  assert.deepEqual(scopesOf({ scp: 'a b' }), ['a', 'b']);
  assert.deepEqual(scopesOf({ scope: 'a', scp: ['b'] }), ['a']);
  assert.deepEqual(scopesOf({ scope: 5 }), []);
  assert.deepEqual(scopesOf({}), []);
  // A present but malformed `scope` (JSON's last duplicate member may be null) never falls back to `scp`.
  assert.deepEqual(scopesOf({ scope: null, scp: 'a' }), []);
  assert.deepEqual(scopesOf({ scope: null, scp: ['a'] }), []);
  assert.deepEqual(scopesOf({ scope: 5, scp: ['a'] }), []);
});

test('allOf / anyOf, with the required scopes in the 403 challenge', () => {
  assert.equal(check('all', { scope: 'b a' }), 'ok');
  assert.equal(check('all', { scp: ['a', 'b'] }), 'ok');
  assert.equal(check('all', { scope: 'a' }), 'scope:a b');
  assert.equal(check('all', { scope: 'ab' }), 'scope:a b', 'no substring matching');
  assert.equal(check('any', { scope: 'd' }), 'ok');
  assert.equal(check('any', { scope: 'a b' }), 'scope:c d');
  assert.equal(check('any', {}), 'scope:c d');
  assert.equal(check('both', { scope: 'a' }), 'ok');
  assert.equal(check('both', { scope: 'c' }), 'scope:a c');
});

test('claims: equality, membership in arrays, dotted paths, literal dotted keys, typed values', () => {
  const good = { tenant: 'acme', realm_access: { roles: ['user', 'admin'] }, 'https://x.test/org': 'o1', level: 3, verified: true };
  assert.equal(check('claims', good), 'ok');
  assert.equal(check('claims', { ...good, tenant: 'other' }), 'claim:');
  assert.equal(check('claims', { ...good, tenant: ['acme'] }), 'ok', 'membership');
  assert.equal(check('claims', { ...good, realm_access: { roles: 'admin' } }), 'ok', 'scalar equality');
  assert.equal(check('claims', { ...good, realm_access: { roles: ['administrator'] } }), 'claim:');
  assert.equal(check('claims', { ...good, level: '3' }), 'claim:', 'no type coercion');
  assert.equal(check('claims', { ...good, verified: 'true' }), 'claim:');
  assert.equal(check('claims', { ...good, 'https://x.test/org': undefined, https: { '//x': 1 } }), 'claim:');
});

test('readClaim: dotted path, literal key when no nested path, no prototype or array walking', () => {
  const path = (raw: string) => ({ raw, segs: raw.split('.') });
  assert.equal(readClaim({ a: { b: { c: 1 } } }, path('a.b.c')), 1);
  assert.equal(readClaim({ 'a.b': 2 }, path('a.b')), 2);
  assert.equal(readClaim({ 'a.b': 2, a: { b: 3 } }, path('a.b')), undefined, 'literal and nested both present: ambiguous');
  assert.equal(readClaim({ a: [{ b: 1 }] }, path('a.0.b')), undefined);
  assert.equal(readClaim({}, path('constructor')), undefined);
  assert.equal(readClaim({ a: {} }, path('a.__proto__')), undefined);
  assert.equal(readClaim({ a: null }, path('a.b')), undefined);
});
