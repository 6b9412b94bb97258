/**
 * `upstreamProtocol: h2` and `server.http2` across protocols, through the real CLI at
 * `workers: 2` (each worker sniffs its own connections and keeps its own sessions):
 * HTTP/1.1 clients reach h2 upstreams and HTTP/2 clients HTTP/1.1 ones; `https://` h2
 * upstreams are verified (ALPN h2, trusted through NODE_EXTRA_CA_CERTS as for HTTP/1.1);
 * an upstream that says GOAWAY or goes away is recovered from; `upstreamConnections`
 * bounds the sessions; `upstreamTimeoutMs` gives 504 (gRPC: UNAVAILABLE).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { generateServerCert } from '../helpers/cert.js';
import { startCliReplica, type CliReplica } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { echoClient, startEchoServer, unary, type EchoServer } from '../helpers/grpc-echo.js';

/** A cleartext HTTP/2 REST upstream that answers with what it saw, and counts its sessions. */
interface H2Rest {
  port: number;
  sessions: number;
  /** Most streams open at once on one session. */
  maxOpen: number;
  server: http2.Http2Server;
  close(): Promise<void>;
}

async function startH2Rest(opts: { port?: number; delayMs?: number; goawayAfterEach?: boolean; silent?: boolean; maxStreams?: number } = {}): Promise<H2Rest> {
  const server = http2.createServer({ settings: { maxConcurrentStreams: opts.maxStreams ?? 100 } });
  const state = { sessions: 0, maxOpen: 0 };
  const open = new Map<http2.Http2Session, number>();
  server.on('session', (s) => { state.sessions++; open.set(s, 0); s.on('close', () => open.delete(s)); });
  server.on('stream', (stream, headers) => {
    if (opts.silent) return; // never answers
    const s = stream.session!;
    open.set(s, (open.get(s) ?? 0) + 1);
    state.maxOpen = Math.max(state.maxOpen, open.get(s)!);
    stream.resume();
    const answer = () => {
      open.set(s, (open.get(s) ?? 1) - 1);
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-upstream': 'h2' });
      stream.end(JSON.stringify({ path: headers[':path'], authority: headers[':authority'], xff: headers['x-forwarded-for'], auth: headers.authorization ?? null, connection: headers.connection ?? null }));
      if (opts.goawayAfterEach) s.close(); // GOAWAY: this session takes no new streams
    };
    if (opts.delayMs) setTimeout(answer, opts.delayMs);
    else answer();
  });
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    get sessions() { return state.sessions; },
    get maxOpen() { return state.maxOpen; },
    server,
    close: () => new Promise<void>((r) => { server.close(() => r()); for (const s of open.keys()) s.destroy(); }),
  };
}

/** One HTTP/2 request (prior knowledge) through a fresh client session. */
async function h2get(base: string, path: string, headers: http2.OutgoingHttpHeaders = {}): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  const session = http2.connect(base);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({ ':path': path, ...headers });
      let body = '';
      let h: http2.IncomingHttpHeaders = {};
      req.setEncoding('utf8');
      req.on('response', (r) => { h = r; });
      req.on('data', (c: string) => (body += c));
      req.on('end', () => resolve({ status: Number(h[':status']), headers: h, body }));
      req.on('error', reject);
      req.end();
    });
  } finally {
    session.close();
  }
}

let gw: CliReplica;
let rest: H2Rest;
let goaway: H2Rest;
let restartable: H2Rest;
let limited: H2Rest;
let silent: H2Rest;
let h1: EchoUpstream;
let grpcPlain: EchoServer;
let grpcTls: EchoServer;
let grpcUntrusted: EchoServer;
let deadPort: number;
let dir = '';

