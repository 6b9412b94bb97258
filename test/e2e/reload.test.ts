/**
 * Hot reload (issue 4 point 1): the config file's directory is watched (plain writes,
 * atomic renames, a Kubernetes ConfigMap `..data` symlink swap) and SIGHUP reloads; under
 * continuous keep-alive load, 20 reloads alternating valid/invalid drop no request, the
 * new routes take effect, failures are counted and the old config keeps serving, the
 * unchanged issuer's JWKS is not re-fetched, and an in-flight request finishes on the
 * config it started with.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { installReload, restartOnlyChanges } from '../../src/reload.js';
import { parseConfig } from '../../src/config/load.js';
import { compileConfig } from '../../src/config/compile.js';
import { issuerYaml } from '../helpers/fixture.js';

let iss: MockIssuer; let up: EchoUpstream;
before(async () => {
  iss = await startMockIssuer({ algs: ['ES256'] });
  up = await startUpstream();
});
after(async () => { await up?.close(); await iss?.close(); });

/** A valid config with the base routes plus `/v{n}` for each n in `extra`. */
function yaml(extra: number[], opts: { gone?: boolean } = {}): string {
  return `
server: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
${issuerYaml(iss)}routes:
${opts.gone ? '' : `  - id: slow
    match: { pathPrefix: /slow }
    upstream: ${up.url}
    auth: { mode: none }
`}  - id: base
    match: { pathPrefix: /base }
    upstream: ${up.url}
    auth: { mode: none }
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
${extra.map((n) => `  - id: v${n}
    match: { pathPrefix: /v${n} }
    upstream: ${up.url}
    auth: { mode: none }
`).join('')}`;
}

