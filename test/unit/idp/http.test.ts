/** Outbound fetches to the IdP: timeout over the whole exchange, no redirects, size cap, JSON only; max-age parsing. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetchJson, maxAgeOf, type FetchError } from '../../../src/idp/http.js';

let server: http.Server;
let base: string;
let redirectHits = 0;
before(async () => {
  server = http.createServer((req, res) => {
    switch (req.url) {
      case '/ok': res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=42' }).end('{"a":1}'); break;
      case '/redirect': res.writeHead(302, { location: '/target' }).end(); break;
      case '/target': redirectHits++; res.writeHead(200).end('{}'); break;
      case '/big': res.writeHead(200, { 'content-length': '5000' }).end('x'.repeat(5000)); break;
      case '/big-chunked': res.writeHead(200); res.write('['); for (let i = 0; i < 100; i++) res.write('"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",'); res.end('0]'); break;
      case '/slow-body': res.writeHead(200); res.write('{"a":'); break; // never ends
      case '/hang': break;
      case '/html': res.writeHead(200).end('<html>'); break;
      default: res.writeHead(500).end('{}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const kind = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as FetchError).kind;
  }
};
const opts = { timeoutMs: 300, maxBytes: 1024 };

test('a JSON answer with its Cache-Control', async () => {
  assert.deepEqual(await fetchJson(`${base}/ok`, opts), { status: 200, body: { a: 1 }, cacheControl: 'max-age=42' });
});

test('failures have fixed kinds: redirect (never followed), too_large, timeout (headers or body), status, not_json, network', async () => {
  assert.equal(await kind(fetchJson(`${base}/redirect`, opts)), 'redirect');
  assert.equal(redirectHits, 0, 'a redirect is never followed');
  assert.equal(await kind(fetchJson(`${base}/big`, opts)), 'too_large');
  assert.equal(await kind(fetchJson(`${base}/big-chunked`, opts)), 'too_large');
  const t0 = Date.now();
  assert.equal(await kind(fetchJson(`${base}/hang`, opts)), 'timeout');
  assert.equal(await kind(fetchJson(`${base}/slow-body`, opts)), 'timeout');
  assert.ok(Date.now() - t0 < 1500);
  assert.equal(await kind(fetchJson(`${base}/nope`, opts)), 'status');
  assert.equal(await kind(fetchJson(`${base}/html`, opts)), 'not_json');
  assert.equal(await kind(fetchJson('http://127.0.0.1:1/x', opts)), 'network');
});

test('maxAgeOf', () => {
  assert.equal(maxAgeOf(null), null);
  assert.equal(maxAgeOf('public'), null);
  assert.equal(maxAgeOf('public, max-age=300'), 300);
  assert.equal(maxAgeOf('MAX-AGE="20"'), 20);
  assert.equal(maxAgeOf('no-store'), 0);
  assert.equal(maxAgeOf('max-age=60, no-cache'), 0);
  assert.equal(maxAgeOf('s-maxage=10'), null);
});