before(async () => {
  const trusted = generateServerCert();
  const untrusted = generateServerCert();
  dir = mkdtempSync(join(tmpdir(), 'tokengate-h2up-'));
  writeFileSync(join(dir, 'ca.pem'), trusted.cert);
  const ssl = (p: { cert: string; key: string }) => grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(p.key), cert_chain: Buffer.from(p.cert) }]);
  [rest, goaway, restartable, limited, silent, h1, grpcPlain, grpcTls, grpcUntrusted, deadPort] = await Promise.all([
    startH2Rest(), startH2Rest({ goawayAfterEach: true }), startH2Rest(), startH2Rest({ delayMs: 150, maxStreams: 5 }), startH2Rest({ silent: true }),
    startUpstream(), startEchoServer(), startEchoServer(ssl(trusted)), startEchoServer(ssl(untrusted)), freePort(),
  ]);
  const route = (id: string, prefix: string, upstream: string, proto = 'h2') =>
    `  - { id: ${id}, match: { pathPrefix: ${prefix} }, upstream: "${upstream}", upstreamProtocol: ${proto}, auth: { mode: none } }\n`;
  gw = await startCliReplica(`server:
  workers: 2
  http2: true
  upstreamConnections: 2
  upstreamTimeoutMs: 1500
routes:
${route('rest', '/rest', `http://127.0.0.1:${rest.port}`)}${route('goaway', '/goaway', `http://127.0.0.1:${goaway.port}`)}${route('restart', '/restart', `http://127.0.0.1:${restartable.port}`)}${route('limited', '/limited', `http://127.0.0.1:${limited.port}`)}${route('silent', '/silent', `http://127.0.0.1:${silent.port}`)}${route('dead', '/dead', `http://127.0.0.1:${deadPort}`)}${route('h1', '/h1', h1.url, 'http1')}  - { id: grpc-tls, match: { path: /tokengate.test.Echo/Unary, host: tls.test }, upstream: "https://${grpcTls.address}", upstreamProtocol: h2, auth: { mode: none } }
  - { id: grpc-untrusted, match: { path: /tokengate.test.Echo/Unary, host: untrusted.test }, upstream: "https://${grpcUntrusted.address}", upstreamProtocol: h2, auth: { mode: none } }
  - { id: grpc-silent, match: { path: /tokengate.test.Echo/Unary, host: silent.test }, upstream: "http://127.0.0.1:${silent.port}", upstreamProtocol: h2, auth: { mode: none } }
${route('grpc', '/tokengate.test.Echo', `http://${grpcPlain.address}`)}`, { NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') });
});

after(async () => {
  await gw?.stop();
  await Promise.all([rest, goaway, restartable, limited, silent].map((s) => s?.close()));
  await Promise.all([h1?.close(), grpcPlain?.close(), grpcTls?.close(), grpcUntrusted?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('across protocols', () => {
  it('an HTTP/1.1 client reaches an h2 upstream: path, :authority from the route, no hop-by-hop headers', async () => {
    const r = await fetch(`${gw.url}/rest/a?q=1`, { headers: { 'x-keep': '1' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-upstream'), 'h2');
    const seen = await r.json() as Record<string, unknown>;
    assert.equal(seen.path, '/rest/a?q=1');
    assert.equal(seen.authority, `127.0.0.1:${rest.port}`);
    assert.equal(seen.connection, null);
    assert.equal(seen.xff, '127.0.0.1');
  });

  it('an HTTP/2 client reaches an HTTP/1.1 upstream, with Host from the route and no pseudo-headers', async () => {
    const r = await h2get(gw.url, '/h1/x', { 'x-auth-sub': 'forged' });
    assert.equal(r.status, 200);
    const seen = h1.requests.at(-1)!;
    assert.equal(seen.url, '/h1/x');
    assert.equal(seen.headers.host, new URL(h1.url).host);
    assert.equal(seen.headers['x-auth-sub'], undefined, 'identity headers from the client are stripped over HTTP/2 too');
    for (const name of Object.keys(seen.headers)) assert.ok(!name.startsWith(':'), `no pseudo-header upstream (${name})`);
  });

  it('an HTTP/2 client reaches an h2 upstream', async () => {
    const r = await h2get(gw.url, '/rest/both');
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).path, '/rest/both');
  });
});

describe('h2 upstreams over TLS', () => {
  it('an https:// h2 upstream whose certificate is trusted serves gRPC (ALPN h2)', async () => {
    const client = echoClient(new URL(gw.url).host, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'tls.test' });
    const { err, res } = await unary(client, { text: 'tls' }, new grpc.Metadata());
    client.close();
    assert.equal(err, null);
    assert.equal(res?.text, 'echo:tls');
    assert.equal(grpcTls.calls.length, 1);
  });

  it('an https:// h2 upstream with an untrusted certificate is UNAVAILABLE (502), never reached unverified', async () => {
    const client = echoClient(new URL(gw.url).host, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'untrusted.test' });
    const { err } = await unary(client, { text: 'x' }, new grpc.Metadata());
    client.close();
    assert.equal(err?.code, grpc.status.UNAVAILABLE);
    assert.equal(grpcUntrusted.calls.length, 0);
  });
});

describe('sessions that end, fail or are slow', () => {
  it('an upstream that says GOAWAY after every answer: each following request opens a new session and succeeds', async () => {
    for (let i = 0; i < 6; i++) assert.equal((await fetch(`${gw.url}/goaway/${i}`)).status, 200);
    assert.ok(goaway.sessions >= 3, `sessions: ${goaway.sessions}`);
  });

  it('an upstream that went away and came back on the same port is used again', async () => {
    assert.equal((await fetch(`${gw.url}/restart/1`)).status, 200);
    const port = restartable.port;
    await restartable.close();
    assert.equal((await fetch(`${gw.url}/restart/2`)).status, 502);
    restartable = await startH2Rest({ port });
    assert.equal((await fetch(`${gw.url}/restart/3`)).status, 200);
  });

  it('nothing listening: 502; no answer within upstreamTimeoutMs: 504, and UNAVAILABLE for gRPC', async () => {
    assert.equal((await fetch(`${gw.url}/dead/x`)).status, 502);
    const t0 = Date.now();
    assert.equal((await fetch(`${gw.url}/silent/x`)).status, 504);
    assert.ok(Date.now() - t0 >= 1400);
    const client = echoClient(new URL(gw.url).host, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'silent.test' });
    const { err } = await unary(client, { text: 'x' }, new grpc.Metadata());
    client.close();
    assert.equal(err?.code, grpc.status.UNAVAILABLE);
  });

  it('upstreamConnections bounds the sessions per worker; streams beyond the peer limit wait, none fail', async () => {
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => fetch(`${gw.url}/limited/${i}`).then((r) => r.status)));
    assert.deepEqual(new Set(answers), new Set([200]));
    assert.ok(limited.sessions <= 4, `2 workers × upstreamConnections 2, got ${limited.sessions} sessions`);
    assert.ok(limited.maxOpen <= 5, `the upstream's SETTINGS_MAX_CONCURRENT_STREAMS is respected (${limited.maxOpen})`);
  });
});
