/**
 * h2load (nghttp2's HTTP/2 load generator, Debian `nghttp2-client`) as the load of the h2
 * and gRPC scenarios: a C client on its own, so the gateway is measured rather than the
 * client. Each job runs one h2load process bounded by `-D`; its per-request log
 * (`--log-file`: start, status, µs to the end of the response) gives the statuses and the
 * latency percentiles, which its own summary does not print.
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import type { LoadResult } from './load.js';

/** One h2load job. */
export interface H2LoadJob {
  url: string;
  /** Connections (`-c`), and concurrent streams on each (`-m`). */
  clients: number;
  streams: number;
  durationSec: number;
  headers?: Record<string, string>;
  /** A file sent as every request's body (`-d`: the method becomes POST). */
  dataFile?: string;
}

/** The `-H` and `-d` arguments of `job` (no values are ever logged: one may be a token). */
export function h2loadArgs(job: H2LoadJob, logFile: string): string[] {
  const args = ['-c', String(job.clients), '-m', String(job.streams), '-t', '1',
    '-D', `${Math.max(1, Math.round(job.durationSec * 1000))}ms`, `--log-file=${logFile}`];
  for (const [k, v] of Object.entries(job.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (job.dataFile) args.push('-d', job.dataFile);
  args.push(job.url);
  return args;
}

/** Nearest-rank percentile of sorted values. */
const percentile = (sorted: Float64Array, p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : 0);

/** A job's figures from h2load's summary (stdout) and its per-request log. */
export function parseH2load(stdout: string, log: string): LoadResult {
  const finished = /finished in ([\d.]+)(ms|s),/.exec(stdout);
  const elapsedSec = finished ? Number(finished[1]) / (finished[2] === 'ms' ? 1000 : 1) : NaN;
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(stdout);
  const statusCodes: Record<string, number> = {};
  const lines = log.split('\n');
  const latencies = new Float64Array(lines.length);
  let n = 0;
  for (const line of lines) {
    const tab = line.indexOf('\t');
    if (tab === -1) continue;
    const tab2 = line.indexOf('\t', tab + 1);
    const status = line.slice(tab + 1, tab2);
    statusCodes[status] = (statusCodes[status] ?? 0) + 1;
    latencies[n++] = Number(line.slice(tab2 + 1)) / 1000; // µs → ms
  }
  const sorted = latencies.subarray(0, n).sort();
  const non2xx = Object.entries(statusCodes).reduce((a, [c, k]) => a + (c.startsWith('2') ? 0 : k), 0);
  return {
    rps: elapsedSec > 0 ? n / elapsedSec : 0,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    total: n,
    non2xx,
    errors: req ? Number(req[6]) + Number(req[7]) : 0,
    statusCodes,
  };
}

/** Runs one job with the h2load binary `bin`; the log file is removed afterwards. */
export async function runH2load(bin: string, job: H2LoadJob, logFile: string): Promise<LoadResult> {
  const child = spawn(bin, h2loadArgs(job, logFile), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr += c));
  // -D bounds the run; the kill is only for an h2load that hangs past it.
  const kill = setTimeout(() => child.kill('SIGKILL'), job.durationSec * 1000 + 30_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(kill);
  try {
    if (code !== 0) throw new Error(`h2load exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ').replace(/Bearer \S+/gi, 'Bearer [redacted]')}`);
    return parseH2load(stdout, readFileSync(logFile, 'utf8'));
  } finally {
    rmSync(logFile, { force: true });
  }
}
