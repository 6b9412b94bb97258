/**
 * Differential test of the JWT verifier against `jose.jwtVerify` on random tokens, valid and
 * not: random header and claims JSON (raw text: duplicate members, wrong types, non-finite
 * numbers, non-objects, invalid UTF-8), signed with the right key, another key, another
 * algorithm, or not at all (zero, DER, truncated, garbage signatures), then perhaps mutated
 * in its text (padding, base64 alphabets, unused bits, one changed character).
 *
 * The verifier must accept exactly what jose accepts, minus what it refuses on purpose on
 * top: non-canonical base64url (RFC 7515 §2), any `crit` (RFC 7515 §4.1.11: no extension is
 * implemented), non-finite NumericDates (RFC 7519 §2), an `iat` in the future (RFC 8725
 * §3.10), a non-string `kid`. When both accept, the claims must be the same. fast-check
 * prints the seed of a failure; FC_SEED replays it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { jwtVerify } from 'jose';
import { GatewayError } from '../../../src/errors.js';
import { JwtVerifier, type KeySource } from '../../../src/pipeline/verify-jwt.js';
import { compileYaml } from '../../helpers/config.js';

const RUNS = Number(process.env.FC_RUNS ?? 600);
const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;

const ISS = 'https://iss.test';
const NOW = 1_800_000_000; // whole seconds: jose compares against the floor of its clock
const TOL = 30;
const ALLOWED = ['RS256', 'PS256', 'ES256', 'EdDSA'] as const;
type Alg = (typeof ALLOWED)[number];

const config = compileYaml(`
issuers:
  - { id: plain, issuer: ${ISS}, jwksUri: ${ISS}/jwks, algorithms: [${ALLOWED.join(', ')}], clockToleranceSec: ${TOL} }
  - { id: typed, issuer: ${ISS}/typed, jwksUri: ${ISS}/jwks, algorithms: [${ALLOWED.join(', ')}], clockToleranceSec: ${TOL}, requireTyp: at+jwt }
routes:
  - { id: plain, match: { pathPrefix: /p }, upstream: http://u.test, auth: { mode: jwt, issuers: [plain] } }
  - { id: typed, match: { pathPrefix: /t }, upstream: http://u.test, auth: { mode: jwt, issuers: [typed] } }
`);

type Pair = { publicKey: KeyObject; privateKey: KeyObject };
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const keys: Record<Alg, Pair> = { RS256: rsa, PS256: rsa, ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }), EdDSA: generateKeyPairSync('ed25519') };
/** Keys of the same types that the verifier does not know. */
const strangers: Record<Alg, Pair> = {
  RS256: generateKeyPairSync('rsa', { modulusLength: 2048 }), PS256: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }), EdDSA: generateKeyPairSync('ed25519'),
};
const verificationKey = (alg: unknown): KeyObject => keys[(ALLOWED as readonly unknown[]).includes(alg) ? (alg as Alg) : 'RS256'].publicKey;

const source: KeySource = {
  getKey: async (_issuerId, _kid, alg) => ({ key: verificationKey(alg), id: `key-${alg}` }),
  hasKey: () => true,
};
const verifier = new JwtVerifier({ keys: source, now: () => NOW * 1000, cacheSize: 0 });

function signWith(alg: Alg, key: KeyObject, input: string): Buffer {
  const data = Buffer.from(input);
  switch (alg) {
    case 'RS256': return cryptoSign('sha256', data, key);
    case 'PS256': return cryptoSign('sha256', data, { key, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 });
    case 'ES256': return cryptoSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
    case 'EdDSA': return cryptoSign(null, data, key);
  }
}

// ---- generators -----------------------------------------------------------------------

/**
 * Raw JSON member `"name":value`, or nothing: absent, a value that passes, or one that does
 * not, by weight (mostly passing ones, so that many tokens are valid).
 */
