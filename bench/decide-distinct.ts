/**
 * In-process cost of a distinct-token request: `decide()` on a `mode: jwt` route (scope
 * rule, two identity headers) for tokens that are all new to a 10 000-entry verified-token
 * cache, against the native floor of the same work — `crypto.verify` on each token's
 * signing input — so that what is ours (parse, checks, cache insert, promises, headers) is
 * the difference. No sockets: the proxying a request also pays is `npm run bench`'s `none`.
 *
 *   node --import tsx bench/decide-distinct.ts [TOKENS] [PASSES] [ALG]
 *
 * CPU µs per request (process.cpuUsage: every thread). For a profile, run it under
 * `node --cpu-prof` or `valgrind --tool=callgrind` with PASSES 1.
 */
import { BENCH_ISS, benchPipelineConfig } from './lib/pipeline.js';
import { decide, newContext, type RequestFacts } from '../src/pipeline/run.js';
import { JwtVerifier, type KeySource } from '../src/pipeline/verify-jwt.js';
import { KeyObject, verify as cryptoVerify } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { importJWK } from 'jose';
import { generateKeys, signToken, type BenchAlg } from './lib/tokens.js';

const TOKENS = Number(process.argv[2] ?? 30_000);
const PASSES = Number(process.argv[3] ?? 3);
const ALG = (process.argv[4] ?? 'RS256') as BenchAlg;
const iss = BENCH_ISS;
const config = benchPipelineConfig('distinct.yaml');

// DISTINCT_TOKENS_FILE: tokens signed once (one per line; the public JWK they were signed with
// beside it, `<file>.jwk`), so that a run under valgrind does not sign them too.
const tokensFile = process.env.DISTINCT_TOKENS_FILE;
let signerJwk: Record<string, unknown> | undefined;
const tokens = tokensFile && existsSync(tokensFile)
  ? readFileSync(tokensFile, 'utf8').split('\n').filter(Boolean).slice(0, TOKENS)
  : sign();
/** Signs TOKENS new tokens (and writes them to DISTINCT_TOKENS_FILE when it is given). */
function sign(): string[] {
  // Key generation only here: a random RSA key search costs a varying number of instructions.
  const signer = generateKeys()[ALG];
  const out = Array.from({ length: TOKENS }, () => signToken(signer, { iss, aud: 'bench-api' }));
  if (tokensFile) {
    writeFileSync(tokensFile, out.join('\n'));
    writeFileSync(`${tokensFile}.jwk`, JSON.stringify(signer.jwk));
  }
  signerJwk = signer.jwk;
  return out;
}
const CACHE = Number(process.env.DISTINCT_CACHE ?? 10_000);
const jwk = signerJwk ?? JSON.parse(readFileSync(`${tokensFile}.jwk`, 'utf8'));
const key = KeyObject.from(await importJWK(jwk, ALG) as CryptoKey);
const selected = { key, id: String(jwk.kid) };
const source: KeySource = { getKey: async () => selected, hasKey: () => true };
// As the HTTP parser hands them over: a fresh header string per request.
const facts: RequestFacts[] = tokens.map((t) => ({
  method: 'GET', target: '/jwt/x', host: 'gw.test',
  rawHeaders: ['Host', 'gw.test', 'User-Agent', 'bench', 'Accept', '*/*', 'Authorization', Buffer.from(`Bearer ${t}`, 'latin1').toString('latin1')],
}));

function cpuUs(): number {
  const c = process.cpuUsage();
  return c.user + c.system;
}

/** The native floor: the signature check alone on every token (the signing input and signature as Buffers made per call, as any verifier must). */
function nativeOnce(): number {
  const t0 = cpuUs();
  for (const t of tokens) {
    const dot = t.lastIndexOf('.');
    const ok = ALG === 'RS256' ? cryptoVerify('sha256', Buffer.from(t.slice(0, dot), 'latin1'), key, Buffer.from(t.slice(dot + 1), 'base64url'))
      : ALG === 'ES256' ? cryptoVerify('sha256', Buffer.from(t.slice(0, dot), 'latin1'), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(t.slice(dot + 1), 'base64url'))
        : cryptoVerify(null, Buffer.from(t.slice(0, dot), 'latin1'), key, Buffer.from(t.slice(dot + 1), 'base64url'));
    if (!ok) throw new Error('bad signature');
  }
  return (cpuUs() - t0) / tokens.length;
}

// A fresh verifier per pass: every token is new to its cache (DISTINCT_CACHE entries, 10 000 as the default).
async function decideOnce(): Promise<number> {
  const verifiers = { jwt: new JwtVerifier({ keys: source, cacheSize: CACHE }) };
  const t0 = cpuUs();
  for (const f of facts) {
    const ctx = newContext();
    await decide(config, f, verifiers, ctx);
    if (ctx.headers.length !== 2) throw new Error('no identity headers');
  }
  return (cpuUs() - t0) / facts.length;
}

const mode = process.env.DISTINCT_ONLY; // 'native' | 'decide': profile one side only
for (let p = 0; p < PASSES; p++) {
  const native = mode === 'decide' ? NaN : nativeOnce();
  const full = mode === 'native' ? NaN : await decideOnce();
  console.log(`pass ${p + 1}: ${tokens.length} distinct ${ALG} tokens, CPU µs/request: decide() ${full.toFixed(1)}, crypto.verify alone ${native.toFixed(1)}, ours ${(full - native).toFixed(1)}`);
}
