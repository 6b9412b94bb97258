/**
 * `tokengate explain` through the CLI (issue 6 §6): route, normalized path, each check
 * and the final decision with status and challenge — and the same decision the running
 * proxy makes for the same request (it runs the proxy's decide() with the real
 * verifiers, fetching the JWKS itself). The token is never printed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as net from 'node:net';
import { join } from 'node:path';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startMockIntrospection } from '../helpers/mock-introspection.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawExchange } from '../helpers/raw-http.js';
import { loadCompiled } from '../../src/config/index.js';
import { explain as explainInProcess, resolveToken } from '../../src/explain.js';

let iss: MockIssuer;
let up: EchoUpstream;
let gw: TestGateway;
let file: string;
let yaml: string;

before(async () => {
  iss = await startMockIssuer();
  up = await startUpstream();
  yaml = `
issuers:
  - id: corp
    issuer: ${iss.issuer}
    jwksUri: ${iss.jwksUri}
    audiences: [api]
routes:
  - id: admin
    match: { host: admin.test, path: /admin }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [admin] } }
  - id: orders
    match: { pathPrefix: /orders, methods: [GET] }
    upstream: ${up.url}/base
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-subject: sub } }
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
`;
  file = join(mkdtempSync(join(tmpdir(), 'tokengate-explain-')), 'gateway.yaml');
  writeFileSync(file, yaml);
  gw = await startGateway(yaml);
  await gw.ready();
});
after(async () => {
  await gw?.close();
  await up?.close();
  await iss?.close();
});

interface Run { code: number; out: string; err: string }

function explain(args: string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv; config?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'explain', '--config', opts.config ?? file, ...args],
      { cwd: process.cwd(), timeout: 60_000, env: { ...process.env, ...opts.env } }, (e, out, err) => {
        resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, out, err });
      });
    child.stdin?.end(opts.stdin ?? '');
  });
}

/** What the running proxy answers for the same request (raw socket: fetch would normalize the path). */
async function proxyStatus(method: string, path: string, headers: Record<string, string>): Promise<number> {
  const lines = [`${method} ${path} HTTP/1.1`, `Host: ${headers.host ?? '127.0.0.1'}`,
    ...Object.entries(headers).filter(([k]) => k !== 'host').map(([k, v]) => `${k}: ${v}`), 'Content-Length: 0', 'Connection: close', '', ''];
  const ex = await rawExchange(Number(new URL(gw.url).port), [lines.join('\r\n')]);
  return ex.responses[0]?.status ?? 0;
}

