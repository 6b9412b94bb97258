/**
 * A reload that tightens an issuer (adds `requireTyp`, narrows `algorithms`) must hold for
 * every token from then on. The verified-token cache outlives the reload (it is not part
 * of the issuer runtime that the reload replaces), and a cache hit re-checks only the
 * issuer id, the key, exp/nbf and the audience: a token accepted under the old issuer
 * settings is still accepted under the new ones until it expires, while the very same
 * token signed afresh (not cached) is refused. Fail closed: what the current config
 * refuses is refused, cached or not.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { reloadOnce } from '../../src/reload.js';
import { assertDenied, CHALLENGE, DESC, startFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;

function yaml(issuerExtra: string): string {
  return `
issuers:
  - id: a
    issuer: ${f.iss.issuer}
    jwksUri: ${f.iss.jwksUri}
    audiences: [api]
    jwks: { cooldownSec: 1 }${issuerExtra}
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${f.up.url}
    auth: { mode: jwt }
`;
}

before(async () => {
  f = await startFixture((iss, up) => `
issuers:
  - id: a
    issuer: ${iss.issuer}
    jwksUri: ${iss.jwksUri}
    audiences: [api]
    jwks: { cooldownSec: 1 }
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
`, { algs: ['RS256', 'ES256'] });
});
after(() => f?.close());

async function reloadTo(issuerExtra: string): Promise<void> {
  writeFileSync(f.gw.file, yaml(issuerExtra));
  assert.equal(await reloadOnce(f.gw.gw, f.gw.file), true, 'reload taken');
  await f.gw.ready(); // the replaced issuer runtime has fetched its keys again
}

test('requireTyp added by a reload: an ID token (typ JWT) accepted before it is refused after it', async () => {
  await reloadTo('');
  const idToken = await f.iss.sign({ header: { typ: 'JWT' }, claims: { nonce: 'n', azp: 'app' } });
  let r = await f.bearer('/api/x', idToken);
  assert.equal(r.status, 200, 'accepted before the reload (no requireTyp)');
  await r.text();
  f.up.reset();

  await reloadTo('\n    requireTyp: at+jwt');
  // Control: an equivalent token never seen before is refused by the new policy.
  const fresh = await f.iss.sign({ header: { typ: 'JWT' }, claims: { nonce: 'n2', azp: 'app' } });
  await assertDenied(await f.bearer('/api/x', fresh), f.up, 401, CHALLENGE.invalid(DESC.token_type), 'invalid_token', 'fresh ID token');
  // The token seen before the reload must be refused just the same.
  r = await f.bearer('/api/x', idToken);
  await assertDenied(r, f.up, 401, CHALLENGE.invalid(DESC.token_type), 'invalid_token', 'ID token cached before the reload');
});

test('algorithms narrowed by a reload: an RS256 token accepted before it is refused after it', async () => {
  await reloadTo('\n    algorithms: [RS256, ES256]');
  const rsKey = f.iss.keys.find((k) => k.alg === 'RS256')!;
  const rs = await f.iss.sign({ key: rsKey });
  let r = await f.bearer('/api/x', rs);
  assert.equal(r.status, 200, 'RS256 accepted before the reload');
  await r.text();
  f.up.reset();

  await reloadTo('\n    algorithms: [ES256]');
  const fresh = await f.iss.sign({ key: rsKey, claims: { jti: 'other' } });
  await assertDenied(await f.bearer('/api/x', fresh), f.up, 401, CHALLENGE.invalid(DESC.algorithm), 'invalid_token', 'fresh RS256 token');
  r = await f.bearer('/api/x', rs);
  await assertDenied(r, f.up, 401, CHALLENGE.invalid(DESC.algorithm), 'invalid_token', 'RS256 token cached before the reload');
});
