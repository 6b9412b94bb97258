/**
 * The `tokengate` command as users run it: `check` (exit 0 with the route list, exit 1
 * with every error line), the installed bin on the built dist (`--config` and
 * `TOKENGATE_CONFIG`, SIGTERM → exit 0), and `npm run dev` (curl lines that do what they say).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { PROTO_FILES, PROTO_OPTIONS } from '../../src/server/ext-authz-proto.js';
import { loadCompiled } from '../../src/config/index.js';
import { frontProxySnippet } from '../../src/snippet.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'tokengate-cli-'));
let up: EchoUpstream;
before(async () => {
  // The bin runs the built dist (npm ci builds it through `prepare`); rebuild when src is newer.
  if (distIsStale()) {
    const b = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    assert.equal(b.status, 0, b.stderr + b.stdout);
  }
  up = await startUpstream();
});
after(() => up?.close());

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** Runs the installed bin (`npx tokengate ...`) and waits for it. */
function cli(args: string[], env: NodeJS.ProcessEnv = process.env) {
  return spawnSync(process.execPath, [join(ROOT, 'bin/tokengate.js'), ...args], { cwd: dir, env, encoding: 'utf8', timeout: 30_000 });
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitFor(url: string, status: number, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url);
      await r.text();
      if (r.status === status) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`${url} did not answer ${status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function exited(child: ChildProcess, ms = 15_000): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('did not exit')); }, ms);
    child.once('exit', (code) => { clearTimeout(t); resolve(code); });
  });
}

function distIsStale(): boolean {
  let newest = 0;
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) newest = Math.max(newest, st.mtimeMs);
    }
  };
  walk(join(ROOT, 'src'));
  try {
    return statSync(join(ROOT, 'dist/cli.js')).mtimeMs < newest;
  } catch {
    return true;
  }
}

describe('tokengate command', { concurrency: true }, () => {
  test('check: a valid config exits 0 and prints the effective routes in match order', () => {
    const f = file('ok.yaml', `issuers:
  - { id: corp, issuer: https://idp.test, jwksUri: https://idp.test/jwks, audiences: [api] }
routes:
  - { id: health, match: { path: /health, methods: [GET] }, upstream: http://u:1, auth: { mode: none } }
  - id: orders
    match: { host: api.test, pathPrefix: /orders }
    upstream: http://u:2/base
    stripPrefix: true
    auth: { mode: jwt, scopes: { allOf: [orders:read] }, claims: { tenant: acme } }
`);
    const r = cli(['check', '--config', f]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [
      `${f}: OK, 2 route(s), first match wins:`,
      '  1. health: path=/health methods=GET auth=none -> http://u:1',
      '  2. orders: host=api.test pathPrefix=/orders auth=jwt issuers=corp scopes.allOf=orders:read claims=tenant=acme -> http://u:2/base (stripPrefix)',
    ]);
    assert.equal(r.stderr, '', 'no warning: the issuer lists audiences');
    const loose = cli(['check', '--config', file('loose.yaml', `issuers:
  - { id: corp, issuer: https://idp.test, jwksUri: https://idp.test/jwks }
routes:
  - { id: any-aud, match: { pathPrefix: / }, upstream: http://u, auth: { mode: jwt } }
`)]);
    assert.equal(loose.status, 0);
    assert.match(loose.stderr, /loose\.yaml:2 issuers\[0\] warning: has no audiences and route\(s\) any-aud set none/);
  });

  test('check: an invalid config exits 1 with every error as file:line key.path why', () => {
    const f = file('bad.yaml', `server:
  port: \${NOPE_PORT}
  typo: 1
issuers:
  - { id: corp, issuer: https://idp.test, jwksUri: https://idp.test/jwks }
routes:
  - id: r
    match: { pathPrefix: /r }
    upstream: http://u
    auth: { mode: jwt, issuers: [other] }
`);
    const env = { ...process.env };
    delete env.NOPE_PORT;
    const r2 = cli(['check', '--config', f], env);
    assert.equal(r2.status, 1);
    assert.equal(r2.stdout, '');
    assert.deepEqual(r2.stderr.trim().split('\n'), [
      `${f}:2 server.port environment variable NOPE_PORT is not set and has no default`,
      `${f}:3 server.typo is not a known key`,
      `${f}:10 routes[0].auth.issuers[0] names issuer "other", which is not defined under issuers`,
      `${f}:10 routes[0].auth.mode jwt needs at least one issuer`,
      `${f}: 4 error(s)`,
    ]);
    const none = cli(['check']);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /--config FILE is required/);
  });

  test('the installed bin (built dist) runs with --config and with TOKENGATE_CONFIG; SIGTERM exits 0', async () => {
    for (const how of ['flag', 'env'] as const) {
      const [port, adminPort] = [await freePort(), await freePort()];
      const f = file(`run-${how}.yaml`, `server: { host: 127.0.0.1, port: ${port}, shutdownGraceSec: 2, logLevel: warn }
admin: { host: 127.0.0.1, port: ${adminPort} }
routes:
  - { id: open, match: { pathPrefix: / }, upstream: ${up.url}, auth: { mode: none } }
`);
      const child = spawn(process.execPath, [join(ROOT, 'bin/tokengate.js'), ...(how === 'flag' ? ['--config', f] : [])], {
        cwd: dir, env: { ...process.env, ...(how === 'env' ? { TOKENGATE_CONFIG: f } : {}) }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      child.stderr?.on('data', (c: Buffer) => { err += c.toString(); });
      child.stdout?.resume();
      try {
        await waitFor(`http://127.0.0.1:${adminPort}/readyz`, 200);
        const r = await fetch(`http://127.0.0.1:${port}/via-${how}?q=1`);
        assert.equal(r.status, 200, err);
        await r.text();
        assert.equal(up.requests.at(-1)?.url, `/via-${how}?q=1`);
      } finally {
        child.kill('SIGTERM');
      }
      assert.equal(await exited(child), 0, `exit code (${how}); stderr: ${err}`);
    }
  });

  test('snippet: prints the front-proxy setup for the config; unknown proxy exit 2; a config without its listener exit 1', () => {
    const example = join(ROOT, 'config/front-proxy.yaml');
    const ok = cli(['snippet', 'caddy', '--config', example]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout, frontProxySnippet(loadCompiled(example), 'caddy'));
    assert.equal(cli(['snippet', 'haproxy', '--config', example]).status, 2);
    const bare = cli(['snippet', 'nginx', '--config', file('bare.yaml', 'routes: [{ id: r, match: { pathPrefix: / }, upstream: http://u, auth: { mode: none } }]\n')]);
    assert.equal(bare.status, 1);
    assert.match(bare.stderr, /add a `decision:` block/);
  });

  test('the installed bin serves extAuthz (its protos found beside dist/): grpc.health.v1 SERVING', async () => {
    const [port, adminPort, grpcPort] = [await freePort(), await freePort(), await freePort()];
    const f = file('ext-authz.yaml', `server: { host: 127.0.0.1, port: ${port}, shutdownGraceSec: 1, logLevel: warn }
admin: { host: 127.0.0.1, port: ${adminPort} }
extAuthz: { host: 127.0.0.1, port: ${grpcPort} }
routes: [{ id: open, match: { pathPrefix: / }, upstream: ${up.url}, auth: { mode: none } }]
`);
    const child = spawn(process.execPath, [join(ROOT, 'bin/tokengate.js'), '--config', f], { cwd: dir, stdio: 'ignore' });
    const pkg = grpc.loadPackageDefinition(loadSync(PROTO_FILES, PROTO_OPTIONS)) as unknown as { grpc: { health: { v1: { Health: typeof grpc.Client } } } };
    const health = new pkg.grpc.health.v1.Health(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as grpc.Client & {
      Check(req: { service: string }, cb: (e: grpc.ServiceError | null, r: { status: number }) => void): void;
    };
    try {
      await waitFor(`http://127.0.0.1:${adminPort}/readyz`, 200, 60_000);
      const answer = await new Promise((resolve, reject) => health.Check({ service: '' }, (e, r) => (e ? reject(e) : resolve(r))));
      assert.deepEqual(answer, { status: 1 });
    } finally {
      health.close();
      child.kill('SIGTERM');
    }
    assert.equal(await exited(child), 0);
  });

  test('npm run dev with its port taken: exits 1 at once with a message naming the port', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'dev'], {
        cwd: ROOT, env: { ...process.env, PORT: String(port), ADMIN_PORT: String(await freePort()) }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      child.stderr?.on('data', (c: Buffer) => { err += c.toString(); });
      child.stdout?.resume();
      assert.equal(await exited(child, 20_000), 1, `it exits by itself, non-zero: ${err}`);
      assert.match(err, new RegExp(`tokengate dev: port ${port} on 127\\.0\\.0\\.1 is already in use .*set PORT`));
      assert.doesNotMatch(err, /curl -i/, 'no curl lines for a gateway that is not running');
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });

  test('npm run dev: prints curl lines whose outcomes are 200 / 403 / 401; SIGTERM exits 0', async () => {
    const [port, adminPort] = [await freePort(), await freePort()];
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'dev'], {
      cwd: ROOT, env: { ...process.env, PORT: String(port), ADMIN_PORT: String(adminPort) }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stderr?.on('data', (c: Buffer) => { out += c.toString(); });
    child.stdout?.resume();
    try {
      const until = Date.now() + 25_000;
      while (!out.includes('# metrics:') && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      const curls = out.split('\n').filter((l) => l.startsWith('curl -i '));
      assert.ok(curls.length >= 4, out);
      const run = async (line: string) => {
        const url = /curl -i (?:-X (\w+) )?(\S+)/.exec(line)!;
        const auth = /-H 'Authorization: ([^']+)'/.exec(line)?.[1];
        const r = await fetch(url[2], { method: url[1] ?? 'GET', headers: auth ? { authorization: auth } : {} });
        await r.text();
        return { status: r.status, www: r.headers.get('www-authenticate') };
      };
      const results = [];
      for (const line of curls) results.push(await run(line));
      assert.equal(curls[0].includes(`127.0.0.1:${port}/`), true, 'uses the PORT given');
      assert.deepEqual(results.map((r) => r.status), [200, 403, 403, 401, 200]);
      assert.equal(results[3].www, 'Bearer realm="tokengate"');
      assert.match(results[1].www ?? '', /error="insufficient_scope".*scope="orders:read"/);
      await waitFor(`http://127.0.0.1:${adminPort}/readyz`, 200);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited(child), 0, out);
  });
});
