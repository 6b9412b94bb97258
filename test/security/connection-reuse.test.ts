/**
 * One keep-alive connection, many requests: each is judged on its own. The proxy remembers
 * the last `Authorization` value a connection sent, to skip parsing it again
 * (src/pipeline/extract.ts, CredentialMemo); these check that nothing but that parse is
 * reused. On the same connection, after a request that passed: a token changed in one
 * character, a second Authorization header, a token in the query, another route's scope
 * rule and the token's expiry all decide the next request (a size limit lowered by a
 * reload: test/unit/pipeline/extract).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startApiFixture, testClock, type Fixture } from '../helpers/fixture.js';
import { parseResponses, type RawResponse } from '../helpers/raw-http.js';

let f: Fixture;
let token: string;
const clock = testClock();

before(async () => {
  f = await startApiFixture({ now: clock.now, routes: `
  - id: admin
    match: { pathPrefix: /admin }
    upstream: UPSTREAM
    auth: { mode: jwt, scopes: { allOf: [admin] } }
` });
  token = await f.iss.sign();
});
after(() => f?.close());

/** A request head on a kept-alive connection (CRLF, blank line included). */
const get = (target: string, ...headers: string[]) => [`GET ${target} HTTP/1.1`, 'Host: 127.0.0.1', ...headers, '', ''].join('\r\n');

/**
 * Sends the requests one after another on one connection, each after the previous answer
 * (running `before` first, if given), and returns the answers. Fails if the gateway closes
 * the connection early: every step must be a request of the same connection.
 */
async function oneConnection(steps: Array<{ head: string; before?: () => void }>): Promise<RawResponse[]> {
  const sock = net.connect(Number(new URL(f.gw.url).port), '127.0.0.1');
  let raw = '';
  let closed = false;
  sock.on('data', (c: Buffer) => { raw += c.toString('latin1'); });
  sock.on('close', () => { closed = true; });
  await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
  try {
    for (let i = 0; i < steps.length; i++) {
      steps[i].before?.();
      sock.write(steps[i].head);
      const until = Date.now() + 5000;
      while (parseResponses(raw).length <= i) {
        assert.ok(!closed, `connection closed before answer ${i + 1}: ${raw.slice(-200)}`);
        assert.ok(Date.now() < until, `no answer ${i + 1} within 5 s`);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    return parseResponses(raw);
  } finally {
    sock.destroy();
  }
}

test('after a token passed, the same connection is judged afresh on every request', async () => {
  const sig = token.lastIndexOf('.') + 5;
  const changed = token.slice(0, sig) + (token[sig] === 'A' ? 'B' : 'A') + token.slice(sig + 1);
  const bearer = `Authorization: Bearer ${token}`;
  const answers = await oneConnection([
    { head: get('/api/1', bearer) },
    { head: get('/api/2', bearer) }, // the remembered value
    { head: get('/api/3', `Authorization: Bearer ${changed}`) }, // one character of the signature
    { head: get('/api/4', bearer, bearer) }, // the remembered value, twice
    { head: get(`/api/5?access_token=${token}`, bearer) },
    { head: get('/admin/6', bearer) }, // another route, whose scope the token lacks
    { head: get('/api/7', `Authorization: bearer ${token}`) }, // same token, other spelling of the scheme
    { head: get('/api/8', 'Authorization: Bearer') }, // malformed after a good one
    { head: get('/api/9') }, // no credential at all
    { head: get('/api/10', bearer) },
  ]);
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 401, 400, 400, 403, 200, 400, 401, 200]);
  assert.match(answers[2].headers['www-authenticate'], /error="invalid_token"/);
  assert.match(answers[3].headers['www-authenticate'], /More than one access token/);
  assert.match(answers[4].headers['www-authenticate'], /More than one access token/);
  assert.match(answers[5].headers['www-authenticate'], /error="insufficient_scope"/);
  assert.match(answers[7].headers['www-authenticate'], /The Authorization header is malformed/);
  assert.equal(answers[8].headers['www-authenticate'], 'Bearer realm="tokengate"');
  assert.deepEqual(f.up.requests.map((r) => r.url), ['/api/1', '/api/2', '/api/7', '/api/10']);
  f.up.reset();
});

test('the token expiring while the connection stays open: the next request is 401', async () => {
  const bearer = `Authorization: Bearer ${token}`;
  const answers = await oneConnection([
    { head: get('/api/a', bearer) },
    { head: get('/api/b', bearer), before: () => clock.advance(600_000) }, // exp (+300 s) and tolerance (30 s) passed
  ]);
  clock.advance(-600_000);
  assert.deepEqual(answers.map((a) => a.status), [200, 401]);
  assert.match(answers[1].headers['www-authenticate'], /The access token expired/);
  assert.deepEqual(f.up.requests.map((r) => r.url), ['/api/a']);
  f.up.reset();
});
