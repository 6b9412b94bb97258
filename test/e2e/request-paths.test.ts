/**
 * Every proxied request, with or without a body (form bodies are read, others streamed),
 * enters the one Fastify handler and gets exactly one access line and one
 * `tokengate_requests_total` increment: allowed or refused, forwarded or failed upstream,
 * matched or not.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startHandlerUpstream, startUpstream, type EchoUpstream, type HandlerUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let iss: MockIssuer; let up: EchoUpstream; let gw: TestGateway; let big: HandlerUpstream;
const logs: string[] = [];
const accessLines = () => logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'access');
const BIG = 3 * 1024 * 1024;

before(async () => {
  [iss, up] = await Promise.all([startMockIssuer(), startUpstream()]);
  big = await startHandlerUpstream((_req, res) => {
    res.setHeader('content-type', 'application/octet-stream');
    res.end(Buffer.alloc(BIG, 0x61));
  });
  gw = await startGateway(`
issuers:
  - { id: corp, issuer: ${iss.issuer}, jwksUri: ${iss.jwksUri}, audiences: [api] }
routes:
  - { id: api, match: { pathPrefix: /api }, upstream: ${up.url}, auth: { mode: jwt } }
  - { id: pub, match: { pathPrefix: /pub }, upstream: ${up.url}, auth: { mode: none } }
  - { id: down, match: { pathPrefix: /down }, upstream: "http://127.0.0.1:1", auth: { mode: none } }
  - { id: big, match: { pathPrefix: /big }, upstream: "${big.url}", auth: { mode: none } }
`, { logs });
  await gw.ready();
});
after(async () => { await gw?.close(); await up?.close(); await iss?.close(); await big?.close(); });

async function requestsTotal(): Promise<number> {
  const text = await (await fetch(gw.adminUrl + '/metrics')).text();
  let n = 0;
  for (const m of text.matchAll(/^tokengate_requests_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

test('with or without a body, allowed, refused or failed: one answer, one access line, one count each', async () => {
  const token = await iss.sign({});
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const cases: Array<[string, string, RequestInit, number, string]> = [
    ['GET, allowed (no body)', '/pub/a', {}, 200, 'ok'],
    ['POST text body, allowed', '/pub/b', { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } }, 200, 'ok'],
    ['POST form body, allowed', '/pub/c', { method: 'POST', body: 'a=1', headers: form }, 200, 'ok'],
    ['POST form body with access_token, refused', '/pub/d', { method: 'POST', body: `access_token=${token}`, headers: form }, 400, 'token_in_body'],
    ['GET with a token, allowed', '/api/e', { headers: { authorization: `Bearer ${token}` } }, 200, 'ok'],
    ['GET without a token, refused', '/api/f', {}, 401, 'missing_token'],
    ['POST without a token, refused', '/api/g', { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } }, 401, 'missing_token'],
    ['GET, upstream refuses connections', '/down/h', {}, 502, 'upstream_unavailable'],
    ['GET, no route', '/nowhere', {}, 404, 'no_route'],
  ];
  const before = await requestsTotal();
  logs.length = 0;
  up.reset();
  for (const [i, [what, path, init, status, reason]] of cases.entries()) {
    const r = await fetch(gw.url + path, init);
    const body = await r.text();
    assert.equal(r.status, status, `${what}: ${body}`);
    if (status >= 400) {
      assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8', what);
      assert.equal(r.headers.get('cache-control'), 'no-store', what);
      assert.equal((JSON.parse(body) as { error: string }).error.length > 0, true, what);
    }
    // The access line is written when the response is complete: wait for it before the next request.
    const until = Date.now() + 2000;
    while (accessLines().length <= i && Date.now() < until) await new Promise((res) => setTimeout(res, 5));
    const line = accessLines().at(-1)!;
    assert.deepEqual([line.status, line.reason], [status, reason], what);
  }
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(accessLines().length, cases.length, 'one access line per request, never two');
  assert.equal(await requestsTotal() - before, cases.length, 'one count per request');
  assert.deepEqual(up.requests.map((q) => q.url), ['/pub/a', '/pub/b', '/pub/c', '/api/e'], 'only the allowed ones reached the upstream');
  assert.equal(up.requests[1].body, 'hello');
  assert.equal(up.requests[2].body, 'a=1');
});

test('a large upstream answer streams whole to a body-less request, with one access line', async () => {
  logs.length = 0;
  const r = await fetch(gw.url + '/big/x');
  assert.equal(r.status, 200);
  assert.equal((await r.arrayBuffer()).byteLength, BIG);
  await new Promise((res) => setTimeout(res, 50));
  assert.deepEqual(accessLines().map((l) => [l.route, l.status]), [['big', 200]]);
});

test('a client that leaves before the upstream answers: the forwarded request is still recorded, once, as 499', async () => {
  logs.length = 0;
  up.reset();
  up.delayMs = 500;
  try {
    const ac = new AbortController();
    const pending = fetch(`${gw.url}/pub/leaving`, { signal: ac.signal }).catch(() => 'aborted');
    const until = Date.now() + 3000;
    while (up.requests.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(up.requests.length, 1, 'forwarded');
    ac.abort();
    assert.equal(await pending, 'aborted');
    const seen = Date.now() + 3000;
    while (accessLines().length === 0 && Date.now() < seen) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 600)); // the upstream's late answer must not add a second line
    assert.deepEqual(accessLines().map((l) => [l.route, l.status]), [['pub', 499]]);
  } finally {
    up.delayMs = 0;
  }
});
