/**
 * Traces of HTTP/2 requests and gRPC calls (SPEC "Tracing and request ids", "HTTP/2, gRPC
 * and TLS"): a gateway with `server.http2: true` and `tracing:`, a grpc-js Echo upstream
 * over `upstreamProtocol: h2`, and the OTLP receiver. Pins `network.protocol.version: "2"`
 * on both sides of the gateway, one trace from the gRPC client through tokengate to the
 * grpc-js server (which sees tokengate's `traceparent` in its metadata), the RPC semantic
 * conventions' attributes, the gRPC status of a call the gateway answers itself, and that
 * no token is exported.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { freePort } from '../helpers/ports.js';
import { bearerMetadata, echoClient, startEchoServer, unary, type EchoClient, type EchoServer } from '../helpers/grpc-echo.js';
import { clientParent as parent, SPAN_KIND, startOtlpReceiver, traceOf, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.js';

let iss: MockIssuer; let echo: EchoServer; let up: EchoUpstream; let rx: OtlpReceiver; let gw: TestGateway; let client: EchoClient;

before(async () => {
  [iss, echo, up, rx] = await Promise.all([startMockIssuer({ algs: ['ES256'] }), startEchoServer(), startUpstream(), startOtlpReceiver()]);
  gw = await startGateway(`
server: { http2: true }
tracing:
  endpoint: ${rx.url}
  batch: { scheduledDelayMs: 50 }
issuers:
  - { id: mock, issuer: ${iss.issuer}, jwksUri: ${iss.jwksUri}, audiences: [api] }
routes:
  - id: echo
    match: { pathPrefix: /tokengate.test.Echo/ }
    upstream: http://${echo.address}
    upstreamProtocol: h2
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
  - id: dead
    match: { pathPrefix: /dead.Service/ }
    upstream: http://127.0.0.1:${await freePort()}
    upstreamProtocol: h2
    auth: { mode: none }
  - id: web
    match: { pathPrefix: /web }
    upstream: ${up.url}
    auth: { mode: none }
`);
  await gw.ready(15_000);
  client = echoClient(new URL(gw.url).host);
});

after(async () => {
  client?.close();
  await gw?.close();
  await Promise.allSettled([iss?.close(), echo?.close(), up?.close(), rx?.close()]);
});

function one(spans: ReceivedSpan[], kind: number): ReceivedSpan {
  const found = spans.filter((s) => s.kind === kind);
  assert.equal(found.length, 1, `one span of kind ${kind} (have: ${spans.map((s) => `${s.name}/${s.kind}`).join(', ')})`);
  return found[0]!;
}

/** Metadata with a token (or none) and the client's `traceparent`. */
function metadata(traceparent: string, token?: string): grpc.Metadata {
  const md = bearerMetadata(token);
  md.set('traceparent', traceparent);
  return md;
}

test('an HTTP/2 request: the server span says network.protocol.version "2" and continues the client\'s trace', async () => {
  const p = parent();
  up.reset();
  const session = http2.connect(gw.url);
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const s = session.request({ ':path': '/web/x', traceparent: p.traceparent });
      let st = 0;
      s.on('response', (h) => (st = Number(h[':status'])));
      s.on('end', () => resolve(st));
      s.on('error', reject);
      s.resume();
      s.end();
    });
    assert.equal(status, 200);
  } finally {
    session.close();
  }
  const spans = await traceOf(rx, p.traceId, 3);
  const server = one(spans, SPAN_KIND.SERVER);
  assert.equal(server.parentSpanId, p.spanId);
  assert.equal(server.name, 'GET');
  assert.equal(server.attributes['network.protocol.version'], '2');
  assert.equal(server.attributes['rpc.system.name'], undefined, 'not a gRPC call');
  const upstream = one(spans, SPAN_KIND.CLIENT);
  assert.equal(upstream.attributes['network.protocol.version'], undefined, 'an HTTP/1.1 upstream');
  assert.equal(up.requests[0]!.headers.traceparent, `00-${p.traceId}-${upstream.spanId}-01`);
});

