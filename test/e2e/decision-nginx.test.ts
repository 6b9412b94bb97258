/**
 * The decision listener behind a REAL nginx (`auth_request`) in front of the echo
 * upstream, wired with the README's own nginx block and ingress-nginx ConfigMap (read from
 * README.md, so the documentation is what is tested). nginx passes every client header on
 * to the auth subrequest, so the setups must replace each header the listener reads: a
 * client's forged `X-Forwarded-*` / `X-Original-*` must not change what is judged.
 * nginx runs as a child process on loopback with a generated config in a temp dir.
 * Skipped, with a message, only when no nginx binary or no headers-more module (the README
 * block clears the identity prefix with it) is installed (`.ci/run` installs Debian's
 * nginx-light and libnginx-mod-http-headers-more-filter).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { issuerYaml } from '../helpers/fixture.js';
import { parse as parseYaml } from 'yaml';
import { findBinary, HEADERS_MORE_MODULE, nginxConf as nginxHttpConf, startNginx, type ProxyProcess } from '../helpers/proxy-process.js';

const NGINX = findBinary('nginx', ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']);
const skip = !NGINX ? 'nginx is not installed (apt-get install nginx-light); skipping the auth_request end-to-end test'
  : !HEADERS_MORE_MODULE ? 'the nginx headers-more module the README block uses is not installed (apt-get install libnginx-mod-http-headers-more-filter); skipping' : false;

let iss: MockIssuer; let up: EchoUpstream; let gw: TestGateway;
let nginx: ProxyProcess | null = null; let base = ''; let ingressBase = '';

/** The first fenced block of language `lang` after `marker` in README.md. */
function readmeBlock(marker: string, lang: string): string {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const at = readme.indexOf(marker);
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(readme.slice(at));
  assert.ok(at !== -1 && m, `README has a ${lang} block after ${marker}`);
  return m[1];
}

/**
 * nginx.conf with two servers: the README's `auth_request` block as written, and the auth
 * location ingress-nginx's template renders (its fixed headers, then the README's ConfigMap
 * as `proxy_set_header 'Name' 'value';` lines), each in front of the decision listener.
 */
function nginxConf(dir: string, port: number, ingressPort: number, decision: string, upstream: string): string {
  const block = readmeBlock('**nginx** `auth_request`', 'nginx')
    .replace('proxy_pass http://app.internal:3000;', `proxy_pass ${upstream};`)
    .replace(/proxy_pass http:\/\/tokengate[^;]*:8081\/;/, `proxy_pass ${decision}/;`)
    .replace('server {', `server {\n  listen 127.0.0.1:${port};`);
  assert.ok(block.includes(`proxy_pass ${upstream};`) && block.includes(`proxy_pass ${decision}/;`), 'README block adapted');
  const configMap = parseYaml(readmeBlock('**ingress-nginx**', 'yaml')) as { data: Record<string, string> };
  const configMapLines = Object.entries(configMap.data).map(([k, v]) => `proxy_set_header '${k}' '${v}';`).sort().join('\n      ');
  return nginxHttpConf(dir, `
${block}
  server {
    listen 127.0.0.1:${ingressPort};
    location / {
      auth_request /_external-auth;
      auth_request_set $authHeader0 $upstream_http_x_auth_subject;
      proxy_set_header 'X-Auth-Subject' $authHeader0;
      auth_request_set $authHeader1 $upstream_http_x_auth_scopes;
      proxy_set_header 'X-Auth-Scopes' $authHeader1;
      proxy_pass ${upstream};
    }
    location = /_external-auth {
      internal;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Proto "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Sent-From "nginx-ingress-controller";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
      proxy_pass_request_headers on;
      ${configMapLines}
      proxy_pass ${decision}/;
    }
  }
`, `load_module ${HEADERS_MORE_MODULE};`);
}

before(async () => {
  if (skip) return;
  iss = await startMockIssuer({ algs: ['ES256'] });
  up = await startUpstream();
  gw = await startGateway(`
decision: { trustedProxies: [127.0.0.1/32] }
${issuerYaml(iss)}routes:
  - id: public-host
    match: { host: public.test, pathPrefix: / }
    upstream: ${up.url}
    auth: { mode: none }
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-subject: sub, x-auth-scopes: scope } }
`);
  await gw.ready();
  const port = await freePort();
  const ingressPort = await freePort();
  base = `http://127.0.0.1:${port}`;
  ingressBase = `http://127.0.0.1:${ingressPort}`;
  // As root, nginx's workers switch to `nobody`; they only need the listening socket.
  nginx = await startNginx(NGINX!, ingressPort, (dir) => nginxConf(dir, port, ingressPort, gw.decisionUrl!, up.url));
});

