/**
 * The load generator, run as its own process (forked by bench/run.ts, IPC channel):
 * it receives one job at a time, runs autocannon against a loopback URL and answers
 * with a summary. Keeping it out of the gateway's and the harness's processes means the
 * gateway is measured, not the client.
 */
import { createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { signToken, type BenchAlg, type BenchKey } from './tokens.js';

/** One load job. Exactly one of `durationSec` / `amount` bounds it. */
export interface LoadJob {
  url: string;
  connections: number;
  durationSec?: number;
  amount?: number;
  /** Requests per second at most, over all connections (autocannon `overallRate`); absent: as fast as it goes. */
  rate?: number;
  /** Static request headers. */
  headers?: Record<string, string>;
  /** A file with one token per line: each request takes the next (round robin). */
  tokensFile?: string;
  /** Sign a fresh token per request instead (memory check, random-`kid` flood). */
  sign?: { pkcs8: string; alg: BenchAlg; kid: string; iss: string; aud: string; randomKid?: boolean };
}

/** What a job measured. */
export interface LoadResult {
  /** Responses per second over the whole job. */
  rps: number;
  /** Latency percentiles in ms (every response, whatever its status). */
  p50: number;
  p99: number;
  total: number;
  non2xx: number;
  /** Socket errors and timeouts. */
  errors: number;
  statusCodes: Record<string, number>;
}

const tokenFiles = new Map<string, string[]>();
// Where each token file's rotation stands: the next job continues there, so a warm-up
// does not leave the measured run's first tokens in the gateway's cache.
const positions = new Map<string, number>();

function tokensOf(file: string): string[] {
  let t = tokenFiles.get(file);
  if (!t) {
    t = readFileSync(file, 'utf8').split('\n').filter(Boolean);
    tokenFiles.set(file, t);
  }
  return t;
}

/** Runs one job. */
export async function runLoad(job: LoadJob): Promise<LoadResult> {
  const tokens = job.tokensFile ? tokensOf(job.tokensFile) : null;
  const rotation = `${job.tokensFile}|${new URL(job.url).origin}`; // one rotation per gateway
  let next = job.tokensFile ? positions.get(rotation) ?? 0 : 0;
  const signer = job.sign;
  const key: BenchKey | null = signer
    ? { alg: signer.alg, kid: signer.kid, privateKey: createPrivateKey(signer.pkcs8), jwk: {} }
    : null;
  const tokenFor = tokens
    ? () => tokens[next++ % tokens.length]
    : key && signer
      ? () => signToken(key, { iss: signer.iss, aud: signer.aud }, signer.randomKid ? randomBytes(9).toString('base64url') : key.kid)
      : null;
  const started = process.hrtime.bigint();
  const result = await autocannon({
    url: job.url,
    connections: job.connections,
    pipelining: 1,
    ...(job.rate ? { overallRate: job.rate } : {}),
    ...(job.amount !== undefined ? { amount: job.amount } : { duration: job.durationSec ?? 5 }),
    timeout: 10,
    headers: job.headers ?? {},
    excludeErrorStats: false,
    ...(tokenFor ? {
      requests: [{
        setupRequest: (req: { headers?: Record<string, string> }) =>
          ({ ...req, headers: { ...req.headers, authorization: `Bearer ${tokenFor()}` } }),
      }],
    } : {}),
  });
  if (job.tokensFile) positions.set(rotation, next);
  const elapsedSec = Number(process.hrtime.bigint() - started) / 1e9;
  const statusCodes: Record<string, number> = {};
  for (const [code, s] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = (s as { count: number }).count;
  const total = Object.values(statusCodes).reduce((a, b) => a + b, 0);
  return {
    rps: total / elapsedSec,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    statusCodes,
  };
}

if (process.send) {
  process.on('message', (job: LoadJob) => {
    runLoad(job).then(
      (r) => process.send!({ ok: true, result: r }),
      (e: unknown) => process.send!({ ok: false, error: (e as Error).message }),
    );
  });
  process.on('disconnect', () => process.exit(0));
}