test('explain (the function the CLI calls) matches the proxy, case by case, and never prints the token', async () => {
  const now = Math.floor(Date.now() / 1000);
  const valid = await iss.sign();
  const noScope = await iss.sign({ claims: { scope: 'other' } });
  const expired = await iss.sign({ claims: { iat: now - 600, exp: now - 300 } });
  const fetchesBefore = iss.jwksFetches;
  const cases: Array<{ name: string; args: string[]; method: string; path: string; headers: Record<string, string>; status: number; expect: RegExp[] }> = [
    {
      name: 'allowed', method: 'GET', path: '/orders/./a/../1?x=1', headers: { authorization: `Bearer ${valid}` }, status: 200,
      args: ['--method', 'GET', '--url', 'http://api.test/orders/./a/../1?x=1', '--token', valid],
      expect: [/^ {2}ok {5}path: normalized to \/orders\/1$/m, /^ {2}ok {5}route: route orders \(auth\.mode jwt\)/m, /^ {2}ok {5}verify: jwt from issuer corp, sub user-1$/m,
        /^ {2}ok {5}authorize: scopes and claims satisfied$/m, new RegExp(`^decision: allow -> GET ${up.url}/base/orders/1\\?x=1$`, 'm'), /^ {2}x-auth-subject: user-1$/m,
        /^ {2}Authorization: stripped$/m],
    },
    {
      name: 'missing scope', method: 'GET', path: '/orders/1', headers: { authorization: `Bearer ${noScope}` }, status: 403,
      args: ['--url', '/orders/1', '--token', noScope],
      expect: [/^ {2}FAILED authorize: The access token lacks a required scope$/m, /^decision: deny 403 \(reason scope\)$/m,
        /^ {2}WWW-Authenticate: Bearer realm="tokengate", error="insufficient_scope", error_description="The access token lacks a required scope", scope="orders:read"$/m,
        /^ {2}body: \{"error":"insufficient_scope","error_description":"The access token lacks a required scope"\}$/m],
    },
    {
      name: 'expired', method: 'GET', path: '/orders/1', headers: { authorization: `Bearer ${expired}` }, status: 401,
      args: ['--method', 'get', '--url', '/orders/1', '--token', expired],
      expect: [/^ {2}FAILED verify: The access token expired$/m, /^decision: deny 401 \(reason expired\)$/m,
        /^ {2}WWW-Authenticate: Bearer realm="tokengate", error="invalid_token", error_description="The access token expired"$/m],
    },
    {
      name: 'no token', method: 'GET', path: '/orders/1', headers: {}, status: 401,
      args: ['--url', '/orders/1'],
      expect: [/^ {2}FAILED credential: no bearer token in the Authorization header$/m, /^decision: deny 401 \(reason missing_token\)$/m, /^ {2}WWW-Authenticate: Bearer realm="tokengate"$/m],
    },
    {
      name: 'no route', method: 'POST', path: '/orders/1', headers: {}, status: 404,
      args: ['--method', 'POST', '--url', 'http://api.test/orders/1', '--header', 'X-Test: 1'],
      expect: [/^ {2}FAILED route: no route matches method, host and path$/m, /^ {4}admin: host is api\.test, route wants admin\.test; path is not exactly \/admin$/m,
        /^ {4}orders: method POST not in \[GET\]$/m, /^ {4}pub: path is not under \/pub$/m, /^decision: deny 404 \(reason no_route\)$/m],
    },
    {
      name: 'bad path', method: 'GET', path: '/pub/%2e%2e/%2e%2e/etc', headers: {}, status: 400,
      args: ['--url', '/pub/%2e%2e/%2e%2e/etc'],
      expect: [/^ {2}FAILED path: refused/m, /^decision: deny 400 \(reason bad_path\)$/m],
    },
    {
      name: 'two tokens', method: 'GET', path: '/orders/1', headers: { authorization: `Bearer ${valid}` }, status: 400,
      args: ['--url', '/orders/1?access_token=' + valid, '--token', valid],
      expect: [/^ {2}FAILED credential: More than one access token was sent$/m, /^decision: deny 400 \(reason multiple_credentials\)$/m, /access_token=\[redacted\]/],
    },
  ];
  const config = loadCompiled(file);
  for (const c of cases) {
    const opt = (name: string) => { const i = c.args.indexOf(name); return i === -1 ? undefined : c.args[i + 1]; };
    const extra = c.args.flatMap((a, i) => (c.args[i - 1] === '--header' ? [a] : []));
    const result = await explainInProcess(config, { method: opt('--method') ?? 'GET', url: opt('--url') as string, token: opt('--token'), headers: extra });
    const run = { out: result.lines.join('\n') + '\n' };
    assert.equal(result.status, c.status, `${c.name}:\n${run.out}`);
    assert.equal(result.allowed, c.status === 200);
    for (const re of c.expect) assert.match(run.out, re, `${c.name}:\n${run.out}`);
    for (const t of [valid, noScope, expired]) assert.ok(!run.out.includes(t), `${c.name}: the token was printed`);
    const path = c.name === 'two tokens' ? `${c.path}?access_token=${valid}` : c.path;
    const headers = c.name === 'no route' ? { ...c.headers, host: 'api.test' } : c.headers;
    assert.equal(await proxyStatus(c.method, path, headers), c.status, `${c.name}: the proxy decides differently`);
  }
  assert.ok(iss.jwksFetches > fetchesBefore, 'explain fetched the JWKS itself (real verifiers)');
});

test('the CLI: allow exits 0, deny exits 1, usage exits 2; the token is not printed', async () => {
  const valid = await iss.sign();
  const fetchesBefore = iss.jwksFetches;
  const [allow, deny, usage] = await Promise.all([
    explain(['--method', 'GET', '--url', 'http://api.test/orders/1', '--token', valid]),
    explain(['-X', 'DELETE', '--url', '/orders/1', '-H', 'Host: admin.test']),
    explain(['--method', 'GET']),
  ]);
  assert.equal(allow.code, 0, allow.out + allow.err);
  assert.match(allow.out, new RegExp(`^decision: allow -> GET ${up.url}/base/orders/1$`, 'm'));
  assert.match(allow.out, /^ {2}x-auth-subject: user-1$/m);
  assert.ok(!allow.out.includes(valid) && !allow.err.includes(valid), 'the token was printed');
  assert.ok(iss.jwksFetches > fetchesBefore, 'the CLI fetched the JWKS (real verifiers)');
  assert.equal(deny.code, 1, deny.out + deny.err);
  assert.match(deny.out, /^ {4}admin: path is not exactly \/admin$/m);
  assert.match(deny.out, /^decision: deny 404 \(reason no_route\)$/m);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /--url URL are required/);
});