/** One request on `agent`; resolves with the status (rejects on a socket error). */
function get(agent: http.Agent, base: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(base + path, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function reloads(gw: TestGateway): Promise<{ success: number; failure: number }> {
  const m = await gw.gw.metrics.configReloads.get();
  const of = (r: string) => m.values.find((v) => v.labels.result === r)?.value ?? 0;
  return { success: of('success'), failure: of('failure') };
}

async function waitFor(cond: () => Promise<boolean> | boolean, what: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('20 reloads (valid/invalid alternately) under keep-alive load: zero failed requests, new routes live', async () => {
  const logs: string[] = [];
  const gw = await startGateway(yaml([]), { logs });
  await gw.ready();
  const stop = installReload(gw.gw, gw.file, { debounceMs: 30 });
  const token = await iss.sign({});
  const fetchesBefore = iss.jwksFetches;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const failures: string[] = [];
  let done = 0;
  let running = true;
  const sockets = new Set<unknown>();
  agent.on('free', (s) => sockets.add(s));
  const worker = async (path: string, headers: Record<string, string> = {}) => {
    while (running) {
      try {
        const status = await get(agent, gw.url, path, headers);
        if (status !== 200) failures.push(`${path} -> ${status}`);
      } catch (e) {
        failures.push(`${path} -> ${(e as Error).message}`);
      }
      done++;
    }
  };
  const workers = [worker('/base/x'), worker('/orders/1', { authorization: `Bearer ${token}` }), worker('/base/y'), worker('/orders/2', { authorization: `Bearer ${token}` })];
  try {
    const added: number[] = [];
    for (let i = 0; i < 20; i++) {
      const before = await reloads(gw);
      const startDone = done;
      if (i % 2 === 0) {
        added.push(i);
        // Editors and config tools replace the file by rename: watched via the directory.
        writeFileSync(gw.file + '.tmp', yaml(added));
        renameSync(gw.file + '.tmp', gw.file);
        await waitFor(async () => (await reloads(gw)).success === before.success + 1, `valid reload ${i}`);
        assert.equal(await get(agent, gw.url, `/v${i}/ping`), 200, `route v${i} live after reload ${i}`);
      } else {
        // Invalid: an unknown key (and a different one each time, so the hash changes).
        writeFileSync(gw.file, yaml(added) + `bogus${i}: true\n`);
        await waitFor(async () => (await reloads(gw)).failure === before.failure + 1, `failed reload ${i}`);
        assert.equal(await get(agent, gw.url, `/v${i - 1}/ping`), 200, 'old config keeps serving');
      }
      await waitFor(() => done >= startDone + 8, 'load continues');
    }
    const final = await reloads(gw);
    assert.deepEqual(final, { success: 10, failure: 10 });
    assert.equal(await get(agent, gw.url, '/v1/ping'), 404, 'invalid configs never applied');
    // Each failure is logged with its problems (file:line key.path why).
    const failed = logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'config reload failed; the previous config keeps serving');
    assert.equal(failed.length, 10);
    assert.ok(failed[0].problems.some((p: string) => p.startsWith(`${gw.file}:`) && p.includes('bogus1')), JSON.stringify(failed[0].problems));
    assert.equal(failed[0].level, 'error');
  } finally {
    running = false;
    await Promise.all(workers);
    agent.destroy();
    stop();
    await gw.close();
  }
  assert.deepEqual(failures, [], 'no request failed during reloads');
  assert.ok(done > 200, `load ran (${done} requests)`);
  assert.ok(sockets.size <= 4, `keep-alive connections reused (${sockets.size} sockets)`);
  assert.equal(iss.jwksFetches, fetchesBefore, 'unchanged issuer keeps its JWKS cache: no re-fetch');
});

test('an in-flight request finishes on the config it started with', async () => {
  const gw = await startGateway(yaml([]));
  await gw.ready();
  const stop = installReload(gw.gw, gw.file, { watch: false });
  try {
    up.delayMs = 300;
    const agent = new http.Agent({ keepAlive: true });
    const slow = get(agent, gw.url, '/slow/1');
    await waitFor(() => up.requests.some((r) => r.url === '/slow/1'), 'slow request upstream');
    writeFileSync(gw.file, yaml([], { gone: true }));
    process.kill(process.pid, 'SIGHUP');
    await waitFor(async () => (await reloads(gw)).success === 1, 'SIGHUP reload');
    up.delayMs = 0;
    assert.equal(await get(agent, gw.url, '/slow/2'), 404, 'new config: route gone');
    assert.equal(await slow, 200, 'request that started before the reload completes');
    agent.destroy();
  } finally {
    up.delayMs = 0;
    stop();
    await gw.close();
  }
});

test('Kubernetes ConfigMap update (..data symlink swap) reloads; a bad update keeps the old config', async () => {
  // The layout kubelet writes: gateway.yaml -> ..data/gateway.yaml, ..data -> ..2026_01_01_00_00_00.1
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-cm-'));
  const version = (name: string, text: string) => {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, 'gateway.yaml'), text);
  };
  const swap = (name: string) => {
    symlinkSync(name, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data')); // atomic, like kubelet
  };
  version('..2026_01_01_00_00_00.1', yaml([]));
  symlinkSync('..2026_01_01_00_00_00.1', join(dir, '..data'));
  symlinkSync('..data/gateway.yaml', join(dir, 'gateway.yaml'));
  const gw = await startGateway(yaml([]));
  await gw.ready();
  const file = join(dir, 'gateway.yaml');
  const stop = installReload(gw.gw, file, { debounceMs: 30 });
  try {
    assert.equal(await get(http.globalAgent, gw.url, '/v7/a'), 404);
    version('..2026_01_01_00_01_00.2', yaml([7]));
    swap('..2026_01_01_00_01_00.2');
    rmSync(join(dir, '..2026_01_01_00_00_00.1'), { recursive: true });
    await waitFor(async () => (await reloads(gw)).success === 1, 'ConfigMap reload');
    assert.equal(await get(http.globalAgent, gw.url, '/v7/a'), 200);

    version('..2026_01_01_00_02_00.3', 'routes: [ {');
    swap('..2026_01_01_00_02_00.3');
    await waitFor(async () => (await reloads(gw)).failure === 1, 'bad ConfigMap counted');
    assert.equal(await get(http.globalAgent, gw.url, '/v7/a'), 200, 'old config keeps serving');
    const metrics = await (await fetch(gw.adminUrl + '/metrics')).text();
    assert.match(metrics, /tokengate_config_reloads_total\{result="failure"\} 1/);
    assert.match(metrics, /tokengate_config_reloads_total\{result="success"\} 1/);
  } finally {
    stop();
    await gw.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('listener settings need a restart: a reload that changes them keeps the old listeners and applies the rest', async () => {
  const logs: string[] = [];
  const gw = await startGateway(yaml([]), { logs });
  await gw.ready();
  const stop = installReload(gw.gw, gw.file, { watch: false });
  const port = (gw.gw.proxy!.server.address() as { port: number }).port;
  try {
    const moved = yaml([3]).replace('server: { host: 127.0.0.1, port: 0 }', 'server: { host: 127.0.0.1, port: 1, bodyLimitBytes: 10 }')
      .replace('admin: { host: 127.0.0.1, port: 0 }', 'admin: { host: 127.0.0.1, port: 2 }\ndecision: { port: 3 }');
    const compile = (t: string) => compileConfig(parseConfig(t, 'x.yaml'));
    assert.deepEqual(restartOnlyChanges(compile(yaml([])), compile(moved)),
      ['server.port', 'server.bodyLimitBytes', 'admin', 'decision (listener host/port/presence)']);
    assert.deepEqual(restartOnlyChanges(compile(yaml([])), compile(yaml([1, 2]))), []);
    writeFileSync(gw.file, moved);
    process.kill(process.pid, 'SIGHUP');
    await waitFor(async () => (await reloads(gw)).success === 1, 'reload');
    assert.equal((gw.gw.proxy!.server.address() as { port: number }).port, port, 'still on the old port');
    assert.equal(gw.gw.decision, null, 'no decision listener started by a reload');
    assert.equal(await get(http.globalAgent, gw.url, '/v3/x'), 200, 'the rest of the new config applies');
    const warn = logs.map((l) => JSON.parse(l)).find((l) => l.level === 'warn' && Array.isArray(l.keys));
    assert.deepEqual(warn?.keys, ['server.port', 'server.bodyLimitBytes', 'admin', 'decision (listener host/port/presence)']);
  } finally {
    stop();
    await gw.close();
  }
});