const member = (name: string, w: { absent: number; good: number; bad: number }, good: string[], bad: string[]) => {
  const choices: Array<{ weight: number; arbitrary: fc.Arbitrary<string> }> = [];
  if (w.absent) choices.push({ weight: w.absent, arbitrary: fc.constant('') });
  if (w.good && good.length) choices.push({ weight: w.good, arbitrary: fc.constantFrom(...good).map((v) => `${JSON.stringify(name)}:${v}`) });
  if (w.bad && bad.length) choices.push({ weight: w.bad, arbitrary: fc.constantFrom(...bad).map((v) => `${JSON.stringify(name)}:${v}`) });
  return fc.oneof(...choices);
};

const headerText = fc.oneof(
  { weight: 12, arbitrary: fc.tuple(
    member('alg', { absent: 0, good: 12, bad: 1 }, ALLOWED.map((a) => JSON.stringify(a)), ['"RS384"', '"HS256"', '"none"', '"rs256"', '1', 'null', '"ES384"']),
    member('kid', { absent: 4, good: 4, bad: 1 }, ['"k1"', '""'], ['5', 'null']),
    member('typ', { absent: 1, good: 6, bad: 1 }, ['"at+jwt"', '"application/at+jwt"', '"AT+JWT"'], ['"JWT"', '7', '"application/jwt"']),
    member('crit', { absent: 20, good: 0, bad: 1 }, [], ['["b64"]', '[]', '["x"]', '"b64"', '["exp"]']),
    member('b64', { absent: 10, good: 1, bad: 0 }, ['true', 'false', '"x"'], []), // without crit, b64 means nothing
    member('alg', { absent: 20, good: 1, bad: 1 }, ['"RS256"'], ['"none"', '"HS256"']), // a duplicate `alg`: the last one counts
  ).map((ms) => `{${ms.filter(Boolean).join(',')}}`) },
  { weight: 1, arbitrary: fc.constantFrom('[]', 'null', '"RS256"', '{"alg":"RS256"', '{}', ' {"alg":"RS256"} ') },
);

const claimsText = (iss: string) => fc.oneof(
  { weight: 12, arbitrary: fc.tuple(
    member('iss', { absent: 0, good: 15, bad: 1 }, [JSON.stringify(iss)], ['"https://other.test"', '1', 'null', JSON.stringify(`${iss}/`)]),
    member('exp', { absent: 1, good: 15, bad: 4 }, [`${NOW + 600}`, `${NOW - TOL + 1}`, `${NOW + 0.5}`, '1e308'], [`${NOW - TOL}`, `${NOW - 3600}`, '"soon"', 'null', '1e400', '-1e400']),
    member('nbf', { absent: 6, good: 4, bad: 1 }, [`${NOW}`, `${NOW + TOL}`, '-1e300'], [`${NOW + TOL + 1}`, '"x"', '1e400', '-1e400', 'null']),
    member('iat', { absent: 4, good: 6, bad: 1 }, [`${NOW}`, `${NOW + TOL}`, `${NOW - 0.25}`], [`${NOW + TOL + 1}`, '"x"', '-1e400']),
    member('aud', { absent: 1, good: 2, bad: 0 }, ['"api"', '["api","b"]', '5'], []),
    member('sub', { absent: 1, good: 2, bad: 0 }, ['"u1"', '{"a":[1,2]}', '"\\u00e9\\ud83d\\ude00"'], []),
    member('exp', { absent: 20, good: 1, bad: 1 }, [`${NOW + 600}`], [`${NOW - 3600}`]), // a duplicate `exp`: the last one counts
    member('__proto__', { absent: 10, good: 1, bad: 0 }, ['{"scope":"admin"}'], []),
  ).map((ms) => `{${ms.filter(Boolean).join(',')}}`) },
  { weight: 1, arbitrary: fc.constantFrom('[]', '"claims"', 'null', '{', `{"iss":${JSON.stringify(iss)},"exp":${NOW + 600}}x`) },
);

