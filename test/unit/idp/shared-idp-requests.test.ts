/**
 * The cluster primary's shared IdP requests (src/cluster.ts SharedIdpRequests), against a
 * real HTTP server on loopback that counts what it is sent: identical requests in flight are
 * joined, an answer is handed on for `shareForMs` and then asked again, a failed GET is
 * shared like an answer but a failed POST only with requests that joined it, and the map is
 * bounded — a flood of distinct requests forgets the oldest instead of growing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { SharedIdpRequests } from '../../../src/cluster.js';
import { listenLoopback } from '../../helpers/ports.js';

let server: http.Server;
let base = '';
const seen: string[] = [];

before(async () => {
  server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    // Slow enough for requests sent together to meet in flight.
    setTimeout(() => {
      if (req.url?.startsWith('/fail')) res.writeHead(500).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ path: req.url }));
    }, 30);
  });
  base = `http://127.0.0.1:${await listenLoopback(server)}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

const opts = (shareForMs?: number, method?: 'POST') => ({ timeoutMs: 2000, maxBytes: 10_000, method, body: method ? 'token=x' : undefined, shareForMs });
const count = (what: string) => seen.filter((s) => s === what).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('requests in flight are joined; the answer is shared for shareForMs, then asked again', async () => {
  const shared = new SharedIdpRequests();
  const answers = await Promise.all([1, 2, 3].map(() => shared.ask(`${base}/a`, opts(500))));
  assert.equal(count('GET /a'), 1);
  assert.deepEqual(answers.map((a) => a.ok && a.reused), [false, true, true]);
  await sleep(60);
  const later = await shared.ask(`${base}/a`, opts(500));
  assert.ok(later.ok && later.reused && later.ageMs >= 50, `shared with its age: ${JSON.stringify(later)}`);
  assert.equal(count('GET /a'), 1);
  await sleep(500);
  await shared.ask(`${base}/a`, opts(500));
  assert.equal(count('GET /a'), 2, 'asked again once shareForMs has passed');
});

test('a failed GET is shared like an answer; a failed POST only with those that joined it', async () => {
  const shared = new SharedIdpRequests();
  const gets = await Promise.all([shared.ask(`${base}/fail-get`, opts(1000)), shared.ask(`${base}/fail-get`, opts(1000))]);
  await shared.ask(`${base}/fail-get`, opts(1000));
  assert.equal(count('GET /fail-get'), 1);
  assert.deepEqual(gets.map((g) => g.ok), [false, false]);
  const posts = await Promise.all([shared.ask(`${base}/fail-post`, opts(1000, 'POST')), shared.ask(`${base}/fail-post`, opts(1000, 'POST'))]);
  assert.deepEqual(posts.map((p) => p.ok || p.reused), [false, true], 'the second joined the first');
  assert.equal(count('POST /fail-post'), 1);
  await shared.ask(`${base}/fail-post`, opts(1000, 'POST'));
  assert.equal(count('POST /fail-post'), 2, 'a failure is not handed out after the fact');
});

test('without shareForMs only requests in flight are joined', async () => {
  const shared = new SharedIdpRequests();
  await Promise.all([shared.ask(`${base}/b`, opts()), shared.ask(`${base}/b`, opts())]);
  await shared.ask(`${base}/b`, opts());
  assert.equal(count('GET /b'), 2);
});

test('the map is bounded: past max, the least recently used request is forgotten and sent again', async () => {
  const shared = new SharedIdpRequests(2);
  for (const p of ['/c1', '/c2', '/c3']) await shared.ask(`${base}${p}`, opts(60_000));
  await shared.ask(`${base}/c3`, opts(60_000));
  await shared.ask(`${base}/c1`, opts(60_000));
  assert.deepEqual(['/c1', '/c2', '/c3'].map((p) => count(`GET ${p}`)), [2, 1, 1]);
});
