/**
 * Claim type confusion (RFC 7519 §4.1, RFC 8725 §3.8-3.9): validly signed tokens whose
 * time claims are strings or other non-numbers, or whose `aud`/`iss` have odd shapes.
 */
import { after, before, test } from 'node:test';
import { assertDenied, CHALLENGE, DESC, signRaw, startApiFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startApiFixture();
});
after(() => f?.close());

const now = () => Math.floor(Date.now() / 1000);
const base = () => ({ iss: f.iss.issuer, aud: 'api', sub: 'u', iat: now(), exp: now() + 300 });
const send = async (claims: Record<string, unknown>) =>
  f.bearer('/api/x', await signRaw(f.iss.keys[0], { alg: 'RS256', kid: 'k1' }, claims));

test('exp as a string, null, array, object, missing, NaN-ish: 401 missing_exp', async () => {
  const exp = now() + 300;
  for (const v of [String(exp), `${exp}`, null, [exp], { v: exp }, true, '1e20', undefined]) {
    const claims: Record<string, unknown> = { ...base(), exp: v };
    if (v === undefined) delete claims.exp;
    await assertDenied(await send(claims), f.up, 401, CHALLENGE.invalid(DESC.missing_exp), 'invalid_token', `exp ${JSON.stringify(v)}`);
  }
});

test('exp in the past (beyond the 30 s tolerance): 401 expired; within tolerance: allowed', async () => {
  await assertDenied(await send({ ...base(), exp: now() - 31 }), f.up, 401, CHALLENGE.invalid(DESC.expired), 'invalid_token', 'expired');
  const ok = await send({ ...base(), exp: now() - 20 });
  if (ok.status !== 200) throw new Error(`within tolerance refused: ${ok.status}`);
  f.up.reset();
});

test('nbf and iat as strings: 401 claims_invalid; nbf/iat in the future: not_yet_valid / issued_in_future', async () => {
  for (const [name, v] of [['nbf', String(now())], ['iat', String(now())], ['nbf', [now()]], ['iat', { t: 1 }]] as const) {
    await assertDenied(await send({ ...base(), [name]: v }), f.up, 401, CHALLENGE.invalid(DESC.claims_invalid), 'invalid_token', `${name} ${JSON.stringify(v)}`);
  }
  await assertDenied(await send({ ...base(), nbf: now() + 120 }), f.up, 401, CHALLENGE.invalid(DESC.not_yet_valid), 'invalid_token', 'nbf future');
  await assertDenied(await send({ ...base(), iat: now() + 120 }), f.up, 401, CHALLENGE.invalid(DESC.issued_in_future), 'invalid_token', 'iat future');
});

test('aud odd shapes: object, number, nested array, empty string/array, null, wrong case: 401 audience', async () => {
  for (const aud of [{ api: true }, { 0: 'api' }, 1, [['api']], [], '', null, 'API', ' api', ['other', ['api']], [{ aud: 'api' }], true]) {
    await assertDenied(await send({ ...base(), aud }), f.up, 401, CHALLENGE.invalid(DESC.audience), 'invalid_token', `aud ${JSON.stringify(aud)}`);
  }
  const claims: Record<string, unknown> = base();
  delete claims.aud;
  await assertDenied(await send(claims), f.up, 401, CHALLENGE.invalid(DESC.audience), 'invalid_token', 'aud missing');
  const ok = await send({ ...base(), aud: ['other', 'api'] });
  if (ok.status !== 200) throw new Error(`aud array with api refused: ${ok.status}`);
  f.up.reset();
});

test('iss odd shapes (array, object, other case, trailing slash): 401 issuer', async () => {
  for (const iss of [[f.iss.issuer], { iss: f.iss.issuer }, f.iss.issuer.toUpperCase(), `${f.iss.issuer}/`, null, 1]) {
    await assertDenied(await send({ ...base(), iss }), f.up, 401, CHALLENGE.invalid(DESC.issuer), 'invalid_token', `iss ${JSON.stringify(iss)}`);
  }
});
