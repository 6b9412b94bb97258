/**
 * Header-supplied keys (RFC 8725 §3.10 spirit, RFC 7515 §4.1.2-4.1.6): a JWT header's
 * `jwk`, `jku`, `x5u` and `x5c` are never used for key selection. The `jku`/`x5u`
 * server is the test's own, serving the attacker's key: it must see zero requests.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { assertDenied, CHALLENGE, DESC, startApiFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
let evil: http.Server;
let evilUrl: string;
let evilHits = 0;
let attacker: { privateKey: CryptoKey; jwk: Record<string, unknown> };

before(async () => {
  f = await startApiFixture();
  const kp = await generateKeyPair('RS256', { extractable: true });
  attacker = { privateKey: kp.privateKey, jwk: { ...(await exportJWK(kp.publicKey)), kid: 'evil', alg: 'RS256', use: 'sig' } };
  evil = http.createServer((_req, res) => {
    evilHits++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [attacker.jwk, { ...attacker.jwk, kid: 'k1' }] }));
  });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
  evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
});
after(async () => {
  await f?.close();
  evil?.closeAllConnections();
  await new Promise((r) => evil?.close(r));
});

const claims = () => ({ iss: f.iss.issuer, aud: 'api', sub: 'attacker', exp: Math.floor(Date.now() / 1000) + 300 });
const forge = (header: Record<string, unknown>) =>
  new SignJWT(claims()).setProtectedHeader({ alg: 'RS256', ...header }).sign(attacker.privateKey);

test('embedded jwk: with the real kid it is a bad signature, with its own kid an unknown key', async () => {
  await assertDenied(await f.bearer('/api/x', await forge({ jwk: attacker.jwk, kid: 'k1' })), f.up, 401, CHALLENGE.invalid(DESC.bad_signature), 'invalid_token', 'jwk + real kid');
  await assertDenied(await f.bearer('/api/x', await forge({ jwk: attacker.jwk })), f.up, 401, CHALLENGE.invalid(DESC.bad_signature), 'invalid_token', 'jwk, no kid');
  await assertDenied(await f.bearer('/api/x', await forge({ jwk: attacker.jwk, kid: 'evil' })), f.up, 401, CHALLENGE.invalid(DESC.unknown_kid), 'invalid_token', 'jwk + own kid');
});

test('jku and x5u pointing at the attacker server are never fetched', async () => {
  for (const param of ['jku', 'x5u']) {
    for (const kid of ['k1', 'evil', undefined]) {
      const t = await forge({ [param]: `${evilUrl}/jwks`, ...(kid ? { kid } : {}) });
      const reason = kid === 'evil' ? 'unknown_kid' : 'bad_signature';
      await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC[reason]), 'invalid_token', `${param} kid ${kid}`);
    }
  }
  assert.equal(evilHits, 0, 'the attacker server must see zero requests');
});

test('x5c with the attacker certificate material is ignored', async () => {
  const t = await forge({ x5c: [Buffer.from('not a real cert').toString('base64')], kid: 'k1' });
  await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.bad_signature), 'invalid_token', 'x5c');
  assert.equal(evilHits, 0);
});
