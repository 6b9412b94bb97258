/** Upstream headers: claim → header values, identity-header scrubbing, Connection tokens, hop-by-hop. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { headerValue, identityHeaders, upstreamHeaders } from '../../../src/pipeline/mutate.js';
import { scopesOf, type Principal } from '../../../src/pipeline/principal.js';
import type { GatewayError } from '../../../src/errors.js';
import { compileYaml, ISSUER_A } from '../../helpers/config.js';

const config = compileYaml(`
server: { identityHeaderPrefix: X-Auth- }
issuers:${ISSUER_A}
routes:
  - id: r
    match: { pathPrefix: /r }
    upstream: http://u
    auth: { mode: jwt }
    forward:
      headers: { X-Subject: sub, x-scopes: scope, x-groups: groups, x-n: n, x-org: org.name, x-missing: nope, x-empty: empty }
      claimsHeader: X-Claims
  - id: pass
    match: { pathPrefix: /pass }
    upstream: http://u
    auth: { mode: jwt }
    forward: { authorization: pass }
  - { id: open, match: { pathPrefix: / }, upstream: http://u, auth: { mode: none } }
`);
const route = (id: string) => config.routes.find((r) => r.id === id)!;
const p = (claims: Record<string, unknown>): Principal => ({ issuerId: 'a', claims, scopes: scopesOf(claims), source: 'jwt' });
const fwd = { for: '10.0.0.1', proto: 'http', host: 'gw.test' };

test('headerValue: strings as is, numbers/booleans JSON, string arrays joined, others JSON, UTF-8 bytes', () => {
  assert.equal(headerValue('abc'), 'abc');
  assert.equal(headerValue(42), '42');
  assert.equal(headerValue(1.5), '1.5');
  assert.equal(headerValue(true), 'true');
  assert.equal(headerValue(false), 'false');
  assert.equal(headerValue(['a', 'b']), 'a,b');
  assert.equal(headerValue(['a', 'b'], ' '), 'a b');
  assert.equal(headerValue(['a', 1]), '["a",1]');
  assert.equal(headerValue({ a: 1 }), '{"a":1}');
  assert.equal(headerValue([]), '');
  assert.equal(headerValue(null), undefined);
  assert.equal(headerValue(undefined), undefined);
  assert.equal(Buffer.from(headerValue('é') as string, 'latin1').toString('utf8'), 'é');
});

test('headerValue refuses control characters anywhere: 401 unsafe_claim', () => {
  for (const v of ['a\r\nb', 'a\n', '\r', 'a\u0000', 'a\u001f', 'a\u007f', 'a\u0085', ['ok', 'a\nb']]) {
    assert.throws(() => headerValue(v), (e: GatewayError) => e.reason === 'unsafe_claim' && e.status === 401, JSON.stringify(v));
  }
  // objects are sent as JSON text, where control characters are escaped (\n): nothing can split the header
  assert.equal(headerValue({ k: 'a\nb' }), '{"k":"a\\nb"}');
});

test('identityHeaders: lower-case names, virtual scope, dotted claims, missing/empty skipped, claimsHeader base64url JSON', () => {
  const claims = { sub: 'u1', scp: ['a', 'b'], groups: ['g1', 'g2'], n: 7, org: { name: 'Acme' }, empty: '' };
  const out = identityHeaders(route('r'), p(claims));
  assert.deepEqual(out.slice(0, -1), [['x-subject', 'u1'], ['x-scopes', 'a b'], ['x-groups', 'g1,g2'], ['x-n', '7'], ['x-org', 'Acme']]);
  const [name, value] = out.at(-1)!;
  assert.equal(name, 'x-claims');
  assert.deepEqual(JSON.parse(Buffer.from(value, 'base64url').toString()), claims);
  assert.deepEqual(identityHeaders(route('open'), null), []);
});

test('upstreamHeaders strips every identity header in canonical spelling, on every route', () => {
  const incoming = {
    'x-subject': 'evil', 'x_subject': 'evil', 'x-scopes': 'evil', 'x-claims': 'evil', 'x_claims': 'evil', 'x-auth-other': 'evil',
    'x_auth_other': 'evil', 'x-keep': 'yes', 'authorization': 'Bearer t', 'host': 'gw.test', 'x-forwarded-for': '6.6.6.6',
    'x_forwarded_for': '6.6.6.6', 'forwarded': 'for=6.6.6.6', 'keep-alive': 'x', 'te': 'trailers', 'transfer-encoding': 'chunked',
    'transfer_encoding': 'chunked', 'upgrade': 'h2c', 'proxy-authorization': 'x', 'x-listed': '1', 'content-type': 'text/plain',
  };
  for (const id of ['r', 'open']) {
    const own: Array<[string, string]> = id === 'r' ? [['x-subject', 'u1']] : [];
    const out = upstreamHeaders(config, route(id), incoming, own, fwd, 'close, X-Listed, x-subject');
    assert.deepEqual(out, {
      'x-keep': 'yes', 'content-type': 'text/plain',
      'x-forwarded-for': '10.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'gw.test',
      ...(id === 'r' ? { 'x-subject': 'u1' } : {}),
    }, id);
  }
});

test('authorization: pass keeps the header; the gateway headers win over anything listed in Connection', () => {
  const out = upstreamHeaders(config, route('pass'), { authorization: 'Bearer t', 'x-subject': 'evil' }, [], fwd, ['x-forwarded-for', 'authorization']);
  assert.equal(out.authorization, undefined, 'a Connection-listed authorization is hop-by-hop for this request');
  const out2 = upstreamHeaders(config, route('pass'), { authorization: 'Bearer t' }, [], fwd, undefined);
  assert.equal(out2.authorization, 'Bearer t');
  assert.equal(out.authorization, undefined);
  assert.equal(out['x-forwarded-for'], '10.0.0.1');
});

test('compiled identity header set is canonical (lower case, _ as -) and includes the claims header', () => {
  assert.deepEqual([...config.identityHeaders].sort(), ['x-claims', 'x-empty', 'x-groups', 'x-missing', 'x-n', 'x-org', 'x-scopes', 'x-subject']);
  assert.equal(config.identityPrefix, 'x-auth-');
});

test('client-address headers (X-Real-IP, True-Client-IP, ...) and foreign X-Forwarded-* pass only with trustProxy', () => {
  const incoming = { 'x-real-ip': '10.9.9.9', 'true-client-ip': '10.9.9.9', 'x-forwarded-port': '443', 'x-kept': 'yes' };
  const off = upstreamHeaders(config, route('open'), incoming, [], fwd, undefined);
  assert.deepEqual([off['x-real-ip'], off['true-client-ip'], off['x-forwarded-port'], off['x-kept']], [undefined, undefined, undefined, 'yes']);
  const trusting = compileYaml(`
server: { trustProxy: true }
routes:
  - { id: open, match: { pathPrefix: / }, upstream: http://u, auth: { mode: none } }
`);
  const on = upstreamHeaders(trusting, trusting.routes[0]!, incoming, [], fwd, undefined);
  assert.deepEqual([on['x-real-ip'], on['true-client-ip'], on['x-forwarded-port'], on['x-kept']], ['10.9.9.9', '10.9.9.9', '443', 'yes']);
});
