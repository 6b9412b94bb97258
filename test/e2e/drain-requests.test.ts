/**
 * A request that arrives on an open keep-alive connection once shutdown has begun: the
 * gateway refuses it from its own catalogue (503 `shutting_down`, `Retry-After`,
 * `Connection: close`) and records it like any other request — not a framework answer
 * that no access line or metric would see — while the request already in flight on
 * another connection finishes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { startHandlerUpstream, type HandlerUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let up: HandlerUpstream;
let gw: TestGateway;
const logs: string[] = [];

before(async () => {
  up = await startHandlerUpstream((req, res) => {
    // /slow holds its answer long enough for the shutdown to begin meanwhile.
    setTimeout(() => res.end('done'), req.url?.startsWith('/pub/slow') ? 600 : 0);
  });
  gw = await startGateway(`
server: { shutdownGraceSec: 5 }
routes:
  - { id: pub, match: { pathPrefix: /pub }, upstream: "${up.url}", auth: { mode: none } }
`, { logs });
});
after(async () => {
  await gw?.close();
  await up?.close();
});

function get(agent: http.Agent, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(`${gw.url}${path}`, { agent }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    }).on('error', reject);
  });
}

test('after SIGTERM, a request on a busy keep-alive connection: 503 shutting_down, Connection: close, recorded; in-flight ones finish', async () => {
  const a = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const b = new http.Agent({ keepAlive: true, maxSockets: 1 });
  assert.equal((await get(b, '/pub/warm')).status, 200); // b's connection is open and idle...
  const slow = get(a, '/pub/slow');
  await new Promise((r) => setTimeout(r, 100));
  // ...and kept busy by a request in flight when shutdown begins, so it is not closed as idle.
  const busy = get(b, '/pub/slow-too');
  await new Promise((r) => setTimeout(r, 50));
  const closing = gw.gw.close(5);
  const late = await get(b, '/pub/late'); // pipelined behind the busy one by the agent
  assert.equal((await slow).status, 200, 'the in-flight request finished');
  assert.equal((await busy).status, 200);
  assert.equal(late.status, 503);
  assert.equal(JSON.parse(late.body).error, 'temporarily_unavailable');
  assert.equal(late.headers['retry-after'], '1');
  assert.equal(late.headers.connection, 'close');
  await closing;
  const lines = logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'access');
  assert.deepEqual(lines.map((l) => [l.status, l.reason]).sort(), [[200, 'ok'], [200, 'ok'], [200, 'ok'], [503, 'shutting_down']].sort());
  a.destroy();
  b.destroy();
});
