/**
 * The forwarder (src/server/forward.ts) over real sockets: hop-by-hop and
 * Connection-listed headers removed from the upstream's answer (RFC 9110 §7.6.1),
 * streamed bodies both ways, `Expect` not forwarded, the exact path and query, an
 * upstream 503 passed through once (never retried), refused → 502, slow → 504.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';

interface Seen { method: string; url: string; headers: http.IncomingHttpHeaders; body: number }
const seen: Seen[] = [];
let upstream: http.Server; let gw: TestGateway;

before(async () => {
  upstream = http.createServer((req, res) => {
    let body = 0;
    req.on('data', (c: Buffer) => { body += c.length; });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const path = (req.url ?? '').split('?')[0];
      if (path === '/pub/hop') {
        res.writeHead(200, { connection: 'x-secret, keep-alive', 'x-secret': '1', 'keep-alive': 'timeout=5', 'proxy-authenticate': 'Basic', 'x-ok': '1' });
        res.end('hop');
      } else if (path === '/pub/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' }); // chunked
        let left = 64;
        const more = () => {
          while (left > 0) {
            left--;
            if (!res.write(Buffer.alloc(64 * 1024, 7))) return void res.once('drain', more);
          }
          res.end();
        };
        more();
      } else if (path === '/pub/unavailable') {
        res.writeHead(503, { 'retry-after': '1' });
        res.end('busy');
      } else if (path === '/pub/slow') {
        setTimeout(() => { if (!res.destroyed) res.end('late'); }, 1500).unref();
      } else {
        res.end('ok');
      }
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const up = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const closed = `http://127.0.0.1:${await freePort()}`;
  gw = await startGateway(`
server: { upstreamTimeoutMs: 400 }
routes:
  - { id: pub, match: { pathPrefix: /pub }, upstream: "${up}", auth: { mode: none } }
  - { id: down, match: { pathPrefix: /down }, upstream: "${closed}", auth: { mode: none } }
`);
});
after(async () => {
  await gw?.close();
  upstream?.closeAllConnections();
  await new Promise<void>((r) => upstream?.close(() => r()));
});

function send(path: string, opts: { method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string; expectContinue?: boolean } = {}):
Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(gw.url + path, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.expectContinue) req.on('continue', () => req.end(opts.body));
    else req.end(opts.body);
  });
}

test('hop-by-hop and Connection-listed response headers are removed; the rest passes', async () => {
  const r = await send('/pub/hop');
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'hop');
  assert.equal(r.headers['x-ok'], '1');
  assert.equal(r.headers['x-secret'], undefined);
  assert.equal(r.headers['keep-alive'], undefined);
  assert.equal(r.headers['proxy-authenticate'], undefined);
});

test('a 4 MB chunked answer streams through complete', async () => {
  const r = await send('/pub/big');
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 64 * 64 * 1024);
  assert.ok(r.body.every((b) => b === 7));
});

test('exact path and untouched query; Expect is answered by the gateway, not forwarded; GET bodies are forwarded', async () => {
  seen.length = 0;
  assert.equal((await send('/pub/a%20b/c?x=%2F&y&z=%41')).status, 200);
  assert.equal(seen[0].url, '/pub/a%20b/c?x=%2F&y&z=%41');
  const body = Buffer.alloc(200_000, 1);
  const r = await send('/pub/upload', { method: 'PUT', headers: { expect: '100-continue', 'content-length': body.length }, body, expectContinue: true });
  assert.equal(r.status, 200);
  assert.equal(seen[1].headers.expect, undefined);
  assert.equal(seen[1].body, body.length);
  assert.equal((await send('/pub/get-body', { headers: { 'content-length': 3 }, body: 'abc' })).status, 200);
  assert.equal(seen[2].method, 'GET');
  assert.equal(seen[2].body, 3);
});

test('an upstream 503 is passed through once, not retried', async () => {
  seen.length = 0;
  const r = await send('/pub/unavailable');
  assert.equal(r.status, 503);
  assert.equal(r.body.toString(), 'busy');
  assert.equal(r.headers['retry-after'], '1');
  await new Promise((res) => setTimeout(res, 200));
  assert.equal(seen.length, 1);
});

test('refused upstream: 502; no response headers within upstreamTimeoutMs: 504; generic bodies', async () => {
  const refused = await send('/down/x');
  assert.equal(refused.status, 502);
  assert.deepEqual(JSON.parse(refused.body.toString()), { error: 'bad_gateway', error_description: 'The upstream service is unavailable' });
  const slow = await send('/pub/slow');
  assert.equal(slow.status, 504);
  assert.deepEqual(JSON.parse(slow.body.toString()), { error: 'gateway_timeout', error_description: 'The upstream service did not answer in time' });
});
