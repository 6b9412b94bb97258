/**
 * Token fuzzing (issue 6 §3), against a real gateway and a hand-signing issuer:
 *
 * 1. random mutations of a valid token's text — header, payload and signature bytes,
 *    base64 alphabets, padding, whitespace, extra/missing segments — are never 200 and
 *    never 5xx (the signature covers the exact header and payload text, RFC 7515 §5.2,
 *    and a signature segment must be canonical base64url, so no mutation may pass);
 * 2. adversarial header and payload JSON, VALIDLY SIGNED with the issuer's key — huge
 *    and non-finite numbers, wrong types, deep nesting, duplicate keys, `__proto__`,
 *    `alg`/`kid`/`crit` games — is never 5xx, and is 200 only when an independent
 *    oracle (JSON.parse semantics: last duplicate wins) says every rule holds.
 *
 * Afterwards the gateway still serves a valid token. fast-check prints the seed of a
 * failure; FC_SEED replays it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { KeyObject, sign as cryptoSign } from 'node:crypto';
import fc from 'fast-check';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml } from '../helpers/fixture.js';

const RUNS = Number(process.env.FC_RUNS ?? 200);
const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;

let iss: MockIssuer;
let up: EchoUpstream;
let gw: TestGateway;
let valid: string;
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const statuses = new Map<number, number>();

before(async () => {
  iss = await startMockIssuer();
  up = await startUpstream();
  gw = await startGateway(`
server: { maxTokenBytes: 65536, maxHeaderBytes: 131072, tokenCacheSize: 0 }
${issuerYaml(iss)}routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-subject: sub } }
`);
  await gw.ready();
  valid = await iss.sign({ claims: { exp: Math.floor(Date.now() / 1000) + 3600 } });
});
after(async () => {
  console.log('token-fuzz statuses:', JSON.stringify(Object.fromEntries(statuses)));
  agent.destroy();
  await gw?.close();
  await up?.close();
  await iss?.close();
});

/** GET /orders/1 with `Authorization: <value>`; resolves the status and body. */
function send(authorization: string): Promise<{ status: number; body: string; www: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${gw.url}/orders/1`, { agent, headers: { authorization } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        resolve({ status, body, www: res.headers['www-authenticate'] });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Never 5xx, never token material in a body, and a catalogue body on every refusal.
 * (A 431 is the UPSTREAM refusing a huge identity header built from a validly signed
 * claim — the gateway relays it; it never occurs in the unsigned-mutation property.)
 */
function assertClean(r: { status: number; body: string }, what: string): void {
  assert.ok(r.status < 500, `${what}: ${r.status} ${r.body}`);
  assert.ok(!r.body.includes(valid.split('.')[1]), `${what}: the body echoes token material`);
  if (r.status >= 400 && r.status !== 431) assert.match(r.body, /^\{"error":"[a-z_]+","error_description":"[^"]*"\}$/);
}

// ---- 1. text mutations of a valid token ----------------------------------------------

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const charPool = fc.constantFrom(...(B64URL + '+/=. \t~!"#$%&\'()*,:;<>?@[\\]^`{|}\u00e9').split(''));

type Mutation = (t: string) => string;
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  // replace / insert / delete one character anywhere
  fc.tuple(fc.nat(), charPool).map(([i, c]): Mutation => (t) => { const p = i % t.length; return t.slice(0, p) + c + t.slice(p + 1); }),
  fc.tuple(fc.nat(), charPool).map(([i, c]): Mutation => (t) => { const p = i % (t.length + 1); return t.slice(0, p) + c + t.slice(p); }),
  fc.nat().map((i): Mutation => (t) => { const p = i % t.length; return t.slice(0, p) + t.slice(p + 1); }),
  // flip one bit of one decoded byte of one segment, re-encode
  fc.tuple(fc.integer({ min: 0, max: 2 }), fc.nat(), fc.integer({ min: 0, max: 7 })).map(([s, i, bit]): Mutation => (t) => {
    const parts = t.split('.');
    if (parts[s] === undefined) return t + '.';
    const bytes = Buffer.from(parts[s], 'base64url');
    if (bytes.length) bytes[i % bytes.length] ^= 1 << bit;
    parts[s] = bytes.toString('base64url');
    return parts.join('.');
  }),
  // base64 alphabet and padding variants of one segment
  fc.tuple(fc.integer({ min: 0, max: 2 }), fc.constantFrom('std', 'pad', 'both', 'lastchar')).map(([s, kind]): Mutation => (t) => {
    const parts = t.split('.');
    if (parts[s] === undefined) return t + '.';
    const raw = Buffer.from(parts[s], 'base64url');
    if (kind === 'std') parts[s] = raw.toString('base64').replace(/=+$/, '');
    else if (kind === 'pad') parts[s] = parts[s] + '='.repeat((4 - (parts[s].length % 4)) % 4 || 4);
    else if (kind === 'both') parts[s] = raw.toString('base64');
    else {
      // a non-canonical last character: same decoded bytes, different text (unused low bits set)
      const last = parts[s].at(-1) as string;
      const v = B64URL.indexOf(last);
      const unused = parts[s].length % 4 === 2 ? 4 : parts[s].length % 4 === 3 ? 2 : 0;
      if (unused) parts[s] = parts[s].slice(0, -1) + B64URL[(v & ~((1 << unused) - 1)) | ((1 << unused) - 1)];
    }
    return parts.join('.');
  }),
  // segment games
  fc.constantFrom<Mutation>(
    (t) => t + '.', (t) => '.' + t, (t) => t + '.' + t.split('.')[2], (t) => t.split('.').slice(0, 2).join('.') + '.',
    (t) => t.split('.').slice(0, 2).join('.'), (t) => t.replace(/\./g, '..'), (t) => t.split('.').reverse().join('.'),
    (t) => { const p = t.split('.'); return [p[1], p[0], p[2]].join('.'); }, (t) => t + ' ' + t, (t) => ` ${t} `,
    (t) => `${t}\t`, (t) => t.toUpperCase(), (t) => t.repeat(2), (t) => t.split('.').map((s) => s + '=').join('.'),
    (t) => t.replace(/-/g, '+').replace(/_/g, '/'),
  ),
);
const scheme = fc.constantFrom('Bearer ', 'bearer ', 'BEARER ', 'Bearer  ', 'Bearer\t', 'Bearer', 'Bearer ,', 'Token ', '');