test('a gRPC call: server and upstream spans with the RPC attributes; the grpc-js upstream sees tokengate\'s traceparent', async () => {
  const p = parent();
  const token = await iss.sign();
  const before = echo.calls.length;
  const { err, res } = await unary(client, { text: 'traced' }, metadata(p.traceparent, token));
  assert.equal(err, null);
  assert.equal(res?.text, 'echo:traced');

  const spans = await traceOf(rx, p.traceId, 3);
  const server = one(spans, SPAN_KIND.SERVER);
  const upstream = one(spans, SPAN_KIND.CLIENT);
  assert.equal(server.parentSpanId, p.spanId, 'continues the client\'s span');
  assert.equal(upstream.parentSpanId, server.spanId);
  assert.equal(spans.find((s) => s.name === 'tokengate.decide')?.parentSpanId, server.spanId);
  for (const s of [server, upstream]) {
    assert.equal(s.name, 'POST');
    assert.equal(s.attributes['rpc.system.name'], 'grpc');
    assert.equal(s.attributes['rpc.method'], 'tokengate.test.Echo/Unary');
    assert.equal(s.attributes['network.protocol.version'], '2');
    assert.equal(s.attributes['rpc.status_code'], undefined, 'the upstream answered: its status is its own');
  }
  assert.equal(server.attributes['url.path'], '/tokengate.test.Echo/Unary');
  assert.equal(server.attributes['http.response.status_code'], 200);
  assert.equal(server.attributes['tokengate.outcome'], 'allowed');
  assert.equal(server.attributes['enduser.id'], 'user-1');
  assert.equal(upstream.attributes['url.full'], `http://${echo.address}/tokengate.test.Echo/Unary`);

  // The grpc-js server got the W3C context of tokengate's upstream-call span.
  assert.equal(echo.calls[before]!.metadata.traceparent, `00-${p.traceId}-${upstream.spanId}-01`);

  const exported = Buffer.concat(rx.bodies).toString('latin1');
  for (const secret of [token, token.split('.')[2]!]) assert.equal(exported.includes(secret), false, 'no token exported');
});

test('a refused gRPC call: the server span carries the refusal (401, UNAUTHENTICATED), no upstream span, not a server error', async () => {
  const p = parent();
  const before = echo.calls.length;
  const { err } = await unary(client, { text: 'x' }, metadata(p.traceparent));
  assert.equal(err?.code, grpc.status.UNAUTHENTICATED);
  assert.equal(echo.calls.length, before);
  const spans = await traceOf(rx, p.traceId, 2);
  const server = one(spans, SPAN_KIND.SERVER);
  assert.equal(server.parentSpanId, p.spanId);
  assert.equal(server.attributes['rpc.method'], 'tokengate.test.Echo/Unary');
  assert.equal(server.attributes['rpc.status_code'], 'UNAUTHENTICATED');
  assert.equal(server.attributes['http.response.status_code'], 401, 'the refusal\'s status, as on the access line');
  assert.equal(server.attributes['tokengate.outcome'], 'denied');
  assert.equal(server.attributes['tokengate.reason'], 'missing_token');
  assert.equal(server.status, 0, 'UNAUTHENTICATED is an answer, not a server error');
  assert.equal(spans.some((s) => s.kind === SPAN_KIND.CLIENT), false);
});

test('a gRPC call whose upstream is down: UNAVAILABLE on the server span, an error; the upstream span says why', async () => {
  const Ctor = grpc.makeGenericClientConstructor({
    Call: { path: '/dead.Service/Call', requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b },
  }, 'Dead');
  const dead = new Ctor(new URL(gw.url).host, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Call(b: Buffer, md: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void): void };
  const p = parent();
  const err = await new Promise<grpc.ServiceError | null>((resolve) => dead.Call(Buffer.alloc(0), metadata(p.traceparent), resolve));
  dead.close();
  assert.equal(err?.code, grpc.status.UNAVAILABLE);
  const spans = await traceOf(rx, p.traceId, 3);
  const server = one(spans, SPAN_KIND.SERVER);
  assert.equal(server.attributes['rpc.method'], 'dead.Service/Call');
  assert.equal(server.attributes['rpc.status_code'], 'UNAVAILABLE');
  assert.equal(server.attributes['error.type'], 'UNAVAILABLE');
  assert.equal(server.status, 2, 'UNAVAILABLE: the server failed');
  const upstream = one(spans, SPAN_KIND.CLIENT);
  assert.equal(upstream.status, 2);
  assert.equal(typeof upstream.attributes['error.type'], 'string');
});
