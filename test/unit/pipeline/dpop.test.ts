import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProofChecker, accessTokenHash, normalizeOrigin, type ProofRequest } from '../../../src/pipeline/dpop.js';
import { MemoryReplayStore, type ReplayStore } from '../../../src/dpop/replay-store.js';
import { NonceSource } from '../../../src/dpop/nonce.js';
import { GatewayError } from '../../../src/errors.js';
import type { DpopConfig } from '../../../src/config/schema.js';
import { dpopClient } from '../../helpers/dpop.js';

const T0 = 1_800_000_000_000;
const DPOP: DpopConfig = { proofMaxAgeSec: 60, algorithms: ['ES256', 'EdDSA', 'RS256', 'PS256'], nonce: false, replayStore: 'memory', replayCacheSize: 100 };
const TOKEN = 'a.b.c';

async function setup(opts: { store?: ReplayStore; nonces?: NonceSource } = {}) {
  let now = T0;
  const store = opts.store ?? new MemoryReplayStore(100, () => now);
  const calls: Array<[string, boolean]> = [];
  const checker = new ProofChecker({ now: () => now, replayStore: () => store, nonces: () => opts.nonces ?? null, onStore: (k, _s, ok) => calls.push([k, ok]) });
  const client = await dpopClient('ES256');
  const req = (proof: string, over: Partial<ProofRequest> = {}): ProofRequest => ({
    proofs: [proof], method: 'GET', origin: 'https://api.example.com', path: '/orders/1', token: TOKEN,
    jkt: client.jkt, toleranceSec: 5, maxBytes: 8192, ...over,
  });
  return { checker, client, req, calls, setNow: (ms: number) => { now = ms; } };
}

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof GatewayError, String(e));
    return e.reason;
  }
}

test('normalizeOrigin lower-cases and drops the default port (RFC 3986 §6.2.3)', () => {
  assert.equal(normalizeOrigin('https', 'API.Example.COM:443'), 'https://api.example.com');
  assert.equal(normalizeOrigin('http', 'api.example.com:80'), 'http://api.example.com');
  assert.equal(normalizeOrigin('http', 'api.example.com:8080'), 'http://api.example.com:8080');
  assert.equal(normalizeOrigin('http', undefined), null);
  assert.equal(normalizeOrigin('ftp', 'x'), null);
  assert.equal(normalizeOrigin('http', 'user@x'), null);
  assert.equal(normalizeOrigin('http', 'x/y'), null);
});

test('a valid proof passes once; the same jti again is a replay; the store is timed', async () => {
  const { checker, client, req, calls, setNow } = await setup();
  const iat = T0 / 1000;
  const proof = await client.proof({ htm: 'GET', htu: 'https://API.example.com:443/orders/1?q=1#x', token: TOKEN, iat });
  assert.deepEqual(await checker.check(DPOP, req(proof)), { nextNonce: null });
  assert.equal(await reason(checker.check(DPOP, req(proof))), 'dpop_proof_replay');
  setNow(T0 + 64_000); // still within maxAge + tolerance: still remembered
  assert.equal(await reason(checker.check(DPOP, req(proof))), 'dpop_proof_replay');
  assert.deepEqual(calls, [['memory', true], ['memory', true], ['memory', true]]);
});

test('iat window: maxAge + tolerance behind, tolerance ahead', async () => {
  const { checker, client, req } = await setup();
  const s = T0 / 1000;
  const at = async (iat: number) => reason(checker.check(DPOP, req(await client.proof({ htm: 'GET', htu: 'https://api.example.com/orders/1', token: TOKEN, iat }))));
  assert.equal(await at(s - 65), 'ok');
  assert.equal(await at(s - 66), 'dpop_proof_iat');
  assert.equal(await at(s + 5), 'ok');
  assert.equal(await at(s + 6), 'dpop_proof_iat');
});