/** UTF-8 bytes of the text, sometimes with a byte order mark or a byte that is not UTF-8. */
const encoded = (text: fc.Arbitrary<string>) => fc.tuple(text, fc.constantFrom(...Array<string>(12).fill('plain'), 'bom', 'invalid')).map(([t, how]) => {
  const b = Buffer.from(t, 'utf8');
  if (how === 'bom') return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b]);
  // An otherwise harmless member whose string holds a byte that is not UTF-8.
  if (how === 'invalid') return Buffer.concat([b.subarray(0, b.length - 1), Buffer.from(',"x":"a'), Buffer.from([0xc3]), Buffer.from('"'), b.subarray(b.length - 1)]);
  return b;
});

type Signer = 'right' | 'stranger' | 'other-alg' | 'zero' | 'der' | 'truncated' | 'garbage';
const signer = fc.oneof(
  { weight: 10, arbitrary: fc.constant<Signer>('right') },
  { weight: 1, arbitrary: fc.constantFrom<Signer>('stranger', 'other-alg', 'zero', 'der', 'truncated', 'garbage') },
);

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
type TextMutation = 'none' | 'pad' | 'std' | 'lastchar' | 'flip';
const textMutation = fc.tuple(
  fc.oneof({ weight: 10, arbitrary: fc.constant<TextMutation>('none') }, { weight: 1, arbitrary: fc.constantFrom<TextMutation>('pad', 'std', 'lastchar', 'flip') }),
  fc.integer({ min: 0, max: 2 }),
  fc.nat(),
);

function mutate(token: string, [kind, part, at]: [TextMutation, number, number]): string {
  const parts = token.split('.');
  const p = parts[part];
  if (kind === 'pad') parts[part] = p + '='.repeat((4 - (p.length % 4)) % 4 || 1);
  else if (kind === 'std') parts[part] = Buffer.from(p, 'base64url').toString('base64');
  else if (kind === 'lastchar' && p.length % 4 >= 2) {
    const unused = p.length % 4 === 2 ? 4 : 2;
    parts[part] = p.slice(0, -1) + B64URL[B64URL.indexOf(p.at(-1) as string) | ((1 << unused) - 1)];
  } else if (kind === 'flip' && p.length > 1) {
    const i = at % (p.length - 1); // not the last character, whose low bits are fixed
    parts[part] = p.slice(0, i) + (p[i] === 'A' ? 'B' : 'A') + p.slice(i + 1);
  }
  return parts.join('.');
}

/** A token from header bytes, claims bytes, a way to sign, and a text mutation. */
function makeToken(header: Buffer, claims: Buffer, how: Signer, mutation: [TextMutation, number, number]): string {
  const input = `${header.toString('base64url')}.${claims.toString('base64url')}`;
  let alg: Alg = 'RS256';
  try {
    const a = JSON.parse(header.toString('utf8').replace(/^\uFEFF/, ''))?.alg;
    if ((ALLOWED as readonly unknown[]).includes(a)) alg = a;
  } catch { /* not JSON: sign with RS256 anyway */ }
  let sig: Buffer;
  switch (how) {
    case 'right': sig = signWith(alg, keys[alg].privateKey, input); break;
    case 'stranger': sig = signWith(alg, strangers[alg].privateKey, input); break;
    case 'other-alg': { const other = alg === 'ES256' ? 'EdDSA' : 'ES256'; sig = signWith(other, keys[other].privateKey, input); break; }
    case 'zero': sig = Buffer.alloc(alg === 'RS256' || alg === 'PS256' ? 256 : 64); break;
    case 'der': sig = cryptoSign('sha256', Buffer.from(input), keys.ES256.privateKey); break; // DER-encoded ECDSA
    case 'truncated': sig = signWith(alg, keys[alg].privateKey, input).subarray(1); break;
    case 'garbage': sig = Buffer.from('not a signature at all, but long enough to be one...........');
  }
  return mutate(`${input}.${sig.toString('base64url')}`, mutation);
}

