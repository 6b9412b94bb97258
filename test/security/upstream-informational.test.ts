/**
 * Upstream 1xx answers (RFC 9110 §15.2: a client MUST be able to parse one or more 1xx
 * responses before the final one, even unexpected). An upstream sending `103 Early Hints`
 * (Node's `res.writeEarlyHints()`) must not be taken for the final response: the client
 * gets the upstream's final status and body exactly once, on an intact connection.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawExchange } from '../helpers/raw-http.js';
import { startHandlerUpstream, type HandlerUpstream } from '../helpers/upstream.js';

let gw: TestGateway; let up: HandlerUpstream;

before(async () => {
  up = await startHandlerUpstream((_req, res) => {
    res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
    setTimeout(() => res.end('final'), 20);
  });
  gw = await startGateway(`
routes:
  - { id: open, match: { pathPrefix: / }, upstream: ${up.url}, auth: { mode: none } }
`);
});
after(async () => {
  await gw?.close();
  await up?.close();
});

test('103 Early Hints from the upstream: the final 200 and its body reach the client, twice on one connection', async () => {
  const req = 'GET /x HTTP/1.1\r\nHost: gw\r\n\r\n';
  const ex = await rawExchange(Number(new URL(gw.url).port), [req, 300, req.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')], 5000);
  const finals = ex.responses.filter((r) => r.status >= 200);
  assert.deepEqual(finals.map((r) => [r.status, r.body]), [[200, 'final'], [200, 'final']], JSON.stringify(ex.raw));
});