after(async () => {
  await nginx?.stop();
  await gw?.close(); await up?.close(); await iss?.close();
});

test('nginx auth_request → decision listener → echo upstream', { skip }, async () => {
  const token = await iss.sign({});
  up.reset();
  // allowed: the upstream gets the identity from the decision, never the forged one, nor the token
  let r = await fetch(base + '/orders/1?q=a', { headers: { authorization: `Bearer ${token}`, 'x-auth-subject': 'forged' } });
  assert.equal(r.status, 200, await r.text());
  assert.equal(up.requests.length, 1);
  const seen = up.requests[0];
  assert.equal(seen.url, '/orders/1?q=a');
  assert.equal(seen.headers['x-auth-subject'], 'user-1');
  assert.equal(seen.headers['x-auth-scopes'], 'orders:read');
  assert.equal(seen.headers.authorization, undefined);

  // no token: 401 with the RFC 6750 challenge, upstream untouched
  up.reset();
  r = await fetch(base + '/orders/1');
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="tokengate"');
  // a token lacking the scope: 403 insufficient_scope
  r = await fetch(base + '/orders/1', { headers: { authorization: 'Bearer ' + await iss.sign({ claims: { scope: 'x' } }) } });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="tokengate", error="insufficient_scope", error_description="The access token lacks a required scope", scope="orders:read"');
  // an expired token: 401 invalid_token
  r = await fetch(base + '/orders/1', { headers: { authorization: 'Bearer ' + await iss.sign({ claims: { exp: Math.floor(Date.now() / 1000) - 600 } }) } });
  assert.equal(r.status, 401);
  assert.match(String(r.headers.get('www-authenticate')), /error="invalid_token"/);
  // path tricks judged on the raw $request_uri: /pub/../orders needs a token; an encoded slash is refused
  r = await fetch(base + '/pub/%2e%2e/orders/1');
  assert.equal(r.status, 401);
  r = await fetch(base + '/pub/a%2Fb');
  assert.ok(r.status >= 400, `encoded slash refused (nginx turns the decision's 400 into ${r.status})`);
  assert.equal(up.requests.length, 0, 'no denied request reached the upstream');

  // open route passes without a token; nothing forged survives
  r = await fetch(base + '/pub/x', { headers: { 'x-auth-subject': 'forged' } });
  assert.equal(r.status, 200);
  assert.equal(up.requests.at(-1)!.headers['x-auth-subject'], undefined, 'an empty decided value drops the client\'s header');
});

/** A client's attempts to choose what the decision listener judges, on a request for /orders/1 without a token. */
const FORGERIES: Array<[string, Record<string, string>]> = [
  ['X-Forwarded-Uri and -Method naming an open path', { 'x-forwarded-uri': '/pub/x', 'x-forwarded-method': 'GET' }],
  ['X-Forwarded-Uri alone', { 'x-forwarded-uri': '/pub/x' }],
  ['X-Original-URI and -Method naming an open path', { 'x-original-uri': '/pub/x', 'x-original-method': 'GET' }],
  ['X-Forwarded-Host naming an open host route', { 'x-forwarded-host': 'public.test' }],
];

test('control: each forgery, sent straight to the listener by a trusted peer, would be judged as the open request', { skip }, async () => {
  for (const [what, headers] of FORGERIES) {
    const r = await fetch(gw.decisionUrl + '/', { headers: { 'x-original-uri': '/orders/1', 'x-original-method': 'GET', ...headers } });
    assert.equal(r.status, 200, `${what}: the listener believes its trusted peer`);
  }
});

for (const [setup, url] of [['the README nginx block', () => base], ['the README ingress-nginx ConfigMap', () => ingressBase]] as const) {
  test(`${setup}: a client's forged forwarded headers change nothing`, { skip }, async () => {
    up.reset();
    for (const [what, headers] of FORGERIES) {
      const r = await fetch(url() + '/orders/1', { headers });
      await r.text();
      assert.equal(r.status, 401, `${what}: /orders/1 without a token is refused`);
    }
    assert.equal(up.requests.length, 0, `a forged request reached the upstream: ${JSON.stringify(up.requests.map((q) => q.url))}`);
    // The honest request still passes, judged as what it is.
    const r = await fetch(url() + '/orders/1?q=a', { headers: { authorization: `Bearer ${await iss.sign({})}`, 'x-forwarded-uri': '/pub/x' } });
    assert.equal(r.status, 200, await r.text());
    assert.equal(up.requests.length, 1);
    assert.equal(up.requests[0].url, '/orders/1?q=a');
    assert.equal(up.requests[0].headers['x-auth-subject'], 'user-1');
  });
}