test('the CLI reads the token from standard input (--token -) or an environment variable (--token-env), never from argv', async () => {
  const valid = await iss.sign();
  const [stdin, env, noEnv, emptyStdin] = await Promise.all([
    explain(['--url', 'http://api.test/orders/1', '--token', '-'], { stdin: `${valid}\n` }),
    explain(['--url', 'http://api.test/orders/1', '--token-env', 'MY_TOKEN'], { env: { MY_TOKEN: valid } }),
    explain(['--url', '/orders/1', '--token-env', 'TOKENGATE_TEST_UNSET_VAR']),
    explain(['--url', '/orders/1', '--token', '-'], { stdin: '' }),
  ]);
  for (const [name, run] of [['stdin', stdin], ['env', env]] as const) {
    assert.equal(run.code, 0, `${name}: ${run.out}${run.err}`);
    assert.match(run.out, new RegExp(`^request: GET /orders/1 \\(host api\\.test\\) with a bearer token of ${valid.length} bytes$`, 'm'), name);
    assert.match(run.out, /^ {2}ok {5}verify: jwt from issuer corp, sub user-1$/m, name);
    assert.ok(!run.out.includes(valid) && !run.err.includes(valid), `${name}: the token was printed`);
  }
  assert.equal(noEnv.code, 2);
  assert.match(noEnv.err, /TOKENGATE_TEST_UNSET_VAR is not set or empty/);
  assert.equal(emptyStdin.code, 2);
  assert.match(emptyStdin.err, /standard input is empty/);
});

test('resolveToken: one source at a time; stdin is trimmed', async () => {
  const stdin = (text: string) => ({ stdin: [Buffer.from(text)], env: {} });
  assert.equal(await resolveToken({ token: '-' }, stdin(' abc.def.ghi \r\n')), 'abc.def.ghi');
  assert.equal(await resolveToken({ token: 'literal' }, stdin('ignored')), 'literal');
  assert.equal(await resolveToken({}, stdin('ignored')), undefined, 'no token unless asked for');
  assert.equal(await resolveToken({ tokenEnv: 'T' }, { stdin: [], env: { T: 'from-env' } }), 'from-env');
  await assert.rejects(resolveToken({ token: 'a', tokenEnv: 'T' }, { stdin: [], env: { T: 'b' } }), /not both/);
});

test('a token from an issuer the route does not accept: explain shows its (unverified) iss and the accepted ones', async () => {
  const foreign = await iss.sign({ claims: { iss: 'https://evil.test/realm' } });
  const result = await explainInProcess(loadCompiled(file), { method: 'GET', url: '/orders/1', token: foreign });
  const out = result.lines.join('\n');
  assert.equal(result.status, 401, out);
  assert.match(out, /^decision: deny 401 \(reason issuer\)$/m);
  assert.match(out, new RegExp(`^ {2}the token's iss \\(unverified\\) is "https://evil\\.test/realm"; this route accepts "${iss.issuer.replace(/[.]/g, '\\.')}"$`, 'm'));
  assert.ok(!out.includes(foreign));
});

test('keys that cannot be fetched: explain says why the IdP could not be used', async () => {
  // A port nobody listens on: bind, read the port, close.
  const tmp = net.createServer();
  await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
  const port = (tmp.address() as net.AddressInfo).port;
  await new Promise<void>((r) => tmp.close(() => r()));
  const down = join(mkdtempSync(join(tmpdir(), 'tokengate-explain-')), 'gateway.yaml');
  writeFileSync(down, `
issuers:
  - { id: corp, issuer: "${iss.issuer}", jwksUri: "http://127.0.0.1:${port}/jwks", audiences: [api] }
routes:
  - { id: orders, match: { pathPrefix: /orders }, upstream: ${up.url}, auth: { mode: jwt } }
`);
  const run = await explain(['--url', '/orders/1', '--token', '-'], { stdin: await iss.sign(), config: down });
  assert.equal(run.code, 1, run.out + run.err);
  assert.match(run.out, /^decision: deny 503 \(reason jwks_unavailable\)$/m);
  assert.match(run.out, /^ {2}the IdP could not be used:\n {4}corp: JWKS fetch failed: connection failed \(ECONNREFUSED\)$/m);
});

test('an introspection endpoint that fails: explain gives the kind of failure, never the token or the client secret', async () => {
  const intro = await startMockIntrospection();
  intro.answer = () => ({ status: 500, body: { error: 'server_error' } });
  try {
    const cfgFile = join(mkdtempSync(join(tmpdir(), 'tokengate-explain-')), 'gateway.yaml');
    writeFileSync(cfgFile, `
issuers:
  - id: opaque
    issuer: https://opaque.example
    introspection: { endpoint: "${intro.endpoint}", clientId: gw, clientSecret: "s3cret-value" }
routes:
  - { id: legacy, match: { pathPrefix: /legacy }, upstream: ${up.url}, auth: { mode: introspection } }
`);
    const token = 'opaque-token-value-0123456789';
    const result = await explainInProcess(loadCompiled(cfgFile), { method: 'GET', url: '/legacy/1', token });
    const out = result.lines.join('\n');
    assert.equal(result.status, 503, out);
    assert.match(out, /^decision: deny 503 \(reason introspection_unavailable\)$/m);
    assert.match(out, /^ {2}the IdP could not be used:\n {4}opaque: introspection failed: status, HTTP 500$/m);
    assert.ok(!out.includes(token) && !out.includes('s3cret-value'), 'neither the token nor the secret is printed');
    assert.equal(intro.requests.length, 1, 'explain called the endpoint itself');
  } finally {
    await intro.close();
  }
});
