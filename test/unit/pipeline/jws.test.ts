/**
 * The JWS primitives under the JWT verifier: one strict parse, and synchronous signature
 * checks that accept only each algorithm's own signature form (RFC 7518 §3.3-3.5, RFC 8037):
 * RSA signatures of exactly the modulus length, PSS with the hash-length salt, ECDSA as
 * fixed-width r || s with neither zero, and keys of the right type, curve and size.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { keyFitsAlg, parseJws, verifyJwsSignature, type HeaderMemo } from '../../../src/pipeline/jws.js';

const b64u = (b: Buffer | string) => Buffer.from(b).toString('base64url');
const INPUT = `${b64u('{"alg":"X"}')}.${b64u('{"sub":"u"}')}`;
const token = (sig: Buffer) => `${INPUT}.${b64u(sig)}`;
const check = (sig: Buffer, alg: string, key: KeyObject) => verifyJwsSignature(token(sig), INPUT.length, alg, key);

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');

test('the check is synchronous and accepts a good signature of each kind', () => {
  const data = Buffer.from(INPUT);
  const cases: Array<[string, Buffer, KeyObject]> = [
    ['RS256', sign('sha256', data, rsa.privateKey), rsa.publicKey],
    ['RS512', sign('sha512', data, rsa.privateKey), rsa.publicKey],
    ['PS256', sign('sha256', data, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }), rsa.publicKey],
    ['ES256', sign('sha256', data, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }), ec.publicKey],
    ['EdDSA', sign(null, data, ed.privateKey), ed.publicKey],
    ['Ed25519', sign(null, data, ed.privateKey), ed.publicKey],
  ];
  for (const [alg, sig, key] of cases) {
    const result = check(sig, alg, key);
    assert.equal(result, true, alg);
  }
  // One signature does not verify under another algorithm of the same key.
  assert.equal(check(cases[0][1], 'RS512', rsa.publicKey), false);
  assert.equal(check(cases[0][1], 'PS256', rsa.publicKey), false);
});

test('RSA: a signature not exactly of the modulus length is refused, leading zero bytes included (RFC 8017 §8.2.2)', () => {
  const data = Buffer.from(INPUT);
  let sig = sign('sha256', data, rsa.privateKey);
  assert.equal(check(Buffer.concat([Buffer.alloc(1), sig]), 'RS256', rsa.publicKey), false, 'one leading zero byte more');
  // A signature whose value starts with a zero byte, sent without it: same number, other text.
  for (let i = 0; sig[0] !== 0 && i < 5000; i++) sig = sign('sha256', Buffer.from(INPUT + i), rsa.privateKey);
  if (sig[0] === 0) assert.equal(verifyJwsSignature(`${INPUT}.${b64u(sig.subarray(1))}`, INPUT.length, 'RS256', rsa.publicKey), false);
});

test('PS256: only the salt length of the hash output (32 bytes) verifies (RFC 7518 §3.5)', () => {
  const data = Buffer.from(INPUT);
  for (const saltLength of [0, 20, 64]) {
    const sig = sign('sha256', data, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
    assert.equal(check(sig, 'PS256', rsa.publicKey), false, `salt ${saltLength}`);
  }
});

test('ECDSA: DER form, wrong width, r = 0, s = 0 are refused (RFC 7518 §3.4, CVE-2022-21449)', () => {
  const data = Buffer.from(INPUT);
  const good = sign('sha256', data, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
  assert.equal(check(sign('sha256', data, ec.privateKey), 'ES256', ec.publicKey), false, 'DER');
  assert.equal(check(Buffer.concat([good, Buffer.alloc(1)]), 'ES256', ec.publicKey), false, '65 bytes');
  assert.equal(check(Buffer.concat([Buffer.alloc(32), good.subarray(32)]), 'ES256', ec.publicKey), false, 'r = 0');
  assert.equal(check(Buffer.concat([good.subarray(0, 32), Buffer.alloc(32)]), 'ES256', ec.publicKey), false, 's = 0');
  assert.equal(check(Buffer.alloc(64), 'ES256', ec.publicKey), false, 'r = s = 0');
});

test('keyFitsAlg: key type, curve, size and public-ness per algorithm', () => {
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const ed448 = generateKeyPairSync('ed448');
  assert.equal(keyFitsAlg(rsa.publicKey, 'RS256'), true);
  assert.equal(keyFitsAlg(rsa.publicKey, 'PS512'), true);
  assert.equal(keyFitsAlg(small.publicKey, 'RS256'), false, 'RSA under 2048 bits (RFC 7518 §3.3)');
  assert.equal(keyFitsAlg(rsa.privateKey, 'RS256'), false, 'a private key');
  assert.equal(keyFitsAlg(ec.publicKey, 'ES256'), true);
  assert.equal(keyFitsAlg(p384.publicKey, 'ES256'), false, 'P-384 for ES256');
  assert.equal(keyFitsAlg(p384.publicKey, 'ES384'), true);
  assert.equal(keyFitsAlg(ec.publicKey, 'RS256'), false);
  assert.equal(keyFitsAlg(ed.publicKey, 'EdDSA'), true);
  assert.equal(keyFitsAlg(ed448.publicKey, 'EdDSA'), true);
  assert.equal(keyFitsAlg(ed448.publicKey, 'Ed25519'), false, 'Ed25519 names its curve');
  for (const alg of ['HS256', 'none', 'constructor', '__proto__', 'toString']) assert.equal(keyFitsAlg(rsa.publicKey, alg), false, alg);
});

test('parseJws: three canonical parts, UTF-8 JSON objects; a byte order mark is skipped', () => {
  const sig = b64u('sig');
  const t = (h: Buffer | string, p: Buffer | string) => `${b64u(h)}.${b64u(p)}.${sig}`;
  const parsed = parseJws(t('{"alg":"RS256"}', '{"sub":"é"}'));
  assert.deepEqual(parsed?.header, { alg: 'RS256' });
  assert.deepEqual(parsed?.claims, { sub: 'é' });
  assert.equal(parsed?.dot2, t('{"alg":"RS256"}', '{"sub":"é"}').lastIndexOf('.'));
  assert.deepEqual(parseJws(t(Buffer.from('\ufeff{"alg":"RS256"}'), '{}'))?.header, { alg: 'RS256' });
  assert.equal(parseJws(t('{"alg":"RS256"}', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]))), null, 'not UTF-8');
  for (const p of ['[]', 'null', '"x"', '1', '{', '']) assert.equal(parseJws(t('{"alg":"RS256"}', p)), null, p);
  const ok = t('{"alg":"RS256"}', '{}');
  for (const bad of [`${ok}=`, ok.replace('.', '=.'), `${ok}.x`, ok.slice(0, ok.lastIndexOf('.') + 1), `.${ok}`]) assert.equal(parseJws(bad), null, bad);
});

test('parseJws with a header memo: the same header text is decoded once; any other text is decoded, and a bad one refused', () => {
  const sig = b64u('sig');
  const t = (h: string, p: string) => `${b64u(h)}.${b64u(p)}.${sig}`;
  const memo: HeaderMemo = { text: null, header: null };
  const a = parseJws(t('{"alg":"RS256","kid":"k1"}', '{"n":1}'), memo);
  const b = parseJws(t('{"alg":"RS256","kid":"k1"}', '{"n":2}'), memo);
  assert.ok(a && b);
  assert.equal(b.header, a.header, 'one decode for one header text');
  assert.ok(Object.isFrozen(a.header), 'a shared header cannot be changed by one of its readers');
  assert.deepEqual(b.claims, { n: 2 }, 'the payload is decoded every time');
  const c = parseJws(t('{"alg":"ES256","kid":"k1"}', '{}'), memo);
  assert.deepEqual(c?.header, { alg: 'ES256', kid: 'k1' });
  assert.equal(parseJws(t('{"alg":"ES256","crit":', '{}'), memo), null, 'a header that does not parse is refused');
  assert.deepEqual(parseJws(t('{"alg":"ES256","kid":"k1"}', '{}'), memo)?.header, { alg: 'ES256', kid: 'k1' });
  // The same JSON text in another (non-canonical) encoding never reaches the memo.
  const same = t('{"alg":"ES256","kid":"k1"}', '{}');
  assert.equal(parseJws(`${same.slice(0, same.indexOf('.'))}=${same.slice(same.indexOf('.'))}`, memo), null);
});
