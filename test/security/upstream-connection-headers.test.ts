/**
 * Attack family: hop-by-hop response headers named by an upstream's *repeated* `Connection`
 * header. RFC 9110 §5.3 makes `Connection: keep-alive` + `Connection: x-internal` one list;
 * every header it names is for this hop only and must not reach the client (RFC 9110
 * §7.6.1), however the list is split across lines. Raw upstream on loopback.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';

let gw: TestGateway; let up: net.Server;

before(async () => {
  up = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => s.end('HTTP/1.1 200 OK\r\n' +
      'Connection: keep-alive\r\n' +
      'Connection: X-Internal-Secret, X-Hop\r\n' +
      'X-Internal-Secret: s3cr3t\r\n' +
      'X-Hop: 1\r\n' +
      'X-End-To-End: kept\r\n' +
      'Content-Length: 2\r\n\r\nok'));
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  gw = await startGateway(`
routes:
  - { id: open, match: { pathPrefix: / }, upstream: http://127.0.0.1:${(up.address() as net.AddressInfo).port}, auth: { mode: none } }
`);
});
after(async () => {
  await gw?.close();
  await new Promise((r) => up?.close(r));
});

test('headers listed in a repeated upstream Connection header are dropped like a single one', async () => {
  const r = await rawRequest(gw.url, 'GET /x HTTP/1.1\nHost: gw\nConnection: close');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'ok');
  assert.equal(r.headers['x-end-to-end'], 'kept');
  assert.equal(r.headers['x-internal-secret'], undefined, r.text);
  assert.equal(r.headers['x-hop'], undefined, r.text);
});
