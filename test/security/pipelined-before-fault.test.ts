/**
 * A request pipelined in the same write before bytes the parser refuses: Node hands the
 * good request to the gateway (which forwards it) before it reaches the bad bytes. The
 * forwarded request must be answered and recorded, and the 400 for the bad bytes comes
 * after that answer. Bytes after a request that asked to close the connection
 * (`Connection: close`, HTTP/1.0) are no request: the answer comes, then the close.
 * A gateway that writes its 400 at once loses the first answer and its access line.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { head, rawExchange } from '../helpers/raw-http.js';

let up: EchoUpstream;
let gw: TestGateway;
let port: number;
const logs: string[] = [];

before(async () => {
  up = await startUpstream();
  gw = await startGateway(`
routes:
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
`, { logs });
  port = Number(new URL(gw.url).port);
});
after(async () => {
  await gw?.close();
  await up?.close();
});
beforeEach(() => {
  up.reset();
  logs.length = 0;
});

const access = () => logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'access');
const count = async (reason: string) => {
  const text = await gw.gw.metrics.registry.metrics();
  return Number(new RegExp(`^tokengate_requests_total\\{route="[^"]*",outcome="[a-z]+",reason="${reason}",status_class="\\dxx"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
};

for (const [name, fault] of [
  ['a malformed request line', 'NOT A REQUEST\r\n\r\n'],
  ['a bad header line', head('GET /pub/2 HTTP/1.1', 'Host: 127.0.0.1', 'Bad Header: x')],
  ['conflicting Content-Length', head('POST /pub/2 HTTP/1.1', 'Host: 127.0.0.1', 'Content-Length: 1', 'Content-Length: 2') + 'ab'],
] as const) {
  test(`a forwarded request before ${name} is answered and recorded, then the 400`, async () => {
    const ok0 = await count('ok');
    const bad0 = await count('bad_request');
    const ex = await rawExchange(port, [head('GET /pub/1 HTTP/1.1', 'Host: 127.0.0.1') + fault], 10_000);
    assert.deepEqual(up.requests.map((r) => r.url), ['/pub/1'], 'the first request went upstream');
    assert.deepEqual(ex.responses.map((r) => r.status), [200, 400], ex.raw.slice(0, 300));
    assert.equal(JSON.parse(ex.responses[0].body).url, '/pub/1', 'the first answer is the upstream\'s');
    assert.ok(ex.closed, 'the connection closes after the 400');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(access().map((l) => [l.route, l.status]), [['pub', 200], ['(none)', 400]]);
    assert.equal(await count('ok'), ok0 + 1);
    assert.equal(await count('bad_request'), bad0 + 1);
  });
}

for (const [name, first] of [
  ['Connection: close', head('GET /pub/1 HTTP/1.1', 'Host: 127.0.0.1', 'Connection: close')],
  ['HTTP/1.0', head('GET /pub/1 HTTP/1.0', 'Host: 127.0.0.1')],
] as const) {
  test(`bytes after a ${name} request: its answer, recorded, then the connection closes`, async () => {
    const ex = await rawExchange(port, [first + head('GET /pub/2 HTTP/1.1', 'Host: 127.0.0.1') + 'garbage'], 10_000);
    assert.deepEqual(up.requests.map((r) => r.url), ['/pub/1'], 'nothing after the close request is executed');
    assert.equal(ex.responses[0]?.status, 200, ex.raw.slice(0, 300));
    assert.equal(JSON.parse(ex.responses[0].body).url, '/pub/1');
    assert.ok(ex.responses.length <= 2 && ex.responses.slice(1).every((r) => r.status === 400), ex.raw.slice(0, 300));
    assert.ok(ex.closed);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(access().filter((l) => l.route === 'pub').map((l) => l.status), [200]);
  });
}
