/**
 * How many gateway processes `server.workers` means on this machine: the CPUs the process
 * may use, read from the cgroup CPU quota (a Kubernetes CPU limit) as well as the CPU count.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

/**
 * Most workers a pod runs (`server.workers` is capped at it, and `0` picks at most it).
 * Each worker keeps its own key and token caches, so the IdP sees up to this many JWKS
 * fetches per refresh and introspection calls per token; past a few cores, more replicas
 * serve better than more processes per pod.
 */
export const MAX_WORKERS = 4;

/** The process count a `server.workers` value means, given the CPUs this process may use. */
export function workersFor(setting: number, cpus = usableCpus()): number {
  return setting === 0 ? Math.min(cpus, MAX_WORKERS) : setting;
}

/**
 * CPUs this process may use: the CPUs it sees, capped by a cgroup CPU quota rounded down,
 * at least 1. Node's `availableParallelism()` does not read the quota, so on a 16-core
 * node a pod limited to 2 CPUs would otherwise fork workers that the quota then
 * throttles. cgroup v2 `cpu.max` first, then v1 `cpu.cfs_quota_us`.
 */
export function usableCpus(root = '/sys/fs/cgroup', cpus = availableParallelism()): number {
  const quota = cgroupCpuQuota(root);
  return Math.max(1, quota === null ? cpus : Math.min(cpus, Math.floor(quota)));
}

/** The CPU quota in CPUs (quota / period), or null when there is none or it cannot be read. */
export function cgroupCpuQuota(root: string): number | null {
  const read = (p: string): string | null => {
    try {
      return readFileSync(join(root, p), 'utf8').trim();
    } catch {
      return null;
    }
  };
  const v2 = read('cpu.max'); // "max 100000" or "200000 100000"
  if (v2 !== null) {
    const [q, p] = v2.split(/\s+/);
    return q === 'max' ? null : ratio(q, p);
  }
  for (const dir of ['cpu', 'cpu,cpuacct', 'cpuacct,cpu']) {
    const q = read(`${dir}/cpu.cfs_quota_us`); // -1: no quota
    if (q !== null) return q === '-1' ? null : ratio(q, read(`${dir}/cpu.cfs_period_us`) ?? undefined);
  }
  return null;
}

function ratio(quota: string | undefined, period: string | undefined): number | null {
  const q = Number(quota);
  const p = Number(period);
  return Number.isFinite(q) && Number.isFinite(p) && q > 0 && p > 0 ? q / p : null;
}
