/**
 * In-process cost of the decision pipeline per request, without sockets: `decide()` on a
 * `mode: none` route against a `mode: jwt` route whose token is a verified-token cache hit
 * (plus the identity headers), for RS256/ES256/EdDSA tokens, each as a first request and as
 * a later request of the same keep-alive connection (the credential memo); then the cost of
 * a miss (a token never seen: one parse, one signature check), of a tampered token and of
 * an expired one, against `jose.jwtVerify` on the same token for comparison. It isolates
 * what auth adds to a request from the proxying, which the socket benchmark (bench/run.ts)
 * includes.
 *
 *   node --import tsx bench/decide-micro.ts [ITERATIONS]
 */
import { BENCH_ISS, benchPipelineConfig } from './lib/pipeline.js';
import { newCredentialMemo } from '../src/pipeline/extract.js';
import { decide, newContext, type RequestFacts } from '../src/pipeline/run.js';
import { JwtVerifier, type KeySource } from '../src/pipeline/verify-jwt.js';
import { KeyObject } from 'node:crypto';
import { importJWK, jwtVerify } from 'jose';
import { generateKeys, signToken, tamper, type BenchAlg } from './lib/tokens.js';

const N = Number(process.argv[2] ?? 200_000);
const keys = generateKeys();
const iss = BENCH_ISS;
const config = benchPipelineConfig('micro.yaml');
const imported = new Map<string, { key: KeyObject; id: string }>();
for (const k of Object.values(keys)) imported.set(k.kid, { key: KeyObject.from(await importJWK(k.jwk as never, k.alg) as CryptoKey), id: k.kid });
const source: KeySource = {
  getKey: async (_i, kid) => imported.get(kid as string)!,
  hasKey: (_i, id) => imported.has(id),
};
const verifiers = { jwt: new JwtVerifier({ keys: source, cacheSize: 1000 }) };
const baseHeaders = ['Host', 'gw.test', 'User-Agent', 'bench', 'Accept', '*/*'];

/**
 * Requests as the HTTP parser hands them over: every request a new header string (here 256
 * copies made up front, cycled), so nothing benefits from a string hashed or compared before.
 */
function requests(facts: RequestFacts): RequestFacts[] {
  return Array.from({ length: 256 }, () => ({ ...facts, rawHeaders: facts.rawHeaders.map((h) => Buffer.from(h, 'latin1').toString('latin1')) }));
}

async function perRequestUs(facts: RequestFacts): Promise<number> {
  const reqs = requests(facts);
  for (let i = 0; i < 20_000; i++) await decide(config, reqs[i & 255], verifiers, newContext()); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await decide(config, reqs[i & 255], verifiers, newContext());
  return Number(process.hrtime.bigint() - t0) / 1e3 / N;
}

const none = await perRequestUs({ method: 'GET', target: '/none/x', host: 'gw.test', rawHeaders: baseHeaders });
console.log(`decide() per request, ${N} iterations (µs):`);
console.log(`  none                         ${none.toFixed(2)}`);
for (const alg of ['RS256', 'ES256', 'EdDSA'] as BenchAlg[]) {
  const token = signToken(keys[alg], { iss, aud: 'bench-api' });
  const facts: RequestFacts = { method: 'GET', target: '/jwt/x', host: 'gw.test', rawHeaders: [...baseHeaders, 'Authorization', `Bearer ${token}`] };
  const fresh = await perRequestUs(facts);
  // The proxy's case: requests of one keep-alive connection share its credential memo.
  const kept = await perRequestUs({ ...facts, credentialMemo: newCredentialMemo() });
  console.log(`  jwt ${alg.padEnd(5)} hit, new connection  ${fresh.toFixed(2)}   (+${(fresh - none).toFixed(2)})`);
  console.log(`  jwt ${alg.padEnd(5)} hit, same connection ${kept.toFixed(2)}   (+${(kept - none).toFixed(2)})`);
}

// Misses: a verifier without a token cache sees every token as new.
const noCache = new JwtVerifier({ keys: source, cacheSize: 0 });
const jwtAuth = config.routes[1].auth;
const M = Math.max(1000, Math.floor(N / 20));
async function verifyUs(token: string, expectOk: boolean): Promise<number> {
  const once = async () => {
    try {
      await noCache.verify(token, jwtAuth);
      if (!expectOk) throw new Error('accepted');
    } catch (e) {
      if (expectOk) throw e;
    }
  };
  for (let i = 0; i < 500; i++) await once();
  return cpuUsPer(once);
}
/** CPU time (all threads: jose's WebCrypto work runs on the libuv pool) per call of `f`, in µs. */
async function cpuUsPer(f: () => Promise<unknown>): Promise<number> {
  const c0 = process.cpuUsage();
  for (let i = 0; i < M; i++) await f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / M;
}
console.log(`JwtVerifier.verify() without a token cache, ${M} iterations (CPU µs per call, all threads):`);
for (const alg of ['RS256', 'ES256', 'EdDSA'] as BenchAlg[]) {
  const token = signToken(keys[alg], { iss, aud: 'bench-api' });
  const miss = await verifyUs(token, true);
  const bad = await verifyUs(tamper(token), false);
  const expired = await verifyUs(signToken(keys[alg], { iss, aud: 'bench-api', ttlSec: -3600 }), false);
  const key = imported.get(keys[alg].kid)!.key;
  for (let i = 0; i < 200; i++) await jwtVerify(token, key, { algorithms: [alg] });
  const jose = await cpuUsPer(() => jwtVerify(token, key, { algorithms: [alg] }));
  console.log(`  ${alg.padEnd(5)} valid ${miss.toFixed(1)}  tampered ${bad.toFixed(1)}  expired ${expired.toFixed(1)}   (jose.jwtVerify ${jose.toFixed(1)})`);
}
