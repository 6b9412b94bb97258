/**
 * The front-proxy snippets that `tokengate snippet` prints, run as printed (only the
 * listen address, tokengate's address and the upstream are filled in) in a REAL nginx
 * (Debian's, with its headers-more module) and a REAL Caddy (Debian's 2.6), each in front
 * of the decision listener and the echo upstream. A client forges identity headers in
 * every spelling, forwarded-request headers and ambiguous paths; the upstream must see
 * exactly what tokengate answered and nothing the client wrote in the identity namespace,
 * and never a refused request. Each proxy's tests are skipped, with a message, when its
 * binary (or nginx's module) is missing; `.ci/run` installs them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { issuerYaml } from '../helpers/fixture.js';
import { canonicalHeader, type CompiledConfig } from '../../src/config/compile.js';
import { frontProxySnippet, type SnippetKind } from '../../src/snippet.js';
import { findBinary, HEADERS_MORE_MODULE, nginxConf, startNginx, startProxy, type ProxyProcess } from '../helpers/proxy-process.js';

const NGINX = findBinary('nginx', ['/usr/sbin/nginx', '/usr/local/sbin/nginx']);
const HEADERS_MORE = HEADERS_MORE_MODULE;
const CADDY = findBinary('caddy', ['/usr/bin/caddy', '/usr/local/bin/caddy']);
const SKIP: Record<'nginx' | 'caddy', string | false> = {
  nginx: !NGINX ? 'nginx is not installed (apt-get install nginx-light libnginx-mod-http-headers-more-filter); skipping'
    : !HEADERS_MORE ? 'the nginx headers-more module is not installed (apt-get install libnginx-mod-http-headers-more-filter); skipping' : false,
  caddy: CADDY ? false : 'caddy is not installed (apt-get install caddy); skipping',
};

let iss: MockIssuer; let up: EchoUpstream; let gw: TestGateway;
const running: ProxyProcess[] = [];

before(async () => {
  iss = await startMockIssuer({ algs: ['ES256'] });
  up = await startUpstream();
  // Two of the four identity headers come from claims the default token lacks; x-tenant is outside the prefix.
  const identity = 'x-auth-subject: sub, x-auth-scopes: scope, x-auth-groups: groups, x-tenant: tenant';
  gw = await startGateway(`decision: { trustedProxies: [127.0.0.1/32] }
${issuerYaml(iss)}routes:
  - { id: pub, match: { pathPrefix: /pub }, upstream: ${up.url}, auth: { mode: none } }
  - { id: orders, match: { pathPrefix: /orders }, upstream: ${up.url}, auth: { mode: jwt, scopes: { allOf: [orders:read] } }, forward: { headers: { ${identity} } } }
`);
  await gw.ready();
});

after(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await gw?.close(); await up?.close(); await iss?.close();
});

/** The snippet for the running gateway: its real decision port, the echo upstream. */
function snippet(kind: SnippetKind): string {
  const config = gw.gw.config;
  const port = Number(new URL(gw.decisionUrl!).port);
  const withPort: CompiledConfig = { ...config, decision: { ...config.decision!, port } };
  return frontProxySnippet(withPort, kind, { tokengateHost: '127.0.0.1', upstream: up.url });
}

async function startNginxSnippet(): Promise<string> {
  const port = await freePort();
  const block = snippet('nginx').replace('server {', `server {\n  listen 127.0.0.1:${port};`);
  running.push(await startNginx(NGINX!, port, (dir) => nginxConf(dir, block, `load_module ${HEADERS_MORE};`)));
  return `http://127.0.0.1:${port}`;
}

async function startCaddy(): Promise<string> {
  const port = await freePort();
  const caddyfile = `{\n  admin off\n  auto_https off\n}\nhttp://127.0.0.1:${port} {\n${snippet('caddy')}}\n`;
  running.push(await startProxy('caddy', port, CADDY!, () => ({ Caddyfile: caddyfile }),
    (dir) => ['run', '--config', join(dir, 'Caddyfile'), '--adapter', 'caddyfile'],
    // Caddy keeps its autosave and data under HOME / XDG dirs: the temp dir, not the user's.
    (dir) => ({ HOME: dir, XDG_CONFIG_HOME: join(dir, 'config'), XDG_DATA_HOME: join(dir, 'data') })));
  return `http://127.0.0.1:${port}`;
}

