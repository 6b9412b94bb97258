/**
 * Algorithm confusion (RFC 8725 §2.1, §3.1): an HS256 token whose HMAC secret is the
 * issuer's RSA public key (PEM text, JWK JSON, DER bytes, modulus) is refused; HS* can
 * never be configured and `oct` keys in a JWKS are ignored. Also: an algorithm outside
 * the issuer's allow-list, even with a key that would verify it.
 */
import { after, before, test } from 'node:test';
import { exportSPKI, importJWK, SignJWT } from 'jose';
import { assertDenied, CHALLENGE, DESC, startApiFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startApiFixture({ issuerExtra: '\n    algorithms: [RS256]', algs: ['RS256', 'ES256'] });
});
after(() => f?.close());

const claims = () => ({ iss: f.iss.issuer, aud: 'api', sub: 'attacker', exp: Math.floor(Date.now() / 1000) + 300 });

test('HS256/384/512 signed with the RSA public key as the HMAC secret: 401 algorithm', async () => {
  const rsa = f.iss.keys[0];
  const pub = await importJWK(rsa.publicJwk, 'RS256', { extractable: true });
  const pem = await exportSPKI(pub as CryptoKey);
  const secrets: Array<[string, Uint8Array]> = [
    ['PEM', new TextEncoder().encode(pem)],
    ['PEM without trailing newline', new TextEncoder().encode(pem.trim())],
    ['JWK JSON', new TextEncoder().encode(JSON.stringify(rsa.publicJwk))],
    ['DER', Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64')],
    ['modulus', Buffer.from(rsa.publicJwk.n as string, 'base64url')],
  ];
  for (const [what, secret] of secrets) {
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      for (const kid of ['k1', undefined]) {
        const t = await new SignJWT(claims()).setProtectedHeader({ alg, ...(kid ? { kid } : {}) }).sign(secret);
        await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.algorithm), 'invalid_token', `${alg} ${what} kid ${kid}`);
      }
    }
  }
});

test('an algorithm outside the allow-list is refused even with a published key that verifies it', async () => {
  const es = f.iss.keys[1];
  const t = await f.iss.sign({ key: es, claims: { sub: 'x' } });
  await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.algorithm), 'invalid_token', 'ES256 not allowed');
});

test('RS256 header on an ES256 key (kid of the EC key): 401 unknown_kid, no cross-type use', async () => {
  const es = f.iss.keys[1];
  const rsaSigned = await f.iss.sign({ key: f.iss.keys[0], header: { kid: es.kid } });
  await assertDenied(await f.bearer('/api/x', rsaSigned), f.up, 401, CHALLENGE.invalid(DESC.unknown_kid), 'invalid_token', 'kid of EC key');
});
