/**
 * The process model with the real CLI, at `server.workers: 1` and `2`: one contract at
 * either count. With two, the primary serves the admin port (readiness of every worker,
 * metrics summed over the workers) and the workers share the proxy port; each worker keeps
 * its own keys, so the pod makes at most one JWKS fetch per worker per refresh and no
 * extra one for unknown kids inside the cooldown. SIGHUP reloads every worker (counted
 * once), SIGTERM drains them all and exits 0.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { freePort } from '../helpers/ports.js';

const ROOT = new URL('../../', import.meta.url).pathname;
let up: EchoUpstream; let iss: MockIssuer; let dir = ''; let child: ChildProcess | null = null;

before(async () => {
  up = await startUpstream();
  iss = await startMockIssuer();
  dir = mkdtempSync(join(tmpdir(), 'tokengate-workers-'));
});
after(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await up?.close();
  await iss?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** One request on a fresh connection (the cluster hands each connection to one worker). */
function get(url: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** `tokengate --config file` (src/cli.ts) as a child process; `output()` is its stdout and stderr so far. */
function spawnCli(file: string): { proc: ChildProcess; output(): string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, output: () => out, exited };
}

/** Polls `ok` every 100 ms; fails the test with `what` and the process output after `ms`. */
async function waitFor(what: string, ok: () => Promise<boolean>, ms: number, output: () => string): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await ok().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what} within ${ms} ms: ${output()}`);
}

const config = (port: number, adminPort: number, extraRoute = '', workers = 2) => `
server: { host: 127.0.0.1, port: ${port}, workers: ${workers}, shutdownGraceSec: 2, logLevel: warn }
admin: { host: 127.0.0.1, port: ${adminPort} }
issuers:
  - { id: a, issuer: ${iss.issuer}, jwksUri: ${iss.jwksUri}, audiences: [api] }
routes:
  - { id: pub, match: { pathPrefix: /pub }, upstream: "${up.url}", auth: { mode: none } }
  - { id: api, match: { pathPrefix: /api }, upstream: "${up.url}", auth: { mode: jwt } }
