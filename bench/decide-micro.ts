/**
 * In-process cost of the decision pipeline per request, without sockets: `decide()` on a
 * `mode: none` route against a `mode: jwt` route whose token is a verified-token cache hit
 * (plus the identity headers), for RS256/ES256/EdDSA tokens. It isolates what auth adds
 * to a request from the proxying, which the socket benchmark (bench/run.ts) includes.
 *
 *   node --import tsx bench/decide-micro.ts [ITERATIONS]
 */
import { compileConfig } from '../src/config/compile.js';
import { parseConfig } from '../src/config/load.js';
import { decide, newContext, type RequestFacts } from '../src/pipeline/run.js';
import { JwtVerifier, type KeySource } from '../src/pipeline/verify-jwt.js';
import { importJWK } from 'jose';
import { generateKeys, signToken, type BenchAlg } from './lib/tokens.js';

const N = Number(process.argv[2] ?? 200_000);
const keys = generateKeys();
const iss = 'https://issuer.bench';
const config = compileConfig(parseConfig(`
issuers:
  - { id: bench, issuer: ${iss}, jwksUri: ${iss}/jwks, algorithms: [RS256, ES256, EdDSA], audiences: [bench-api] }
routes:
  - { id: none, match: { pathPrefix: /none }, upstream: http://u.test, auth: { mode: none } }
  - id: jwt
    match: { pathPrefix: /jwt }
    upstream: http://u.test
    auth: { mode: jwt, scopes: { allOf: [bench:read] } }
    forward: { headers: { x-auth-subject: sub, x-auth-scopes: scope } }
`, 'micro.yaml', {}));
const imported = new Map<string, { key: CryptoKey | Uint8Array; id: string }>();
for (const k of Object.values(keys)) imported.set(k.kid, { key: await importJWK(k.jwk as never, k.alg), id: k.kid });
const source: KeySource = {
  getKey: async (_i, kid) => imported.get(kid as string)!,
  hasKey: (_i, id) => imported.has(id),
};
const verifiers = { jwt: new JwtVerifier({ keys: source, cacheSize: 1000 }) };
const baseHeaders = ['Host', 'gw.test', 'User-Agent', 'bench', 'Accept', '*/*'];

async function perRequestUs(facts: RequestFacts): Promise<number> {
  for (let i = 0; i < 20_000; i++) await decide(config, facts, verifiers, newContext()); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await decide(config, facts, verifiers, newContext());
  return Number(process.hrtime.bigint() - t0) / 1e3 / N;
}

const none = await perRequestUs({ method: 'GET', target: '/none/x', host: 'gw.test', rawHeaders: baseHeaders });
console.log(`decide() per request, ${N} iterations (µs):`);
console.log(`  none               ${none.toFixed(2)}`);
for (const alg of ['RS256', 'ES256', 'EdDSA'] as BenchAlg[]) {
  const token = signToken(keys[alg], { iss, aud: 'bench-api' });
  const us = await perRequestUs({ method: 'GET', target: '/jwt/x', host: 'gw.test', rawHeaders: [...baseHeaders, 'Authorization', `Bearer ${token}`] });
  console.log(`  jwt ${alg.padEnd(6)} (hit)   ${us.toFixed(2)}   (+${(us - none).toFixed(2)})`);
}