test('text mutations of a valid token: never 200, never 5xx', async () => {
  await fc.assert(fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), scheme, async (muts, sch) => {
    const t = muts.reduce((acc, m) => m(acc), valid);
    // A no-op mutation is the valid token itself; surrounding whitespace is OWS that HTTP trims (RFC 9110 §5.5).
    fc.pre(t.trim() !== valid);
    const r = await send(sch + t);
    assertClean(r, JSON.stringify(sch + t).slice(0, 200));
    assert.ok(r.status === 400 || r.status === 401, `mutated token got ${r.status}: ${JSON.stringify(t)}`);
  }), { numRuns: RUNS, seed: SEED, includeErrorInReport: true });
});

test('signature text variants that lenient base64 decoders accept are refused (one text per signature)', async () => {
  const [h, p, sig] = valid.split('.');
  const unused = sig.length % 4 === 2 ? 4 : sig.length % 4 === 3 ? 2 : 0;
  const variants = [
    `${h}.${p}.${Buffer.from(sig, 'base64url').toString('base64')}`, // standard alphabet, padded
    `${h}.${p}.${sig}=`,
    `${h}=.${p}.${sig}`,
  ];
  if (unused) variants.push(`${h}.${p}.${sig.slice(0, -1)}${B64URL[B64URL.indexOf(sig.at(-1) as string) | 1]}`);
  for (const t of variants) {
    if (t === valid) continue;
    const r = await send(`Bearer ${t}`);
    assert.ok(r.status === 401 || r.status === 400, `${r.status} for ${t.slice(-20)}`);
  }
  const crit = signRaw('{"alg":"RS256","kid":"k1","crit":["b64"],"b64":true}', `{"iss":${JSON.stringify(iss.issuer)},"aud":"api","sub":"u","scope":"orders:read","exp":${now() + 600}}`);
  assert.equal((await send(`Bearer ${crit}`)).status, 401, 'crit ["b64"] (an extension jose knows) is still refused');
  const forever = signRaw('{"alg":"RS256","kid":"k1"}', `{"iss":${JSON.stringify(iss.issuer)},"aud":"api","sub":"u","scope":"orders:read","exp":1e400}`);
  assert.equal((await send(`Bearer ${forever}`)).status, 401, 'exp 1e400 (Infinity) never expires: refused');
});

// ---- 2. adversarial JSON, validly signed ------------------------------------------------

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');

