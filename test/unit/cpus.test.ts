/**
 * `server.workers: 0` forks one worker per CPU the process may use: a cgroup CPU quota
 * (Kubernetes CPU limit) caps it, rounded down, never below 1.
 */
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cgroupCpuQuota, usableCpus } from '../../src/cluster/cpus.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A fake cgroup root with the given files. */
function root(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'tokengate-cgroup-'));
  dirs.push(d);
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(join(d, p, '..'), { recursive: true });
    writeFileSync(join(d, p), `${content}\n`);
  }
  return d;
}

test('cgroup v2 cpu.max', () => {
  assert.equal(cgroupCpuQuota(root({ 'cpu.max': '250000 100000' })), 2.5);
  assert.equal(cgroupCpuQuota(root({ 'cpu.max': 'max 100000' })), null);
  assert.equal(usableCpus(root({ 'cpu.max': '250000 100000' }), 16), 2, 'a 2.5-CPU limit on 16 cores: 2 workers');
  assert.equal(usableCpus(root({ 'cpu.max': '50000 100000' }), 16), 1, 'half a CPU: still 1');
  assert.equal(usableCpus(root({ 'cpu.max': '800000 100000' }), 2), 2, 'a quota above the CPUs seen: the CPUs');
  assert.equal(usableCpus(root({ 'cpu.max': 'max 100000' }), 6), 6);
});

test('cgroup v1 cfs quota', () => {
  assert.equal(usableCpus(root({ 'cpu/cpu.cfs_quota_us': '300000', 'cpu/cpu.cfs_period_us': '100000' }), 8), 3);
  assert.equal(usableCpus(root({ 'cpu,cpuacct/cpu.cfs_quota_us': '150000', 'cpu,cpuacct/cpu.cfs_period_us': '100000' }), 8), 1);
  assert.equal(usableCpus(root({ 'cpu/cpu.cfs_quota_us': '-1', 'cpu/cpu.cfs_period_us': '100000' }), 8), 8);
});

test('no cgroup files, or unreadable values: the CPUs seen', () => {
  assert.equal(usableCpus(root({}), 4), 4);
  assert.equal(usableCpus(root({ 'cpu.max': 'garbage' }), 4), 4);
  assert.equal(usableCpus(root({ 'cpu.max': '0 100000' }), 4), 4);
});

test('workers: 0 (the default) is the usable CPUs, at least 1 and at most MAX_WORKERS; a number is taken as is', async () => {
  const { workersFor, MAX_WORKERS } = await import('../../src/cluster/cpus.js');
  const { workerCount } = await import('../../src/cluster/primary.js');
  assert.equal(MAX_WORKERS, 4);
  assert.equal(workersFor(0, 1), 1);
  assert.equal(workersFor(0, 3), 3);
  assert.equal(workersFor(0, 16), 4, 'capped: more replicas, not more processes per pod');
  assert.equal(workersFor(1, 16), 1);
  assert.equal(workersFor(3, 2), 3, 'an explicit count is taken as is (the schema caps it at MAX_WORKERS)');
  // From a config, with this machine's CPUs.
  const cfg = (workers: number) => ({ server: { workers } }) as unknown as Parameters<typeof workerCount>[0];
  assert.equal(workerCount(cfg(0)), Math.min(usableCpus(), MAX_WORKERS));
  assert.equal(workerCount(cfg(3)), 3);
});
