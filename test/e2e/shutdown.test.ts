/**
 * Graceful shutdown of the real CLI process (`node --import tsx src/cli.ts --config F`):
 * SIGTERM turns /readyz 503 at once and stops accepting; a slow upstream request that
 * fits in `server.shutdownGraceSec` completes, one that does not and an open WebSocket
 * are closed at the deadline; the process exits 0.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { freePort } from '../helpers/ports.js';

const ROOT = new URL('../../', import.meta.url).pathname;
let up: EchoUpstream; let wss: WebSocketServer; let dir = ''; let child: ChildProcess | null = null;

before(async () => {
  up = await startUpstream();
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (ws) => ws.on('message', (d) => ws.send(d.toString())));
  dir = mkdtempSync(join(tmpdir(), 'tokengate-shutdown-'));
});
after(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  for (const c of wss?.clients ?? []) c.terminate();
  await new Promise((r) => wss?.close(r));
  await up?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

test('SIGTERM: readyz 503 at once, stop accepting, in-flight finish or are cut at the grace deadline, exit 0', async () => {
  const [port, adminPort] = [await freePort(), await freePort()];
  const wsUpstream = `http://127.0.0.1:${(wss.address() as net.AddressInfo).port}`;
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, `
server: { host: 127.0.0.1, port: ${port}, shutdownGraceSec: 2, logLevel: warn }
admin: { host: 127.0.0.1, port: ${adminPort} }
routes:
  - id: slow
    match: { pathPrefix: /slow }
    upstream: ${up.url}
    auth: { mode: none }
  - id: ws
    match: { pathPrefix: /ws }
    upstream: ${wsUpstream}
    websocket: true
    auth: { mode: none }
`);
  child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  const exited = new Promise<{ code: number | null; signal: string | null; at: number }>((r) => child!.once('exit', (code, signal) => r({ code, signal, at: Date.now() })));
  const base = `http://127.0.0.1:${port}`;
  const admin = `http://127.0.0.1:${adminPort}`;
  const until = Date.now() + 20_000;
  for (;;) {
    const r = await get(admin + '/readyz').catch(() => null);
    if (r?.status === 200) break;
    if (child.exitCode !== null || Date.now() > until) throw new Error(`CLI did not start: ${output}`);
    await new Promise((res) => setTimeout(res, 100));
  }

  // In flight at SIGTERM: one request that fits in the grace (1 s), one that does not (60 s), a WebSocket.
  up.delayMs = 1000;
  const fits = get(base + '/slow/fits');
  // The upstream picks its delay when a request arrives: switch only once this one is in.
  const arrived = Date.now() + 5000;
  while (up.requests.length < 1 && Date.now() < arrived) await new Promise((r) => setTimeout(r, 5));
  up.delayMs = 60_000;
  const tooSlow = get(base + '/slow/too-slow').then((r) => `status ${r.status}`, (e: Error) => `closed: ${e.message}`);
  const ws = new WebSocket(base.replace('http', 'ws') + '/ws/chat');
  await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
  ws.send('ping');
  assert.equal((await new Promise((r) => ws.once('message', r)))!.toString(), 'ping');
  const wsClosed = new Promise<number>((r) => ws.once('close', () => r(Date.now())));
  const waitUntil = Date.now() + 5000;
  while (up.requests.length < 2 && Date.now() < waitUntil) await new Promise((r) => setTimeout(r, 10));
  assert.equal(up.requests.length, 2, 'both slow requests reached the upstream');

  const t0 = Date.now();
  child.kill('SIGTERM');
  // /readyz answers 503 at once (poll only briefly: "at once").
  let ready = 0;
  for (let i = 0; i < 20 && ready !== 503; i++) {
    ready = (await get(admin + '/readyz')).status;
    if (ready !== 503) await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(ready, 503);
  assert.ok(Date.now() - t0 < 500, `readyz 503 within ${Date.now() - t0} ms`);
  // The proxy no longer accepts connections.
  await assert.rejects(get(base + '/slow/new'), /ECONNREFUSED|ECONNRESET|socket hang up/);

  const done = await fits;
  assert.equal(done.status, 200, 'the in-flight request that fits in the grace period completes');
  assert.ok(Date.now() - t0 < 1900, `before the deadline (${Date.now() - t0} ms after SIGTERM)`);
  ws.send('still open during the drain');
  assert.equal((await new Promise((r) => ws.once('message', r)))!.toString(), 'still open during the drain');

  const end = await exited;
  assert.equal(end.code, 0, `exit code 0 (signal ${end.signal}); output: ${output}`);
  const took = end.at - t0;
  assert.ok(took >= 1900 && took < 5000, `exited after the 2 s grace (${took} ms)`);
  const wsAt = await wsClosed;
  assert.ok(wsAt - t0 >= 1900 && wsAt - t0 < 4000, `WebSocket closed at the deadline (${wsAt - t0} ms)`);
  assert.match(await tooSlow, /closed|status 5/, 'the request beyond the grace period is cut');
  up.delayMs = 0;
});
