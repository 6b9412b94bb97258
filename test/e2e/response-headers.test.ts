/**
 * Responses: the upstream's hop-by-hop headers, and those it lists in its `Connection`
 * header, do not reach the client (RFC 9110 §7.6.1); end-to-end headers, status and body do.
 * An upstream that resets the connection is a 502 with a generic body.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';
import { startHandlerUpstream, type HandlerUpstream } from '../helpers/upstream.js';

let upstream: HandlerUpstream; let gw: TestGateway;
before(async () => {
  upstream = await startHandlerUpstream((req, res) => {
    if (req.url === '/reset') {
      req.socket.destroy();
      return;
    }
    res.writeHead(req.url === '/created' ? 201 : 200, {
      'content-type': 'text/plain',
      connection: 'x-hop-one, X-Hop-Two',
      'x-hop-one': '1',
      'x-hop-two': '2',
      'keep-alive': 'timeout=99',
      'proxy-authenticate': 'Basic',
      'x-end-to-end': 'kept',
      'set-cookie': ['a=1', 'b=2'],
    });
    res.end('payload');
  });
  gw = await startGateway(`
routes:
  - { id: open, match: { pathPrefix: / }, upstream: ${upstream.url}, auth: { mode: none } }
`);
});
after(async () => {
  await gw?.close();
  await upstream?.close();
});

test('upstream hop-by-hop and Connection-listed response headers are dropped; the rest is relayed', async () => {
  for (const [path, status] of [['/x', 200], ['/created', 201]] as const) {
    const r = await rawRequest(gw.url, `GET ${path} HTTP/1.1\nHost: gw\nConnection: close`);
    assert.equal(r.status, status);
    assert.equal(r.body, 'payload');
    for (const h of ['x-hop-one', 'x-hop-two', 'proxy-authenticate']) assert.equal(r.headers[h], undefined, h);
    assert.notEqual(r.headers['keep-alive'], 'timeout=99');
    assert.equal(r.headers['x-end-to-end'], 'kept');
    assert.equal(r.headers['set-cookie'], 'a=1, b=2');
  }
});

test('HEAD is relayed without a body', async () => {
  const r = await rawRequest(gw.url, 'HEAD /x HTTP/1.1\nHost: gw\nConnection: close');
  assert.equal(r.status, 200);
  assert.equal(r.body, '');
  assert.equal(r.headers['x-end-to-end'], 'kept');
});

test('an upstream that resets the connection: 502 with a generic body, and the next request works', async () => {
  const r = await rawRequest(gw.url, 'GET /reset HTTP/1.1\nHost: gw\nConnection: close');
  assert.equal(r.status, 502);
  assert.deepEqual(JSON.parse(r.body), { error: 'bad_gateway', error_description: 'The upstream service is unavailable' });
  assert.equal((await rawRequest(gw.url, 'GET /x HTTP/1.1\nHost: gw\nConnection: close')).status, 200);
});