/** A client's identity headers in every spelling: the prefix, a route's name outside it, `_` and mixed separators, any case. */
const FORGED: Record<string, string> = {
  'X-Auth-Subject': 'forged', 'X-Auth-Role': 'admin', 'x_auth_role': 'admin', 'X_Auth_Groups': 'admins',
  'X-Auth_Groups': 'admins', 'x-AUTH-scopes': 'admin', 'X-Tenant': 'forged', 'x_tenant': 'forged', 'X-Auth-Claims': 'e30',
};

/** Identity-namespace headers the upstream received (canonical name → value). */
function namespaceSeen(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    const c = canonicalHeader(k);
    if (c.startsWith('x-auth-') || c === 'x-tenant') out[c] = String(v);
  }
  return out;
}

for (const [kind, start] of [['nginx', startNginxSnippet], ['caddy', startCaddy]] as const) {
  describe(`${kind} with the \`tokengate snippet ${kind}\` output`, { skip: SKIP[kind] }, () => {
    let base = '';
    before(async () => { base = await start(); });

    test('valid token: the upstream gets exactly the answered identity, no forged header in any spelling, no token', async () => {
      up.reset();
      const token = await iss.sign({});
      const r = await fetch(base + '/orders/1?q=a', { headers: { authorization: `Bearer ${token}`, ...FORGED } });
      assert.equal(r.status, 200, await r.text());
      assert.equal(up.requests.length, 1);
      const seen = up.requests[0];
      assert.equal(seen.url, '/orders/1?q=a');
      // groups and tenant are not in the token: tokengate answers no such header, and none may arrive
      // (Caddy's copy_headers shortcut would send the literal `{http.reverse_proxy.header.X-Auth-Groups}`).
      assert.deepEqual(namespaceSeen(seen.headers), { 'x-auth-subject': 'user-1', 'x-auth-scopes': 'orders:read' });
      assert.equal(seen.headers.authorization, undefined, 'the token stays at the front proxy');
      for (const v of Object.values(seen.headers)) assert.ok(!String(v).includes('{http.'), `no placeholder text reaches the upstream: ${String(v)}`);

      up.reset();
      const withClaims = await iss.sign({ claims: { tenant: 'acme', groups: ['a', 'b'] } });
      const r2 = await fetch(base + '/orders/2', { headers: { authorization: `Bearer ${withClaims}`, ...FORGED } });
      assert.equal(r2.status, 200);
      assert.deepEqual(namespaceSeen(up.requests[0].headers), { 'x-auth-subject': 'user-1', 'x-auth-scopes': 'orders:read', 'x-auth-groups': 'a,b', 'x-tenant': 'acme' });
    });

    test('open route: passes without a token, and the namespace is still cleared', async () => {
      up.reset();
      const r = await fetch(base + '/pub/x', { headers: FORGED });
      assert.equal(r.status, 200);
      assert.deepEqual(namespaceSeen(up.requests[0].headers), {});
    });

    test('refused: 401 and 403 with tokengate\'s challenge; nothing reaches the upstream', async () => {
      up.reset();
      let r = await fetch(base + '/orders/1', { headers: FORGED });
      assert.equal(r.status, 401);
      assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="tokengate"');
      r = await fetch(base + '/orders/1', { headers: { authorization: 'Bearer ' + await iss.sign({ claims: { scope: 'other' } }), ...FORGED } });
      assert.equal(r.status, 403);
      assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="tokengate", error="insufficient_scope", error_description="The access token lacks a required scope", scope="orders:read"');
      r = await fetch(base + '/orders/1', { headers: { authorization: 'Bearer ' + await iss.sign({ claims: { exp: Math.floor(Date.now() / 1000) - 600 } }) } });
      assert.equal(r.status, 401);
      assert.match(String(r.headers.get('www-authenticate')), /error="invalid_token"/);
      assert.equal(up.requests.length, 0);
    });

    test('path tricks and forged forwarded headers change nothing', async () => {
      up.reset();
      const tricks: Array<[string, Record<string, string>]> = [
        ['/pub/%2e%2e/orders/1', {}],
        ['/pub/..%2forders/1', {}],
        ['/pub/a%2Fb', {}],
        ['/orders/1', { 'x-forwarded-uri': '/pub/x', 'x-forwarded-method': 'GET' }],
        ['/orders/1', { 'x-original-uri': '/pub/x', 'x-original-method': 'GET' }],
      ];
      for (const [path, headers] of tricks) {
        const r = await fetch(base + path, { headers });
        await r.text();
        assert.ok(r.status >= 400, `${path} ${JSON.stringify(headers)}: refused (got ${r.status})`);
      }
      assert.equal(up.requests.length, 0, `a refused request reached the upstream: ${JSON.stringify(up.requests.map((q) => q.url))}`);
    });
  });
}
