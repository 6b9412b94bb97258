/**
 * Attack family: the upstream's answer to a refused WebSocket upgrade (any status but 101),
 * which the gateway relays itself on the raw socket (src/server/websocket.ts). It must be
 * relayed like any proxied response: every header name with its own value, the upstream's
 * hop-by-hop headers and those its `Connection` lists dropped (RFC 9110 §7.6.1), framing
 * the gateway's own. A header section whose names and values slip by one after
 * `Content-Length` writes upstream header *values* in header-*name* position: a value the
 * upstream reflects from the request (`Set-Cookie: sid=...`) becomes a real header for the
 * client, and ordinary refusals (`ws`'s 400 with `Sec-WebSocket-Version: 13, 8`) become
 * unparseable. Raw sockets on loopback.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { WebSocketServer } from 'ws';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawExchange } from '../helpers/raw-http.js';

let gw: TestGateway; let raw: net.Server; let wss: WebSocketServer;

// The refusal a raw upstream writes: Content-Length first (as `ws`'s abortHandshake does),
// then a header whose value the upstream reflected from the request, a challenge, and
// hop-by-hop headers, one of them named only by the upstream's Connection header.
const REFUSAL = 'HTTP/1.1 401 Unauthorized\r\n' +
  'Content-Length: 2\r\n' +
  'X-Echo: Set-Cookie: sid=attacker\r\n' +
  'WWW-Authenticate: Bearer realm="chat"\r\n' +
  'Connection: close, X-Internal-Secret\r\n' +
  'X-Internal-Secret: s3cr3t\r\n' +
  'Proxy-Authenticate: Basic\r\n' +
  'Trailer: X-T\r\n' +
  '\r\nno';

// A 101 without the Upgrade header: Node's client sees a response, not an upgrade.
const BARE_101 = 'HTTP/1.1 101 Switching Protocols\r\nConnection: close\r\n\r\n';

before(async () => {
  raw = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', (d: Buffer) => s.end(d.toString('latin1').startsWith('GET /raw/bare101') ? BARE_101 : REFUSAL));
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  gw = await startGateway(`
routes:
  - id: raw
    match: { pathPrefix: /raw }
    upstream: http://127.0.0.1:${(raw.address() as net.AddressInfo).port}
    websocket: true
    auth: { mode: none }
  - id: ws
    match: { pathPrefix: /ws }
    upstream: http://127.0.0.1:${(wss.address() as net.AddressInfo).port}
    websocket: true
    auth: { mode: none }
`);
});
after(async () => {
  await gw?.close();
  await new Promise((r) => raw?.close(r));
  await new Promise((r) => wss?.close(r));
});

/** The header lines of the first response in `text`, as [name, value] pairs (split at the first colon). */
function headerPairs(text: string): Array<[string, string]> {
  const head = text.slice(0, text.indexOf('\r\n\r\n'));
  return head.split('\r\n').slice(1).map((l) => {
    const c = l.indexOf(':');
    return [l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim()];
  });
}

test('a refused upgrade is relayed with every header under its own name; no upstream value in name position', async () => {
  const ex = await rawExchange(Number(new URL(gw.url).port), [
    'GET /raw/chat HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  ], 5000);
  assert.match(ex.raw, /^HTTP\/1\.1 401 /);
  const pairs = headerPairs(ex.raw);
  const names = pairs.map(([n]) => n);
  const tchar = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
  for (const n of names) assert.match(n, tchar, `not a header name: ${JSON.stringify(n)}\n${ex.raw}`);
  assert.ok(!names.includes('set-cookie'), `a reflected value became a Set-Cookie header:\n${ex.raw}`);
  assert.deepEqual(pairs.filter(([n]) => n === 'x-echo'), [['x-echo', 'Set-Cookie: sid=attacker']], ex.raw);
  assert.deepEqual(pairs.filter(([n]) => n === 'www-authenticate'), [['www-authenticate', 'Bearer realm="chat"']], ex.raw);
  for (const h of ['x-internal-secret', 'proxy-authenticate', 'trailer', 'undefined']) assert.ok(!names.includes(h), `${h} relayed:\n${ex.raw}`);
  assert.deepEqual(pairs.filter(([n]) => n === 'content-length'), [['content-length', '2']]);
  assert.ok(ex.raw.endsWith('\r\n\r\nno'), ex.raw);
});

test('a real `ws` upstream refusing an unsupported version: the client gets a well-formed 400 with its Sec-WebSocket-Version', async () => {
  const { port } = new URL(gw.url);
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: '/ws/chat',
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '12', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' },
    });
    req.on('response', resolve);
    req.on('upgrade', () => reject(new Error('upgraded')));
    req.on('error', reject); // a malformed header section from the gateway lands here (HPE_INVALID_HEADER_TOKEN)
    req.end();
  });
  assert.equal(res.statusCode, 400);
  assert.equal(res.headers['sec-websocket-version'], '13, 8');
  res.resume();
});

test('an upstream 101 without Upgrade is a 502, not relayed as a switch with no tunnel behind it', async () => {
  const ex = await rawExchange(Number(new URL(gw.url).port), [
    'GET /raw/bare101 HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  ], 5000);
  assert.match(ex.raw, /^HTTP\/1\.1 502 /, ex.raw);
});
