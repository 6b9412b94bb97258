/**
 * Resource-exhaustion attacks on the proxy listener (issue 6 §2): oversized header
 * sections, very many headers (with forged identity headers hidden past Node's
 * 2000-header cut-off), slow headers (slowloris), slow bodies, and a large upload that
 * must stream through rather than be buffered (resident memory of the in-process
 * gateway stays flat). Each attack ends in a clean 4xx or a close, the upstream sees
 * nothing it should not, and the gateway keeps serving.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawExchange } from '../helpers/raw-http.js';
import { issuerYaml } from '../helpers/fixture.js';

/** Upload size for the streaming test (UPLOAD_MB overrides; about 2 s on loopback). */
const UPLOAD_MB = Number(process.env.UPLOAD_MB ?? 1024);

let iss: MockIssuer;
let up: EchoUpstream;
let sink: http.Server;
let sinkBytes = 0;
let gw: TestGateway;
/** Same routes, default timeouts: a long upload must not be cut by the short requestTimeoutMs of `gw`. */
let gwDefaults: TestGateway;
let port: number;
let token: string;

before(async () => {
  iss = await startMockIssuer();
  up = await startUpstream();
  // An upstream that counts and discards bodies.
  sink = http.createServer((req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => { n += c.length; });
    req.on('end', () => {
      sinkBytes = n;
      res.end(String(n));
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
  const rest = `
${issuerYaml(iss)}routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: jwt }
    forward: { headers: { x-auth-subject: sub } }
  - id: upload
    match: { pathPrefix: /upload }
    upstream: ${sinkUrl}
    auth: { mode: none }
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
`;
  gw = await startGateway(`
server:
  headersTimeoutMs: 400
  requestTimeoutMs: 1500
decision:
  trustedProxies: [127.0.0.1/32]` + rest);
  gwDefaults = await startGateway(rest);
  await gw.ready();
  await gwDefaults.ready();
  port = Number(new URL(gw.url).port);
  token = await iss.sign();
});
after(async () => {
  await gw?.close();
  await gwDefaults?.close();
  await up?.close();
  await new Promise<void>((r) => { sink?.close(() => r()); sink?.closeAllConnections(); });
  await iss?.close();
});
beforeEach(() => up.reset());

async function stillServing(): Promise<void> {
  const r = await fetch(gw.url + '/pub/alive');
  assert.equal(r.status, 200);
  await r.arrayBuffer();
}

test('an oversized header section gets 431 and a close, nothing forwarded', async () => {
  const ex = await rawExchange(port, [`GET /pub/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`]);
  assert.equal(ex.responses[0]?.status, 431, ex.raw.slice(0, 120));
  assert.equal(typeof JSON.parse(ex.responses[0].body).error, 'string', 'a JSON error body');
  assert.ok(ex.closed);
  assert.equal(up.requests.length, 0);
  await stillServing();
});

const filler = Array.from({ length: 2100 }, (_, i) => `F${i}: 1`);

test('many headers: identity headers forged past Node\'s 1000-header cut-off are removed, the gateway\'s own survive', async () => {
  const ex = await rawExchange(port, [
    ['GET /orders/1 HTTP/1.1', 'Host: 127.0.0.1', `Authorization: Bearer ${token}`, ...filler,
      'X-Auth-Subject: admin', 'X_Auth_Subject: admin', 'Connection: close', '', ''].join('\r\n'),
  ]);
  assert.equal(ex.responses[0]?.status, 200, ex.raw.slice(0, 200));
  assert.equal(up.requests.length, 1);
  const q = up.requests[0];
  // The upstream (Node) keeps only its first ~1000 headers: the gateway puts its own first.
  assert.equal(q.headers['x-auth-subject'], 'user-1');
  assert.equal(q.rawHeaders.filter((h) => /^x[-_]auth[-_]subject$/i.test(h)).length, 1);
  assert.ok(!q.rawHeaders.includes('admin'), 'a forged value reached the upstream');
  await stillServing();
});

test('many headers: a second Authorization past the 2000th header is still seen (400 invalid_request)', async () => {
  const ex = await rawExchange(port, [
    ['GET /orders/1 HTTP/1.1', 'Host: 127.0.0.1', `Authorization: Bearer ${token}`, ...filler,
      'Authorization: Bearer forged', 'Connection: close', '', ''].join('\r\n'),
  ]);
  assert.equal(ex.responses[0]?.status, 400, ex.raw.slice(0, 200));
  assert.match(ex.responses[0].headers['www-authenticate'], /^Bearer realm="tokengate", error="invalid_request"/);
  assert.equal(JSON.parse(ex.responses[0].body).error, 'invalid_request');
  assert.equal(up.requests.length, 0);
});

test('decision listener: a second Authorization past the 2000th header is still seen (400)', async () => {
  const ex = await rawExchange(Number(new URL(gw.decisionUrl as string).port), [
    ['GET /auth HTTP/1.1', 'Host: 127.0.0.1', 'X-Forwarded-Method: GET', 'X-Forwarded-Uri: /orders/1', `Authorization: Bearer ${token}`,
      ...filler, 'Authorization: Bearer forged', 'Connection: close', '', ''].join('\r\n'),
  ]);
  assert.equal(ex.responses[0]?.status, 400, ex.raw.slice(0, 200));
  assert.equal(JSON.parse(ex.responses[0].body).error, 'invalid_request');
});

test('slow headers (slowloris): the connection is closed after headersTimeoutMs', async () => {
  const start = Date.now();
  const drip: Array<string | number> = ['GET /pub/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n'];
  for (let i = 0; i < 30; i++) drip.push(100, `X-${i}: y\r\n`);
  const ex = await rawExchange(port, drip, 4000);
  const took = Date.now() - start;
  assert.ok(ex.closed, 'still open');
  assert.ok(took < 3000, `closed after ${took} ms (headersTimeoutMs 400)`);
  assert.equal(ex.responses[0]?.status, 408, ex.raw.slice(0, 200));
  assert.equal(typeof JSON.parse(ex.responses[0].body).error, 'string', 'a JSON error body');
  assert.equal(up.requests.length, 0);
  await stillServing();
});

test('slow body: the request is cut at requestTimeoutMs, the upstream never sees a complete body', async () => {
  const start = Date.now();
  const drip: Array<string | number> = ['POST /pub/slow-body HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n'];
  for (let i = 0; i < 40; i++) drip.push(100, 'x');
  const ex = await rawExchange(port, drip, 5000);
  const took = Date.now() - start;
  assert.ok(ex.closed, 'still open');
  assert.ok(took < 4500, `closed after ${took} ms (requestTimeoutMs 1500)`);
  assert.ok(!up.requests.some((q) => q.url === '/pub/slow-body'), 'an incomplete body was delivered as complete');
  await stillServing();
});

test(`a ${UPLOAD_MB} MB upload streams through without growing resident memory`, async () => {
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const chunks = (UPLOAD_MB * 1024 * 1024) / chunk.length;
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
  const start = Date.now();
  let sent = 0;
  const body = new Readable({
    read() {
      if (sent === chunks) this.push(null);
      else { sent++; this.push(chunk); }
    },
  });
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.request(`${gwDefaults.url}/upload/big`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(UPLOAD_MB * 1024 * 1024) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    body.pipe(req);
  });
  clearInterval(sampler);
  const ms = Date.now() - start;
  const growthMb = (peak - before) / 1024 / 1024;
  console.log(`upload ${UPLOAD_MB} MB in ${ms} ms (${Math.round(UPLOAD_MB / (ms / 1000))} MB/s), rss before ${Math.round(before / 1048576)} MB, peak +${growthMb.toFixed(1)} MB`);
  assert.equal(status, 200);
  assert.equal(sinkBytes, UPLOAD_MB * 1024 * 1024);
  // Client, gateway and sink share this process: buffering the body would add >= UPLOAD_MB;
  // streaming adds socket buffers and the garbage of chunks not yet collected. That garbage
  // depends on the runtime and the speed: ~40 MB on Node 20 at ~200 MB/s, 105-135 MB on
  // Node 24 at ~450 MB/s (the same before and after the HTTP/2 work), so the bound is a
  // quarter of the upload, far below what buffering it would cost.
  assert.ok(growthMb < UPLOAD_MB / 4, `rss grew by ${growthMb.toFixed(1)} MB`);
});
