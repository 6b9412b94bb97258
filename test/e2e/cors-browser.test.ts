/**
 * CORS as a real browser enforces it: headless Chromium (Debian's `chromium`, driven by
 * playwright-core over the DevTools protocol; no browser download) loads a page from one
 * loopback origin and calls the API through tokengate on another, with a token from the
 * real test IdP (oidc-provider). The page must read a 200 with its data, a 401 with its
 * `WWW-Authenticate` and JSON error, and a 403; a page from an origin the route does not
 * allow must be blocked by the browser itself, and so must any page on a route without
 * `cors`. Skipped, with the reason, where Chromium is not installed or cannot start; the
 * raw-HTTP tests (cors.test.ts, cors-preflight-smuggling.test.ts) are the gate then.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { IDP_RESOURCES, idpIssuerYaml, startIdp, type TestIdp } from '../helpers/idp.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { listenLoopback } from '../helpers/ports.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// The flags that start Debian's Chromium in a container: no sandbox (no user namespaces),
// no GPU, and nothing that reaches the network on its own.
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

let idp: TestIdp; let up: EchoUpstream; let gw: TestGateway;
let allowedPage: http.Server; let otherPage: http.Server;
let allowedOrigin = ''; let otherOrigin = '';
let ctx: BrowserContext | null = null; let profile = '';
let skipReason: string | null = null;
let token = ''; let noScopeToken = '';
const logs: string[] = [];

/** A server for the page's own origin: one empty HTML document. */
async function pageServer(): Promise<{ server: http.Server; origin: string }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><meta charset="utf-8"><title>app</title><p>app</p>');
  });
  const port = await listenLoopback(server);
  return { server, origin: `http://127.0.0.1:${port}` };
}

before(async () => {
  if (!existsSync(CHROMIUM)) {
    skipReason = `${CHROMIUM} not found (apt-get install chromium); the raw-HTTP CORS tests stand in`;
    return;
  }
  [idp, up] = await Promise.all([startIdp(), startUpstream()]);
  const a = await pageServer();
  const b = await pageServer();
  allowedPage = a.server; allowedOrigin = a.origin;
  otherPage = b.server; otherOrigin = b.origin;
  gw = await startGateway(`
issuers:
${idpIssuerYaml(idp)}
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-subject: sub } }
    cors:
      allowOrigins: [${allowedOrigin}]
      allowMethods: [GET, POST]
      allowHeaders: [authorization, content-type]
  - id: admin
    match: { pathPrefix: /admin }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [admin] } }
    cors: { allowOrigins: [${allowedOrigin}] }
  - id: plain
    match: { pathPrefix: /plain }
    upstream: ${up.url}
    auth: { mode: jwt }
`, { logs });
  await gw.ready(15_000);
  token = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' });
  noScopeToken = token; // has orders:read, lacks admin
  profile = mkdtempSync(join(tmpdir(), 'tokengate-chromium-'));
  try {
    ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 60_000 });
  } catch (e) {
    skipReason = `Chromium could not start here: ${(e as Error).message.split('\n')[0]}`;
  }
});

after(async () => {
  await ctx?.close().catch(() => undefined);
  if (profile) rmSync(profile, { recursive: true, force: true });
  await gw?.close();
  await Promise.all([up?.close(), idp?.close()]);
  await Promise.all([allowedPage, otherPage].map((s) => s && new Promise((r) => { s.close(r); s.closeAllConnections(); })));
});

/** A fresh page on `origin`. */
async function pageAt(origin: string): Promise<Page> {
  const page = await ctx!.newPage();
  await page.goto(`${origin}/`, { timeout: 15_000 });
  return page;
}

interface Read { status?: number; body?: unknown; www?: string | null; acao?: string | null; error?: string }

