/**
 * gRPC through the gateway (SPEC "HTTP/2, gRPC and TLS"), with real parts only: the
 * oidc-provider IdP issues the tokens, @grpc/grpc-js is both the client and the upstream
 * service, and the gateway listens with `server.http2: true` (h2c on its cleartext port)
 * and forwards over `upstreamProtocol: h2`. Every call shape, trailers and binary
 * metadata, deadlines, cancellation, flow control, large messages, and refusals in gRPC
 * form (what a gRPC client shows, not a protocol error).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { IDP_RESOURCES, idpIssuerYaml, startIdp, type TestIdp } from '../helpers/idp.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { bearerMetadata, echoClient, startEchoServer, unary, type EchoClient, type EchoServer, type Msg } from '../helpers/grpc-echo.js';

let idp: TestIdp;
let echo: EchoServer;
let gw: TestGateway;
let client: EchoClient;
let token: string;
const logs: string[] = [];

before(async () => {
  idp = await startIdp();
  echo = await startEchoServer();
  gw = await startGateway(`
server: { http2: true }
issuers:
${idpIssuerYaml(idp, IDP_RESOURCES.es256)}
routes:
  - id: echo-admin
    match: { path: /tokengate.test.Echo/Bidi }
    upstream: http://${echo.address}
    upstreamProtocol: h2
    auth: { mode: jwt, scopes: { allOf: [admin] } }
  - id: echo
    match: { pathPrefix: /tokengate.test.Echo/ }
    upstream: http://${echo.address}
    upstreamProtocol: h2
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward:
      headers: { x-auth-sub: sub, x-auth-scope: scope }
`, { logs });
  await gw.ready(15_000);
  token = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read admin' });
  client = echoClient(new URL(gw.url).host);
});

after(async () => {
  client?.close();
  await gw?.close();
  await echo?.close();
  await idp?.close();
});

describe('gRPC calls that pass', () => {
  it('unary: the answer, its header metadata (binary too), identity headers upstream and no token there', async () => {
    const before = echo.calls.length;
    const { err, res, headers } = await unary(client, { text: 'hi' }, bearerMetadata(token));
    assert.equal(err, null);
    assert.equal(res?.text, 'echo:hi');
    assert.deepEqual(headers?.get('x-answer-bin'), [Buffer.from('héllo')]);
    const call = echo.calls[before];
    assert.equal(call.method, 'Unary');
    assert.equal(call.metadata.authorization, undefined, 'the token never reaches the upstream');
    assert.equal(call.metadata['x-auth-scope'], 'orders:read admin');
    assert.equal(typeof call.metadata['x-auth-sub'], 'string');
  });

  it("an upstream's error status, message and trailers (binary too) reach the client unchanged", async () => {
    const { err } = await unary(client, { text: 'fail' }, bearerMetadata(token));
    assert.equal(err?.code, grpc.status.NOT_FOUND);
    assert.equal(err?.details, 'no such thing: ünïcode %');
    assert.deepEqual(err?.metadata.get('x-trailer'), ['kept']);
    assert.deepEqual(err?.metadata.get('x-trailer-bin'), [Buffer.from([0, 1, 2, 255])]);
  });

  it('client streaming: every message arrives, in order', async () => {
    const res = await new Promise<Msg>((resolve, reject) => {
      const call = client.ClientStream(bearerMetadata(token), {}, (err, r) => (err ? reject(err) : resolve(r!)));
      for (let i = 0; i < 20; i++) call.write({ text: String(i), blob: Buffer.alloc(1000, i) });
      call.end();
    });
    assert.equal(res.text, Array.from({ length: 20 }, (_, i) => String(i)).join(','));
    assert.equal(res.count, 20_000);
  });

  it('server streaming: every message arrives, then OK', async () => {
    const got: Msg[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.ServerStream({ count: 50, blob: Buffer.alloc(2048, 7) }, bearerMetadata(token));
      call.on('data', (m: Msg) => got.push(m));
      call.on('error', reject);
      call.on('status', (s: grpc.StatusObject) => (s.code === grpc.status.OK ? resolve() : reject(new Error(s.details))));
    });
    assert.equal(got.length, 50);
    assert.equal(got[49].text, '50');
    assert.equal(got[0].blob?.length, 2048);
  });

  it('bidirectional streaming: answers interleave with requests on one stream', async () => {
    const call = client.Bidi(bearerMetadata(token));
    const answers: string[] = [];
    for (const word of ['a', 'b', 'c']) {
      call.write({ text: word });
      // Each answer comes back before the next request is sent: the stream is open both ways.
      answers.push(await new Promise<string>((resolve) => call.once('data', (m: Msg) => resolve(m.text!))));
    }
    call.end();
    await new Promise<void>((resolve) => call.on('status', () => resolve()));
    assert.deepEqual(answers, ['echo:a', 'echo:b', 'echo:c']);
  });

  it('a 5 MB message goes both ways', async () => {
    const blob = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < blob.length; i += 4096) blob[i] = i % 251;
    const { err, res } = await unary(client, { text: 'big', blob }, bearerMetadata(token));
    assert.equal(err, null);
    assert.equal(res?.count, blob.length);
    assert.ok(res?.blob?.equals(blob));
  });
});

describe('deadlines, cancellation and flow control', () => {
  it('the deadline goes upstream, is enforced, and cancels the upstream call', async () => {
    const before = echo.calls.length;
    const t0 = Date.now();
    const { err } = await unary(client, { text: 'slow', delay_ms: 5000 }, bearerMetadata(token), { deadline: Date.now() + 400 });
    assert.equal(err?.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - t0 < 3000);
    await Promise.race([echo.calls[before].cancelled, new Promise((_, reject) => setTimeout(() => reject(new Error('upstream call not cancelled')), 3000))]);
  });

  it('a client cancel cancels the upstream call', async () => {
    const before = echo.calls.length;
    const call = client.Unary({ text: 'slow', delay_ms: 5000 }, bearerMetadata(token), {}, () => {});
    while (echo.calls.length === before) await new Promise((r) => setTimeout(r, 20));
    call.cancel();
    await Promise.race([echo.calls[before].cancelled, new Promise((_, reject) => setTimeout(() => reject(new Error('upstream call not cancelled')), 3000))]);
  });

  it('a client that stops reading holds the upstream back (no unbounded buffering in the gateway)', async () => {
    const start = echo.streamed;
    const call = client.ServerStream({ count: 4000, blob: Buffer.alloc(64 * 1024, 1) }, bearerMetadata(token));
    let received = 0;
    call.on('data', () => {
      received++;
      if (received === 5) call.pause();
    });
    call.on('error', () => {});
    await new Promise((r) => setTimeout(r, 1500));
    const produced = echo.streamed - start;
    // 4000 × 64 KiB is 250 MiB; with flow control only the windows and buffers on the way
    // (client, gateway both sides, server) fill: a few MiB.
    assert.ok(produced < 400, `upstream produced ${produced} messages while the client read ${received}`);
    call.cancel();
  });
});

describe('refusals in gRPC form', () => {
  it('no token: UNAUTHENTICATED with the error description and WWW-Authenticate; nothing reaches the upstream', async () => {
    const before = echo.calls.length;
    const { err } = await unary(client, { text: 'x' }, bearerMetadata());
    assert.equal(err?.code, grpc.status.UNAUTHENTICATED);
    assert.match(err!.details, /\S/);
    assert.deepEqual(err?.metadata.get('www-authenticate'), ['Bearer realm="tokengate"']);
    assert.equal(echo.calls.length, before);
  });

  it('a bad token: UNAUTHENTICATED with error="invalid_token"', async () => {
    const { err } = await unary(client, { text: 'x' }, bearerMetadata(`${token.slice(0, -4)}AAAA`));
    assert.equal(err?.code, grpc.status.UNAUTHENTICATED);
    assert.match(String(err?.metadata.get('www-authenticate')[0]), /error="invalid_token"/);
  });

  // The parsed credential is remembered per HTTP/2 session (src/server/proxy.ts), as per
  // HTTP/1.1 connection: only for the very same Authorization value, never across values.
  it('calls on one connection with different tokens, in turn and at once: each is judged by its own', async () => {
    const bad = `${token.slice(0, -4)}AAAA`;
    const order = [token, bad, token, undefined, bad, bad, token];
    for (const t of order) {
      const { err } = await unary(client, { text: 'x' }, bearerMetadata(t));
      assert.equal(err?.code ?? grpc.status.OK, t === token ? grpc.status.OK : grpc.status.UNAUTHENTICATED, t === token ? 'the good token' : 'a bad or no token');
    }
    const together = await Promise.all([...order, ...order].map((t) => unary(client, { text: 'x' }, bearerMetadata(t))));
    assert.deepEqual(together.map((r) => r.err?.code ?? grpc.status.OK),
      [...order, ...order].map((t) => (t === token ? grpc.status.OK : grpc.status.UNAUTHENTICATED)));
  });

  it('a missing scope: PERMISSION_DENIED with error="insufficient_scope"', async () => {
    const weak = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' });
    const call = client.Bidi(bearerMetadata(weak));
    call.on('error', () => {});
    call.resume(); // grpc-js reports the status once the read side is consumed
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    assert.equal(status.code, grpc.status.PERMISSION_DENIED);
    assert.match(String(status.metadata.get('www-authenticate')[0]), /error="insufficient_scope"/);
  });

  it('no route: UNIMPLEMENTED', async () => {
    const Ctor = grpc.makeGenericClientConstructor({
      Nope: { path: '/other.Service/Nope', requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b },
    }, 'Other');
    const other = new Ctor(new URL(gw.url).host, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Nope(b: Buffer, md: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void): void };
    const err = await new Promise<grpc.ServiceError | null>((resolve) => other.Nope(Buffer.alloc(0), bearerMetadata(token), resolve));
    other.close();
    assert.equal(err?.code, grpc.status.UNIMPLEMENTED);
  });

  // A refused call's line has the refusal's status (what the gRPC status was mapped from), not the wire's 200.
  it('every call is on the access line with its route, status and outcome', () => {
    const lines = logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'access');
    assert.ok(lines.some((l) => l.route === 'echo' && l.outcome === 'allowed' && l.status === 200));
    assert.ok(lines.some((l) => l.route === 'echo' && l.status === 401 && l.outcome === 'denied' && l.reason === 'missing_token'));
    assert.ok(lines.some((l) => l.route === 'echo-admin' && l.status === 403 && l.outcome === 'denied' && l.reason === 'scope'));
    assert.ok(lines.some((l) => l.route === '(none)' && l.status === 404 && l.reason === 'no_route'));
    for (const l of logs) assert.ok(!l.includes(token), 'no token in any log line');
  });
});
