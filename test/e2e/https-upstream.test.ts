/**
 * TLS upstreams (`upstream: https://...`), for plain requests and WebSocket upgrades alike:
 * the upstream's certificate is verified against the trust store (here a test CA added with
 * NODE_EXTRA_CA_CERTS, as the README says), and an upstream whose certificate is not
 * trusted is a 502 — never a plaintext fallback, never an unverified connection.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';
import { generateServerCert } from '../helpers/cert.js';
import { startCliReplica, type Replica } from '../helpers/cli.js';

let trusted: Server; let untrusted: Server; let gw: Replica & { stop(): Promise<void> };
let dir = '';
const seen: Array<{ url: string; subject: string | undefined }> = [];

function tlsUpstream(pair: { cert: string; key: string }): Promise<Server> {
  const server = createServer(pair, (req, res) => {
    seen.push({ url: req.url!, subject: req.headers['x-auth-subject'] as string | undefined });
    res.setHeader('content-type', 'text/plain');
    res.end(`tls:${req.url}`);
  });
  new WebSocketServer({ server }).on('connection', (ws) => ws.on('message', (d) => ws.send(`echo:${d.toString()}`)));
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
}

const origin = (s: Server) => `https://127.0.0.1:${(s.address() as AddressInfo).port}`;

before(async () => {
  const ca = generateServerCert();
  trusted = await tlsUpstream(ca);
  untrusted = await tlsUpstream(generateServerCert()); // same name, a certificate nobody trusts
  dir = mkdtempSync(join(tmpdir(), 'tokengate-tls-'));
  writeFileSync(join(dir, 'ca.pem'), ca.cert);
  gw = await startCliReplica(`server:
  workers: 1
routes:
  - { id: tls, match: { pathPrefix: /tls }, upstream: "${origin(trusted)}", websocket: true, auth: { mode: none } }
  - { id: bad, match: { pathPrefix: /bad }, upstream: "${origin(untrusted)}", websocket: true, auth: { mode: none } }
`, { NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') });
});
after(async () => {
  await gw?.stop();
  trusted?.closeAllConnections();
  untrusted?.closeAllConnections();
  await Promise.all([trusted, untrusted].map((s) => s && new Promise((r) => s.close(r))));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function openWs(path: string): Promise<{ ws?: WebSocket; status?: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(gw.url.replace('http://', 'ws://') + path, { handshakeTimeout: 5000 });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve({ status: res.statusCode });
    });
    ws.once('error', reject);
  });
}

test('a request to an https upstream with a trusted certificate is proxied over TLS', async () => {
  seen.length = 0;
  const r = await fetch(`${gw.url}/tls/a?q=1`);
  assert.equal(r.status, 200);
  assert.equal(await r.text(), 'tls:/tls/a?q=1');
  assert.deepEqual(seen.map((s) => s.url), ['/tls/a?q=1']);
});

test('a WebSocket upgrade to an https upstream is tunnelled over TLS', async () => {
  seen.length = 0;
  const { ws, status } = await openWs('/tls/ws');
  assert.ok(ws, `upgraded (got ${status})`);
  try {
    const reply = new Promise<string>((r) => ws.once('message', (d) => r(d.toString())));
    ws.send('hi');
    assert.equal(await reply, 'echo:hi');
  } finally {
    ws.close();
  }
});

test('an https upstream whose certificate is not trusted is a 502, for requests and upgrades', async () => {
  seen.length = 0;
  const r = await fetch(`${gw.url}/bad/a`);
  assert.equal(r.status, 502);
  await r.text();
  const { ws, status } = await openWs('/bad/ws');
  ws?.close();
  assert.equal(status, 502);
  assert.deepEqual(seen, [], 'nothing reached the upstream');
});