/** `fetch()` from inside the page: what the page can read, or the browser's error. */
function pageFetch(page: Page, url: string, headers: Record<string, string> = {}): Promise<Read> {
  return page.evaluate(async ({ url, headers }) => {
    try {
      const r = await fetch(url, { headers });
      const text = await r.text();
      let body: unknown = text;
      try { body = JSON.parse(text); } catch { /* not JSON */ }
      return { status: r.status, body, www: r.headers.get('www-authenticate'), acao: r.headers.get('access-control-allow-origin') };
    } catch (e) {
      return { error: `${(e as Error).name}: ${(e as Error).message}` };
    }
  }, { url, headers });
}

test('a page on an allowed origin reads a 200 with data, a 401 with its challenge, and a 403', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const page = await pageAt(allowedOrigin);
  try {
    logs.length = 0;
    up.reset();
    const ok = await pageFetch(page, `${gw.url}/api/orders?page=1`, { authorization: `Bearer ${token}` });
    assert.equal(ok.status, 200, JSON.stringify(ok));
    const data = ok.body as { url: string; headers: Record<string, string> };
    assert.equal(data.url, '/api/orders?page=1');
    assert.equal(data.headers['x-auth-subject'], 'app');
    assert.equal(ok.acao, null, 'Access-Control-* headers are not exposed to the page itself');
    // The Authorization header made the browser ask first; the gateway answered it.
    const reasons = logs.map((l) => JSON.parse(l) as { msg: string; reason: string }).filter((l) => l.msg === 'access').map((l) => l.reason);
    assert.deepEqual(reasons, ['cors_preflight', 'ok']);
    assert.deepEqual(up.requests.map((r) => r.method), ['GET']);

    const missing = await pageFetch(page, `${gw.url}/api/orders`);
    assert.equal(missing.status, 401, JSON.stringify(missing));
    assert.equal(missing.www, 'Bearer realm="tokengate"');
    assert.deepEqual(missing.body, { error: 'missing_token', error_description: 'An access token is required' });

    const expired = await pageFetch(page, `${gw.url}/api/orders`, { authorization: `Bearer ${token.slice(0, -8)}AAAAAAAA` });
    assert.equal(expired.status, 401, JSON.stringify(expired));
    assert.equal(expired.www, 'Bearer realm="tokengate", error="invalid_token", error_description="The token signature is invalid"');
    assert.equal((expired.body as { error: string }).error, 'invalid_token');

    const forbidden = await pageFetch(page, `${gw.url}/admin/users`, { authorization: `Bearer ${noScopeToken}` });
    assert.equal(forbidden.status, 403, JSON.stringify(forbidden));
    assert.equal(forbidden.www, 'Bearer realm="tokengate", error="insufficient_scope", error_description="The access token lacks a required scope", scope="admin"');
    assert.equal((forbidden.body as { error: string }).error, 'insufficient_scope');
  } finally {
    await page.close();
  }
});

test('a page on another origin is blocked by the browser, and its credentialed call never reaches the upstream', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const page = await pageAt(otherOrigin);
  try {
    up.reset();
    const r = await pageFetch(page, `${gw.url}/api/orders`, { authorization: `Bearer ${token}` });
    assert.match(r.error ?? '', /^TypeError: Failed to fetch/, JSON.stringify(r));
    assert.equal(up.requests.length, 0, 'the refused preflight must stop the real call');
    // A simple request (no preflight) is sent, but the page cannot read the answer.
    const simple = await pageFetch(page, `${gw.url}/api/orders`);
    assert.match(simple.error ?? '', /^TypeError: Failed to fetch/, JSON.stringify(simple));
  } finally {
    await page.close();
  }
});

test('a route without cors: even the allowed page is blocked (the gateway adds nothing)', async (t) => {
  if (skipReason) return t.skip(skipReason);
  const page = await pageAt(allowedOrigin);
  try {
    const r = await pageFetch(page, `${gw.url}/plain/x`, { authorization: `Bearer ${token}` });
    assert.match(r.error ?? '', /^TypeError: Failed to fetch/, JSON.stringify(r));
  } finally {
    await page.close();
  }
});