test('each check has its own reason', async () => {
  const { checker, client, req } = await setup();
  const base = { htm: 'GET', htu: 'https://api.example.com/orders/1', token: TOKEN, iat: T0 / 1000 };
  const p = (o: Partial<typeof base> & Record<string, unknown> = {}) => client.proof({ ...base, ...o });
  assert.equal(await reason(checker.check(DPOP, { ...req(await p()), proofs: [] })), 'dpop_proof_missing');
  assert.equal(await reason(checker.check(DPOP, { ...req(await p()), proofs: [await p(), await p()] })), 'dpop_proof_multiple');
  assert.equal(await reason(checker.check(DPOP, req('not-a-jwt'))), 'dpop_proof_malformed');
  assert.equal(await reason(checker.check(DPOP, { ...req(await p()), maxBytes: 100 })), 'dpop_proof_malformed');
  assert.equal(await reason(checker.check({ ...DPOP, algorithms: ['EdDSA'] }, req(await p()))), 'dpop_proof_alg');
  assert.equal(await reason(checker.check(DPOP, req(await p({ typ: 'at+jwt' })))), 'dpop_proof_typ');
  assert.equal(await reason(checker.check(DPOP, req(await p({ jwk: { kty: 'EC' } })))), 'dpop_proof_jwk');
  assert.equal(await reason(checker.check(DPOP, req(await p({ jwk: client.privateJwk })))), 'dpop_proof_jwk');
  assert.equal(await reason(checker.check(DPOP, req(await p({ htm: 'get' })))), 'dpop_proof_htm');
  assert.equal(await reason(checker.check(DPOP, req(await p({ htu: 'https://api.example.com/orders/2' })))), 'dpop_proof_htu');
  assert.equal(await reason(checker.check(DPOP, req(await p({ htu: 'https://api.example.com:8443/orders/1' })))), 'dpop_proof_htu');
  assert.equal(await reason(checker.check(DPOP, req(await p({ htu: 'https://api.example.com/orders/1/' })))), 'dpop_proof_htu');
  assert.equal(await reason(checker.check(DPOP, req(await p({ htu: 'https://api.example.com/Orders/1' })))), 'dpop_proof_htu');
  assert.equal(await reason(checker.check(DPOP, req(await p({ htu: 'not a url' })))), 'dpop_proof_htu');
  assert.equal(await reason(checker.check(DPOP, { ...req(await p()), origin: null })), 'dpop_proof_htu');
  assert.equal(await reason(checker.check(DPOP, req(await p({ ath: null } as never)))), 'dpop_proof_ath');
  assert.equal(await reason(checker.check(DPOP, req(await p({ ath: accessTokenHash('other') } as never)))), 'dpop_proof_ath');
  assert.equal(await reason(checker.check(DPOP, { ...req(await p()), jkt: 'x'.repeat(43) })), 'dpop_key_mismatch');
  assert.equal(await reason(checker.check(DPOP, req(await p({ jti: 'x'.repeat(300) } as never)))), 'dpop_proof_malformed');
  assert.equal(await reason(checker.check(DPOP, req(await p()))), 'ok');
});

test('percent-encoded unreserved characters and dot-segments in htu are normalized like the request path', async () => {
  const { checker, client, req } = await setup();
  const proof = await client.proof({ htm: 'GET', htu: 'https://api.example.com/%6Frders/./x/../1', token: TOKEN, iat: T0 / 1000 });
  assert.equal(await reason(checker.check(DPOP, req(proof))), 'ok');
});

test('EdDSA, RS256 and PS256 proofs are accepted', async () => {
  for (const alg of ['EdDSA', 'RS256', 'PS256'] as const) {
    const { checker, req } = await setup();
    const c = await dpopClient(alg);
    const proof = await c.proof({ htm: 'GET', htu: 'https://api.example.com/orders/1', token: TOKEN, iat: T0 / 1000 });
    assert.equal(await reason(checker.check(DPOP, { ...req(proof), jkt: c.jkt })), 'ok', alg);
  }
});

test('a failing replay store fails closed with 503 and is counted', async () => {
  const broken: ReplayStore = { kind: 'redis', remember: async () => { throw new Error('ECONNREFUSED'); } };
  const { checker, client, req, calls } = await setup({ store: broken });
  const proof = await client.proof({ htm: 'GET', htu: 'https://api.example.com/orders/1', token: TOKEN, iat: T0 / 1000 });
  assert.equal(await reason(checker.check(DPOP, req(proof))), 'replay_store_unavailable');
  assert.deepEqual(calls, [['redis', false]]);
});

test('nonces: missing → use_dpop_nonce carrying the current nonce; previous window → accepted with a fresh nonce', async () => {
  let now = T0;
  const nonces = new NonceSource('s'.repeat(32), 60, () => now);
  const { checker, client, req, setNow } = await setup({ nonces });
  const cfg = { ...DPOP, nonce: true, nonceSecret: 's'.repeat(32) };
  const mk = (nonce?: string) => client.proof({ htm: 'GET', htu: 'https://api.example.com/orders/1', token: TOKEN, iat: now / 1000, nonce });
  let err: unknown;
  try {
    await checker.check(cfg, req(await mk()));
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof GatewayError);
  assert.equal(err.reason, 'dpop_nonce');
  const n1 = nonces.current();
  assert.equal(err.dpop?.nonce, n1);
  assert.deepEqual(await checker.check(cfg, req(await mk(n1))), { nextNonce: null });
  now = T0 + 60_000;
  setNow(now);
  const n2 = nonces.current();
  assert.notEqual(n2, n1);
  assert.deepEqual(await checker.check(cfg, req(await mk(n1))), { nextNonce: n2 });
  now = T0 + 120_000;
  setNow(now);
  assert.equal(await reason(checker.check(cfg, req(await mk(n1)))), 'dpop_nonce');
});

test('jwkThumbprint equals jose calculateJwkThumbprint (RFC 7638) for EC, OKP and RSA; null for oct or incomplete keys', async () => {
  const { jwkThumbprint } = await import('../../../src/pipeline/dpop.js');
  const { calculateJwkThumbprint } = await import('jose');
  for (const alg of ['ES256', 'EdDSA', 'RS256'] as const) {
    const c = await dpopClient(alg);
    assert.equal(jwkThumbprint({ ...c.publicJwk, kid: 'ignored', use: 'sig' }), await calculateJwkThumbprint(c.publicJwk, 'sha256'), alg);
  }
  assert.equal(jwkThumbprint({ kty: 'oct', k: 'AAAA' }), null);
  assert.equal(jwkThumbprint({ kty: 'EC', crv: 'P-256', x: 'AA' }), null);
});