${extraRoute}`;

for (const workers of [1, 2]) test(`workers: ${workers}: one proxy port, admin for the pod, reload on SIGHUP, drain on SIGTERM`, { timeout: 60_000 }, async () => {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = join(dir, `gateway-${workers}.yaml`);
  writeFileSync(file, config(port, adminPort, '', workers));
  const fetches0 = iss.jwksFetches;
  child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', file], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
  const admin = `http://127.0.0.1:${adminPort}`;
  const proxy = `http://127.0.0.1:${port}`;

  const until = Date.now() + 40_000;
  let ready = { status: 0, body: '' };
  while (Date.now() < until) {
    ready = await get(`${admin}/readyz`).catch(() => ({ status: 0, body: '' }));
    if (ready.status === 200) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(ready.status, 200, `primary readyz: ${ready.body} ${stderr}`);
  assert.deepEqual(JSON.parse(ready.body), workers > 1 ? { ready: true, workers } : { ready: true });

  const token = await iss.sign({ claims: { exp: Math.floor(Date.now() / 1000) + 600 } });
  const n = 12;
  for (let i = 0; i < n; i++) {
    assert.equal((await get(`${proxy}/api/x`, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal((await get(`${proxy}/api/x`)).status, 401);
  }
  // Metrics are the workers' registries summed by the primary.
  const metrics = (await get(`${admin}/metrics`)).body;
  const count = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? NaN);
  assert.equal(count(/^tokengate_requests_total\{route="api",outcome="allowed",reason="ok",status_class="2xx"\} (\d+)$/m), n);
  assert.equal(count(/^tokengate_requests_total\{route="api",outcome="denied",reason="missing_token",status_class="4xx"\} (\d+)$/m), n);
  // Which config runs: one series, both workers on it.
  const configInfo = (text: string) => [...text.matchAll(/^tokengate_config_info\{hash="([0-9a-f]{16})"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]);
  const before = configInfo(metrics);
  assert.equal(before.length, 1, metrics.split('\n').filter((l) => l.includes('config_info')).join('\n'));
  assert.equal(before[0][1], workers, 'every worker runs the config');
  // Each worker fetches the keys once: the documented multiplier, counted as the IdP saw it.
  const fetched = iss.jwksFetches - fetches0;
  assert.equal(fetched, workers, 'one JWKS fetch per worker');
  assert.equal(count(/^tokengate_jwks_fetches_total\{issuer="a",result="success"\} (\d+)$/m), fetched);
  // A flood of unknown kids on fresh connections (both workers): no fetch inside the cooldown.
  const flood = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
    const forged = await iss.sign({ header: { kid: `unknown-${i}` } });
    return (await get(`${proxy}/api/x`, { authorization: `Bearer ${forged}` })).status;
  }));
  assert.deepEqual(flood, Array(10).fill(401));
  assert.equal(iss.jwksFetches - fetches0, fetched, 'unknown kids on every worker: no fetch inside the cooldown');

  // SIGHUP to the primary reloads every worker: the new route answers on every connection.
  assert.equal((await get(`${proxy}/new/x`)).status, 404);
  writeFileSync(file, config(port, adminPort, `  - { id: new, match: { pathPrefix: /new }, upstream: "${up.url}", auth: { mode: none } }`, workers));
  child.kill('SIGHUP');
  const reloadedBy = Date.now() + 10_000;
  let statuses: number[] = [];
  while (Date.now() < reloadedBy) {
    statuses = await Promise.all(Array.from({ length: 8 }, () => get(`${proxy}/new/x`).then((r) => r.status)));
    if (statuses.every((s) => s === 200)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.deepEqual(statuses, Array(8).fill(200), 'every worker took the new config');
  // ... and the metric says so: one series, another hash, both workers on it.
  let after: Array<[string, number]> = [];
  while (Date.now() < reloadedBy + 5000) {
    after = configInfo((await get(`${admin}/metrics`)).body) as Array<[string, number]>;
    if (after.length === 1 && after[0][1] === workers) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(after.length, 1, JSON.stringify(after));
  assert.notEqual(after[0][0], before[0][0], 'the hash changed with the config');
  assert.equal(after[0][1], workers);
  // One reload of the pod, whatever the worker count (each worker applied it).
  const reloaded = (await get(`${admin}/metrics`)).body;
  assert.match(reloaded, /^tokengate_config_reloads_total\{result="success"\} 1$/m);

  // SIGTERM: readiness turns 503, the workers drain, the primary exits 0.
  child.kill('SIGTERM');
  const code = await exited;
  assert.equal(code, 0, stderr);
  await assert.rejects(get(`${proxy}/pub/x`), 'no worker listens any more');
});

test('a worker that cannot start stops the pod with exit 1 (no restart loop), like one process would', { timeout: 30_000 }, async () => {
  // The proxy port is taken by another server: every worker's listen fails.
  const blocker = http.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => blocker.once('listening', r));
  const port = (blocker.address() as { port: number }).port;
  const adminPort = await freePort();
  const file = join(dir, 'taken.yaml');
  writeFileSync(file, config(port, adminPort));
  const started = Date.now();
  const c = spawnCli(file);
  const code = await c.exited;
  blocker.close();
  assert.equal(code, 1, c.output());
  assert.match(c.output(), /EADDRINUSE/);
  assert.ok(Date.now() - started < 25_000);
  // The admin port never opened (it opens only once every worker listens).
  await assert.rejects(get(`http://127.0.0.1:${adminPort}/healthz`));
});

test('workers start on the config the primary read: they never read the file at start', { timeout: 60_000 }, async () => {
  // The file turns invalid right after the primary has read it. Workers that read it
  // themselves would fail to start (the pod exits 1); they take the primary's config,
  // and each notices the change through its reloader, which keeps what runs.
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = join(dir, 'handover.yaml');
  writeFileSync(file, config(port, adminPort).replace('logLevel: warn', 'logLevel: info'));
  const c = spawnCli(file);
  let changed = false;
  c.proc.stdout!.on('data', () => {
    if (!changed && c.output().includes('config loaded; starting workers')) {
      changed = true;
      writeFileSync(file, 'routes: [ { id: broken\n');
    }
  });
  const reloadFailures = () => (c.output().match(/config reload failed/g) ?? []).length;
  try {
    const admin = `http://127.0.0.1:${adminPort}`;
    await waitFor('ready', async () => (await get(`${admin}/readyz`)).status === 200, 40_000, c.output);
    assert.ok(changed, `the primary never said it was starting workers: ${c.output()}`);
    assert.deepEqual(JSON.parse((await get(`${admin}/readyz`)).body), { ready: true, workers: 2 });
    // Both workers serve the primary's routes (fresh connections spread over them).
    for (let i = 0; i < 6; i++) assert.equal((await get(`http://127.0.0.1:${port}/pub/x`)).status, 200);
    // Each worker saw that the file differs from what it runs, and kept what runs.
    await waitFor('both workers refusing the changed file', async () => reloadFailures() >= 2, 10_000, c.output);
    assert.equal(reloadFailures(), 2, c.output());
    assert.doesNotMatch(c.output(), /cannot be read|exited before it started/);
  } finally {
    c.proc.kill('SIGTERM');
  }
  assert.equal(await c.exited, 0, c.output());
});

test('a worker that replaces a dead one serves the config the pod runs now, never the start one', { timeout: 90_000 }, async () => {
  // Start on A (/old open), reload to B (/old gone), then the file turns invalid and a worker
  // dies: its replacement must not bring A's looser policy back. It reads the file itself
  // (invalid: it does not start, and the primary retries), so /old stays closed.
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = join(dir, 'replace.yaml');
  const oldRoute = `  - { id: old, match: { pathPrefix: /old }, upstream: "${up.url}", auth: { mode: none } }`;
  const writeAtomically = (text: string) => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  writeAtomically(config(port, adminPort, oldRoute));
  const c = spawnCli(file);
  const proxy = `http://127.0.0.1:${port}`;
  const admin = `http://127.0.0.1:${adminPort}`;
  /** Statuses of `n` requests to `path`, each on a fresh connection (spread over the workers). */
  const statuses = async (path: string, n: number) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await get(`${proxy}${path}`)).status);
    return out;
  };
  try {
    await waitFor('ready', async () => (await get(`${admin}/readyz`)).status === 200, 40_000, c.output);
    assert.deepEqual(await statuses('/old/x', 4), [200, 200, 200, 200]);
    writeAtomically(config(port, adminPort)); // B: /old gone
    await waitFor('both workers on B', async () => (await statuses('/old/x', 8)).every((s) => s === 404), 15_000, c.output);
    writeAtomically('routes: [ { id: broken\n'); // C: invalid
    await waitFor('both workers refused C', async () => (c.output().match(/config reload failed/g) ?? []).length >= 2, 15_000, c.output);

    const workers = execFileSync('pgrep', ['-P', String(c.proc.pid)], { encoding: 'utf8' }).trim().split('\n').map(Number);
    assert.equal(workers.length, 2, `worker pids: ${workers}`);
    process.kill(workers[0], 'SIGKILL');
    await waitFor('the primary replacing the worker', async () => /worker exited; starting a new one/.test(c.output()), 10_000, c.output);
    // For 8 s (a replacement that started would be serving well before) every request is
    // answered on B's policy, and the pod is not ready while a worker cannot start.
    const seen = new Set<number>();
    let readyMeanwhile = false;
    const until = Date.now() + 8000;
    while (Date.now() < until) {
      for (const s of await statuses('/old/x', 5)) seen.add(s);
      if ((await get(`${admin}/readyz`)).status === 200) readyMeanwhile = true;
    }
    assert.deepEqual([...seen], [404], `/old answered ${JSON.stringify([...seen])}`);
    assert.equal(readyMeanwhile, false, 'the pod said ready while a worker could not start');
    assert.equal((await get(`${proxy}/pub/x`)).status, 200, 'the surviving worker serves');

    // A valid file again: the replacement starts on it and the pod is whole.
    writeAtomically(config(port, adminPort));
    await waitFor('two workers ready', async () => {
      const r = await get(`${admin}/readyz`);
      return r.status === 200 && JSON.parse(r.body).workers === 2;
    }, 20_000, c.output);
    assert.ok((await statuses('/old/x', 8)).every((s) => s === 404));
  } finally {
    c.proc.kill('SIGTERM');
  }
  assert.equal(await c.exited, 0, c.output());
});