// ---- the oracle -----------------------------------------------------------------------

/** jose's verdict: the claims, or null when it refuses. */
async function joseVerdict(token: string, typed: boolean): Promise<Record<string, unknown> | null> {
  let alg: unknown;
  try {
    // As jose reads the header (TextDecoder drops a leading BOM), so the key fits the alg it will check.
    alg = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString('utf8').replace(/^\uFEFF/, ''))?.alg;
  } catch { /* jose refuses it too */ }
  try {
    const { payload } = await jwtVerify(token, verificationKey(alg), {
      algorithms: [...ALLOWED], issuer: typed ? `${ISS}/typed` : ISS, requiredClaims: ['exp'], clockTolerance: TOL,
      currentDate: new Date(NOW * 1000), ...(typed ? { typ: 'at+jwt' } : {}),
    });
    return payload as Record<string, unknown>;
  } catch {
    return null;
  }
}

const CANONICAL = /^[A-Za-z0-9_-]+$/;
/** The rules the verifier adds to jose's, on a token jose accepted (so its parts are JSON). */
function extraRulesHold(token: string, claims: Record<string, unknown>): boolean {
  const parts = token.split('.');
  for (const p of parts) {
    if (!CANONICAL.test(p) || p.length % 4 === 1 || Buffer.from(p, 'base64url').toString('base64url') !== p) return false;
  }
  const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8').replace(/^\uFEFF/, ''));
  if (header.crit !== undefined) return false;
  if (header.kid !== undefined && typeof header.kid !== 'string') return false;
  for (const c of ['exp', 'nbf', 'iat']) if (claims[c] !== undefined && !Number.isFinite(claims[c])) return false;
  if (typeof claims.iat === 'number' && claims.iat > NOW + TOL) return false;
  return true;
}

async function ourVerdict(token: string, typed: boolean): Promise<Record<string, unknown> | string> {
  try {
    return { ...(await verifier.verify(token, config.routes[typed ? 1 : 0].auth)).claims };
  } catch (e) {
    if (e instanceof GatewayError) return e.reason;
    throw e; // anything but a catalogued refusal is a bug
  }
}

test('the verifier accepts exactly what jose.jwtVerify accepts, less its own stricter rules, with the same claims', async () => {
  const seen = { accepted: 0, refusedByBoth: 0, refusedOnlyByUs: 0 };
  const typedAndClaims = fc.boolean().chain((typed) => fc.tuple(fc.constant(typed), encoded(claimsText(typed ? `${ISS}/typed` : ISS))));
  await fc.assert(fc.asyncProperty(
    typedAndClaims, encoded(headerText), signer, textMutation, fc.context(),
    async ([typed, claims], header, how, mutation, ctx) => {
      const token = makeToken(header, claims, how, mutation);
      ctx.log(token);
      const jose = await joseVerdict(token, typed);
      const ours = await ourVerdict(token, typed);
      const expected = jose !== null && extraRulesHold(token, jose);
      if (expected) {
        assert.equal(typeof ours, 'object', `refused (${String(ours)}) what jose accepts and no extra rule forbids`);
        assert.deepStrictEqual(ours, jose);
        seen.accepted++;
      } else {
        assert.equal(typeof ours, 'string', `accepted what ${jose === null ? 'jose refuses' : 'an extra rule forbids'}`);
        if (jose === null) seen.refusedByBoth++;
        else seen.refusedOnlyByUs++;
      }
    },
  ), { numRuns: RUNS, seed: SEED, includeErrorInReport: true });
  console.log("jose differential:", JSON.stringify(seen));
  // The property means little unless all three outcomes occurred often.
  assert.ok(seen.accepted >= RUNS / 10, JSON.stringify(seen));
  assert.ok(seen.refusedByBoth >= RUNS / 10, JSON.stringify(seen));
  assert.ok(seen.refusedOnlyByUs >= RUNS / 50, JSON.stringify(seen));
});
