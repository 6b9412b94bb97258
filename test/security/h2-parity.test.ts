/**
 * One request path, two protocols: the same requests sent over HTTP/1.1 and over HTTP/2
 * (h2c prior knowledge, `server.http2: true`) get the same answer — status, challenge,
 * error code — and the upstream sees the same thing: path rules, token checks, identity
 * headers the client cannot forge (in any spelling), duplicate credentials, tokens in
 * the query. Tokens come from the real oidc-provider IdP; the forged ones are edits of them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { IDP_RESOURCES, idpIssuerYaml, startIdp, type TestIdp } from '../helpers/idp.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { FRAME, RawH2, get, headerBlock, headers as headersFrame } from '../helpers/h2-frames.js';

let idp: TestIdp;
let up: EchoUpstream;
let gw: TestGateway;
let token: string;

before(async () => {
  idp = await startIdp();
  up = await startUpstream();
  gw = await startGateway(`
server: { http2: true }
issuers:
${idpIssuerYaml(idp, IDP_RESOURCES.es256)}
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-sub: sub, x-auth-scope: scope } }
  - id: admin
    match: { pathPrefix: /admin }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [admin] } }
`);
  await gw.ready(15_000);
  token = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' });
});
after(async () => { await gw?.close(); await up?.close(); await idp?.close(); });

interface Answer { status: number; challenge: string | undefined; error: string | undefined; upstream: { url: string; sub: unknown; auth: unknown; forged: boolean } | null }

/** The gateway's answer and what (if anything) reached the upstream. */
function summarize(status: number, challenge: string | string[] | undefined, body: string, before: number): Answer {
  let error: string | undefined;
  try { error = (JSON.parse(body) as { error?: string }).error; } catch { error = undefined; }
  const seen = up.requests.length > before ? up.requests[up.requests.length - 1] : null;
  return {
    status,
    challenge: Array.isArray(challenge) ? challenge.join(', ') : challenge,
    error,
    upstream: seen && {
      url: seen.url,
      sub: seen.headers['x-auth-sub'],
      auth: seen.headers.authorization,
      forged: seen.rawHeaders.some((v, i) => i % 2 === 1 && v === 'forged'),
    },
  };
}

/** `headers` is a raw list: a header may appear twice. */
function viaHttp1(path: string, headers: Array<[string, string]>): Promise<Answer> {
  const before = up.requests.length;
  return new Promise((resolve, reject) => {
    // A raw list keeps duplicates; Node then adds no Host of its own.
    const req = http.request(gw.url + path, { headers: [['host', new URL(gw.url).host], ...headers].flat(), agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(summarize(res.statusCode ?? 0, res.headers['www-authenticate'], body, before)));
    });
    req.on('error', reject);
    req.end();
  });
}

function viaHttp2(path: string, headers: Array<[string, string]>): Promise<Answer> {
  const before = up.requests.length;
  const session = http2.connect(gw.url);
  return new Promise<Answer>((resolve, reject) => {
    const req = session.request({ ':path': path, ...Object.fromEntries(headers) });
    let body = '';
    let head: http2.IncomingHttpHeaders = {};
    req.setEncoding('utf8');
    req.on('response', (h) => { head = h; });
    req.on('data', (c: string) => (body += c));
    req.on('end', () => resolve(summarize(Number(head[':status']), head['www-authenticate'], body, before)));
    req.on('error', reject);
    req.end();
  }).finally(() => session.close());
}

const cases: Array<{ name: string; path: string; headers: () => Array<[string, string]>; status: number }> = [
  { name: 'no token', path: '/api/a', headers: () => [], status: 401 },
  { name: 'a valid token', path: '/api/a?x=1', headers: () => [['authorization', `Bearer ${token}`]], status: 200 },
  { name: 'a tampered token', path: '/api/a', headers: () => [['authorization', `Bearer ${token.slice(0, -4)}AAAA`]], status: 401 },
  { name: 'a missing scope', path: '/admin/a', headers: () => [['authorization', `Bearer ${token}`]], status: 403 },
  { name: 'a token in the query', path: `/api/a?access_token=${'x'.repeat(30)}`, headers: () => [], status: 400 },
  { name: 'forged identity headers, every spelling', path: '/api/a', headers: () => [['authorization', `Bearer ${token}`], ['x-auth-sub', 'forged'], ['x_auth_sub', 'forged'], ['X-Auth-Scope', 'forged']], status: 200 },
  { name: 'dot-segments resolved before matching', path: '/admin/../api/b', headers: () => [['authorization', `Bearer ${token}`]], status: 200 },
  { name: 'an encoded slash', path: '/api/a%2Fb', headers: () => [['authorization', `Bearer ${token}`]], status: 400 },
  { name: 'a path parameter', path: '/api/a;x=1', headers: () => [['authorization', `Bearer ${token}`]], status: 400 },
  { name: 'no route', path: '/nowhere', headers: () => [['authorization', `Bearer ${token}`]], status: 404 },
];

for (const c of cases) {
  test(`HTTP/1.1 and HTTP/2 alike: ${c.name}`, async () => {
    const one = await viaHttp1(c.path, c.headers());
    const two = await viaHttp2(c.path, c.headers());
    assert.equal(one.status, c.status, JSON.stringify(one));
    assert.deepEqual(two, one);
    if (c.status === 200) {
      assert.equal(typeof one.upstream?.sub, 'string');
      assert.equal(one.upstream?.auth, undefined, 'the token is not forwarded');
      assert.equal(one.upstream?.forged, false, 'no forged identity header reaches the upstream');
    } else {
      assert.equal(one.upstream, null, 'a refused request reaches no upstream');
    }
  });
}

// node:http2 will not send Authorization twice (it is a single-value header there), so
// the raw frames do: the stream is answered 400 (`:status` 400 is HPACK static index 12),
// as over HTTP/1.1, and nothing reaches the upstream.
test('HTTP/1.1 and HTTP/2 alike: two Authorization headers', async () => {
  const dup: Array<[string, string]> = [['authorization', `Bearer ${token}`], ['authorization', `Bearer ${token}`]];
  const one = await viaHttp1('/api/a', dup);
  assert.deepEqual([one.status, one.error, one.upstream], [400, 'invalid_request', null]);
  const before = up.requests.length;
  const c = await RawH2.connect(Number(new URL(gw.url).port));
  try {
    c.send(headersFrame(1, headerBlock(get('/api/a', new URL(gw.url).host, dup))));
    const answer = await c.waitFor((x) => x.streamId === 1 && (x.type === FRAME.HEADERS || x.type === FRAME.RST_STREAM), 5000);
    assert.equal(answer.type, FRAME.HEADERS);
    assert.equal(answer.payload[0], 0x80 | 12, ':status 400');
  } finally {
    c.close();
  }
  assert.equal(up.requests.length, before);
});