/** Signs raw header/payload JSON text with the issuer's RS256 key (bypassing jose's checks). */
function signRaw(headerJson: string, payloadJson: string): string {
  const input = `${b64(headerJson)}.${b64(payloadJson)}`;
  const key = KeyObject.from(iss.keys[0].privateKey as unknown as Parameters<typeof KeyObject.from>[0]);
  return `${input}.${cryptoSign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

const now = () => Math.floor(Date.now() / 1000);
const nestedJson = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
const hugeNumber = fc.constantFrom('1e308', '1e400', '-1e400', '9007199254740993', '1.5', '-0', '0', '-1', '1e-400',
  '99999999999999999999999999999999', '"9999999999"', 'null', 'true', '[9999999999]', '{"$numberLong":"9999999999"}');
const jsonValue = fc.oneof(
  hugeNumber,
  fc.integer({ min: 1, max: 3000 }).map(nestedJson),
  fc.integer({ min: 1, max: 3000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
  fc.string({ maxLength: 20 }).map((s) => JSON.stringify(s)),
  fc.constantFrom('"\\u0000"', '"\\ud800"', '"a\\r\\nX-Evil: 1"', '"orders:read"', '"api"', '["api"]', '[]', '{}', '""'),
);
const claimName = fc.constantFrom('exp', 'nbf', 'iat', 'iss', 'aud', 'sub', 'scope', 'scp', 'cnf', '__proto__', 'constructor', 'jti');

/** Payload text: the valid claims, then extra (possibly duplicate) members appended. */
const payloadText = fc.array(fc.tuple(claimName, jsonValue), { minLength: 1, maxLength: 4 }).map((extra) => {
  const base = `"iss":${JSON.stringify(iss.issuer)},"aud":"api","sub":"user-1","scope":"orders:read","iat":${now()},"exp":${now() + 600}`;
  return `{${base}${extra.map(([k, v]) => `,${JSON.stringify(k)}:${v}`).join('')}}`;
});
const headerText = fc.oneof(
  { weight: 3, arbitrary: fc.constant('{"alg":"RS256","kid":"k1"}') },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('alg', 'kid', 'crit', 'b64', 'typ', 'jku', 'x5u', 'jwk', 'x5c', 'cty', 'zip', '__proto__'), jsonValue.chain((v) => fc.constantFrom(v, '"none"', '"HS256"', '"RS256 "', '"rs256"', '"ES256"', '["exp"]', '["b64"]', 'false', '"k1"', '"../../k1"', '"http://127.0.0.1:1/jwks"', '"DEF"'))).map(([k, v]) =>
    `{"alg":"RS256","kid":"k1",${JSON.stringify(k)}:${v}}`) },
  { weight: 1, arbitrary: fc.constantFrom('{"alg":"RS256"}', '{"kid":"k1"}', '{}', '[]', 'null', '"RS256"', '{"alg":"RS256","kid":"k1"', '{"alg":"RS256","alg":"none","kid":"k1"}', '{"alg":"none","alg":"RS256","kid":"k1"}') },
);

/** Independent oracle: may the gateway accept this signed token? (JSON.parse: last duplicate wins.) */
function mayAccept(headerJson: string, payloadJson: string): boolean {
  let h: Record<string, unknown>, p: Record<string, unknown>;
  try {
    h = JSON.parse(headerJson);
    p = JSON.parse(payloadJson);
  } catch {
    return false;
  }
  if (!h || typeof h !== 'object' || Array.isArray(h) || !p || typeof p !== 'object' || Array.isArray(p)) return false;
  // No JWS extension is understood: any `crit` fails (RFC 7515 §4.1.11); an uncritical `b64` is just ignored.
  if (h.alg !== 'RS256' || (h.kid !== undefined && h.kid !== 'k1') || h.crit !== undefined) return false;
  const t = now();
  const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  if (!num(p.exp) || (p.exp as number) <= t - 30) return false;
  if (p.nbf !== undefined && (!num(p.nbf) || (p.nbf as number) > t + 30)) return false;
  if (p.iat !== undefined && (!num(p.iat) || (p.iat as number) > t + 30)) return false;
  if (p.iss !== iss.issuer) return false;
  if (!(p.aud === 'api' || (Array.isArray(p.aud) && p.aud.includes('api')))) return false;
  const scopes = typeof p.scope === 'string' ? p.scope.split(' ') : Array.isArray(p.scp) ? p.scp : [];
  if (!Object.prototype.hasOwnProperty.call(p, 'scope') && !Object.prototype.hasOwnProperty.call(p, 'scp')) return false;
  if (!scopes.includes('orders:read')) return false;
  if (p.cnf !== undefined && p.cnf !== null && typeof p.cnf === 'object') return false;
  return true;
}

test('adversarial header/payload JSON, validly signed: never 5xx, 200 only when every rule holds', async () => {
  await fc.assert(fc.asyncProperty(headerText, payloadText, async (h, p) => {
    const token = signRaw(h, p);
    const r = await send(`Bearer ${token}`);
    assertClean(r, `${h} ${p.slice(0, 300)}`);
    if (r.status === 200) {
      assert.ok(mayAccept(h, p), `accepted although a rule fails: ${h} ${p.slice(0, 300)}`);
    } else {
      assert.ok(r.status === 401 || r.status === 403 || r.status === 431, `${r.status} ${r.body}`);
    }
  }), { numRuns: RUNS, seed: SEED, includeErrorInReport: true });
});

test('__proto__ and constructor members grant nothing', async () => {
  const p = `{"iss":${JSON.stringify(iss.issuer)},"aud":"api","sub":"u","exp":${now() + 600},"__proto__":{"scope":"orders:read"},"constructor":{"prototype":{"scope":"orders:read"}}}`;
  const r = await send(`Bearer ${signRaw('{"alg":"RS256","kid":"k1"}', p)}`);
  assert.equal(r.status, 403);
  assert.equal(r.www, 'Bearer realm="tokengate", error="insufficient_scope", error_description="The access token lacks a required scope", scope="orders:read"');
  assert.equal(({} as Record<string, unknown>).scope, undefined, 'Object.prototype polluted');
});

test('the gateway is still up and accepts a valid token', async () => {
  const r = await send(`Bearer ${valid}`);
  assert.equal(r.status, 200, r.body);
  assert.equal(up.requests.at(-1)?.headers['x-auth-subject'], 'user-1');
});
