/**
 * OpenTelemetry tracing (SPEC "Tracing and request ids", issue 19), end to end: a real
 * oidc-provider, a recording upstream and an OTLP/HTTP receiver that decodes what the
 * SDK's exporters send (src/tracing/otel.ts), in both encodings. Pins the span tree
 * (server → decide → IdP fetches / replay store; server → upstream call), one trace id
 * from the client through tokengate to the upstream (whose `traceparent` names
 * tokengate's upstream-call span), the attributes, parent-based sampling, that no token,
 * secret or query string is ever exported, that a collector that is down costs requests
 * nothing and is counted, and that shutdown flushes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { IDP_CLIENT, IDP_RESOURCES, idpIssuerYaml, startIdp, type TestIdp } from '../helpers/idp.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';
import { freePort } from '../helpers/ports.js';
import { clientParent as parent, SPAN_KIND, startOtlpReceiver, traceOf, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.js';

const QUERY_SECRET = 'q-s3cr3t-value';

let idp: TestIdp; let mock: MockIssuer; let up: EchoUpstream; let rx: OtlpReceiver; let client: DpopClient;
let gw: TestGateway;
const logs: string[] = [];
const closers: Array<() => Promise<unknown>> = [];

/** The config of a traced gateway in front of `up`, with the real IdP (JWT and, via discovery, introspection) and the mock issuer. */
function config(tracing: string): string {
  return `
server: { dpop: { replayStore: memory } }
tracing:
${tracing}
issuers:
${idpIssuerYaml(idp).replace(/audiences: \[.*\]/, `audiences: [${IDP_RESOURCES.es256}]`)}
  - id: idpx
    issuer: ${idp.issuer}
    discovery: true
    audiences: [${IDP_RESOURCES.opaque}]
    introspection:
      clientId: ${IDP_CLIENT.clientId}
      clientSecret: \${INTROSPECTION_SECRET}
  - id: mock
    issuer: ${mock.issuer}
    jwksUri: ${mock.jwksUri}
    audiences: [api]
    jwks: { cooldownSec: 0 }
routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: jwt, issuers: [idp] }
  - id: opaque
    match: { pathPrefix: /opaque }
    upstream: ${up.url}
    auth: { mode: introspection, issuers: [idpx] }
  - id: mock
    match: { pathPrefix: /mock }
    upstream: ${up.url}
    auth: { mode: jwt, issuers: [mock], binding: allow }
`;
}

const ENV = { INTROSPECTION_SECRET: IDP_CLIENT.clientSecret };

function one(spans: ReceivedSpan[], pred: (s: ReceivedSpan) => boolean, what: string): ReceivedSpan {
  const found = spans.filter(pred);
  assert.equal(found.length, 1, `one ${what} span (have: ${spans.map((s) => `${s.name}/${s.kind}`).join(', ')})`);
  return found[0]!;
}

before(async () => {
  [idp, mock, up, rx, client] = await Promise.all([startIdp(), startMockIssuer({ algs: ['ES256'] }), startUpstream(), startOtlpReceiver(), dpopClient('ES256')]);
  gw = await startGateway(config(`
  endpoint: ${rx.url}
  protocol: http/protobuf
  serviceName: tokengate-test
  headers: { x-collector-key: collector-secret-123 }
  batch: { scheduledDelayMs: 50 }`), { env: ENV, logs });
  await gw.ready(15_000);
});

after(async () => {
  await Promise.allSettled([gw?.close(), ...closers.map((c) => c())]);
  await Promise.allSettled([idp?.close(), mock?.close(), up?.close(), rx?.close()]);
});

test('a JWT request: server span continuing the client\'s trace, decide and upstream children, the upstream sees tokengate\'s span', async () => {
  const p = parent();
  const token = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' });
  up.reset();
  const res = await fetch(`${gw.url}/orders/1?secret=${QUERY_SECRET}`, {
    headers: { authorization: `Bearer ${token}`, traceparent: p.traceparent, tracestate: 'vendor=abc', 'user-agent': 'trace-probe/1', 'x-request-id': 'trace-req-1' },
  });
  assert.equal(res.status, 200);
  await res.arrayBuffer();

  const spans = await traceOf(rx, p.traceId, 3);
  const server = one(spans, (s) => s.kind === SPAN_KIND.SERVER, 'server');
  const decide = one(spans, (s) => s.name === 'tokengate.decide', 'decide');
  const upstream = one(spans, (s) => s.kind === SPAN_KIND.CLIENT && s.name === 'GET', 'upstream');

  assert.equal(server.name, 'GET');
  assert.equal(server.parentSpanId, p.spanId, 'continues the client\'s span');
  assert.equal(decide.parentSpanId, server.spanId);
  assert.equal(decide.kind, SPAN_KIND.INTERNAL);
  assert.equal(upstream.parentSpanId, server.spanId);

  // The upstream got W3C headers for tokengate's upstream-call span, in the client's trace.
  const seen = up.requests[0]!.headers;
  assert.equal(seen.traceparent, `00-${p.traceId}-${upstream.spanId}-01`);
  assert.equal(seen.tracestate, 'vendor=abc');

  assert.deepEqual(
    { ...server.attributes, 'user_agent.original': server.attributes['user_agent.original'] },
    {
      'http.request.method': 'GET', 'url.path': '/orders/1', 'url.scheme': 'http', 'server.address': '127.0.0.1',
      'client.address': '127.0.0.1', 'network.peer.address': '127.0.0.1', 'user_agent.original': 'trace-probe/1',
      'network.protocol.version': '1.1', 'http.response.status_code': 200, 'tokengate.request_id': 'trace-req-1',
      'tokengate.route': 'orders', 'tokengate.outcome': 'allowed', 'tokengate.reason': 'ok', 'tokengate.issuer': 'idp',
      ...(server.attributes['enduser.id'] !== undefined ? { 'enduser.id': server.attributes['enduser.id'] } : {}),
    },
  );
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sub?: string };
  assert.equal(server.attributes['enduser.id'], claims.sub);
  assert.equal(decide.attributes['tokengate.route'], 'orders');
  assert.equal(decide.attributes['tokengate.issuer'], 'idp');
  assert.equal(decide.attributes['tokengate.outcome'], 'allowed');
  assert.equal(upstream.attributes['http.response.status_code'], 200);
  assert.equal(upstream.attributes['url.full'], `${up.url}/orders/1`);
  assert.equal(server.resource['service.name'], 'tokengate-test');
  assert.equal(server.contentType, 'application/x-protobuf');

  const line = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.request_id === 'trace-req-1');
  assert.equal(line?.trace_id, p.traceId, 'the access line names the trace');
});

test('introspection via discovery: both calls are children of the decision, with the issuer and status', async () => {
  const p = parent();
  const token = await idp.token({ resource: IDP_RESOURCES.opaque, scope: 'orders:read' });
  const res = await fetch(`${gw.url}/opaque/x`, { headers: { authorization: `Bearer ${token}`, traceparent: p.traceparent } });
  assert.equal(res.status, 200);
  const spans = await traceOf(rx, p.traceId, 5);
  const decide = one(spans, (s) => s.name === 'tokengate.decide', 'decide');
  const disc = one(spans, (s) => s.name === 'tokengate.discovery.fetch', 'discovery');
  const intro = one(spans, (s) => s.name === 'tokengate.introspection', 'introspection');
  for (const s of [disc, intro]) {
    assert.equal(s.parentSpanId, decide.spanId, `${s.name} is a child of the decision`);
    assert.equal(s.kind, SPAN_KIND.CLIENT);
    assert.equal(s.attributes['tokengate.issuer'], 'idpx');
    assert.equal(s.attributes['http.response.status_code'], 200);
  }
  assert.equal(intro.attributes['http.request.method'], 'POST');
  assert.equal(intro.attributes['url.full'], idp.introspectionEndpoint);
  assert.equal(disc.attributes['url.full'], `${idp.issuer}/.well-known/openid-configuration`);
});

test('a key fetched for an unknown kid and a DPoP replay-store call are children of the decision', async () => {
  // A key set is never re-fetched within a second of the last fetch (the one at start).
  await new Promise((r) => setTimeout(r, 1100));
  const key = await mock.addKey('ES256', 'rotated');
  const p = parent();
  const res = await fetch(`${gw.url}/mock/x`, { headers: { authorization: `Bearer ${await mock.sign({ key })}`, traceparent: p.traceparent } });
  assert.equal(res.status, 200);
  const spans = await traceOf(rx, p.traceId, 4);
  const decide = one(spans, (s) => s.name === 'tokengate.decide', 'decide');
  const jwks = one(spans, (s) => s.name === 'tokengate.jwks.fetch', 'jwks');
  assert.equal(jwks.parentSpanId, decide.spanId);
  assert.equal(jwks.attributes['tokengate.issuer'], 'mock');
  assert.equal(jwks.attributes['url.full'], mock.jwksUri);
  assert.equal(one(spans, (s) => s.kind === SPAN_KIND.SERVER, 'server').attributes['enduser.id'], 'user-1');

  // DPoP: the proof's jti goes to the replay store.
  const bound = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read', dpop: (htm, htu) => client.proof({ htm, htu }) });
  const q = parent();
  const url = `${gw.url}/orders/dpop`;
  const r2 = await fetch(url, { headers: { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: url, token: bound }), traceparent: q.traceparent } });
  assert.equal(r2.status, 200, `${r2.headers.get("www-authenticate")}`);
  const dspans = await traceOf(rx, q.traceId, 4);
  const store = one(dspans, (s) => s.name === 'tokengate.dpop.replay_store', 'replay store');
  assert.equal(store.parentSpanId, one(dspans, (s) => s.name === 'tokengate.decide', 'decide').spanId);
  assert.equal(store.attributes['tokengate.store'], 'memory');
});

test('a refusal: the server span says 401, denied and why; no upstream span; an unsampled parent exports nothing', async () => {
  const p = parent();
  const res = await fetch(`${gw.url}/orders/1`, { headers: { traceparent: p.traceparent } });
  assert.equal(res.status, 401);
  const spans = await traceOf(rx, p.traceId, 2);
  const server = one(spans, (s) => s.kind === SPAN_KIND.SERVER, 'server');
  assert.equal(server.attributes['http.response.status_code'], 401);
  assert.equal(server.attributes['tokengate.outcome'], 'denied');
  assert.equal(server.attributes['tokengate.reason'], 'missing_token');
  assert.equal(server.status, 0, 'a 4xx is an answer, not a server error');
  assert.equal(spans.some((s) => s.kind === SPAN_KIND.CLIENT), false);

  const quiet = parent(false);
  const token = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' });
  up.reset();
  assert.equal((await fetch(`${gw.url}/orders/2`, { headers: { authorization: `Bearer ${token}`, traceparent: quiet.traceparent } })).status, 200);
  // The upstream still gets the trace, not sampled, under a span of tokengate's.
  assert.match(up.requests[0]!.headers.traceparent as string, new RegExp(`^00-${quiet.traceId}-[0-9a-f]{16}-00$`));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(rx.spans.some((s) => s.traceId === quiet.traceId), false, 'not sampled: not exported');
});

test('never a token, a secret or a query string in what is exported', async () => {
  const token = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' });
  const opaque = await idp.token({ resource: IDP_RESOURCES.opaque, scope: 'orders:read' });
  const p = parent();
  await (await fetch(`${gw.url}/orders/3?access=${QUERY_SECRET}`, { headers: { authorization: `Bearer ${token}`, traceparent: p.traceparent } })).arrayBuffer();
  await (await fetch(`${gw.url}/opaque/3`, { headers: { authorization: `Bearer ${opaque}`, traceparent: p.traceparent } })).arrayBuffer();
  await traceOf(rx, p.traceId, 5);
  const exported = Buffer.concat(rx.bodies).toString('latin1');
  assert.ok(exported.includes(p.traceId) || exported.includes(Buffer.from(p.traceId, 'hex').toString('latin1')), 'the exports are what was searched');
  for (const secret of [token, token.split('.')[2]!, opaque, IDP_CLIENT.clientSecret, QUERY_SECRET, 'collector-secret-123']) {
    assert.equal(exported.includes(secret), false, `not exported: ${secret.slice(0, 12)}…`);
  }
  assert.equal(logs.join('\n').includes('collector-secret-123'), false, 'the collector\'s key is not logged');
});

test('http/json, sampleRatio 0: no spans for a new trace; a sampled parent is followed', async () => {
  const json = await startOtlpReceiver();
  closers.push(() => json.close());
  const g = await startGateway(config(`
  endpoint: ${json.url}
  protocol: http/json
  sampleRatio: 0
  batch: { scheduledDelayMs: 50 }`), { env: ENV });
  closers.push(() => g.close());
  await g.ready(15_000);
  const token = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' });
  assert.equal((await fetch(`${g.url}/orders/1`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(json.spans, [], 'ratio 0, no parent: nothing recorded');

  const p = parent();
  assert.equal((await fetch(`${g.url}/orders/1`, { headers: { authorization: `Bearer ${token}`, traceparent: p.traceparent } })).status, 200);
  const spans = await traceOf(json, p.traceId, 3);
  const server = one(spans, (s) => s.kind === SPAN_KIND.SERVER, 'server');
  assert.equal(server.parentSpanId, p.spanId);
  assert.equal(one(spans, (s) => s.name === 'tokengate.decide', 'decide').parentSpanId, server.spanId);
  assert.equal(server.contentType, 'application/json');
  assert.equal(server.attributes['tokengate.route'], 'orders');
});

test('collector down: requests are answered at once, the failures are counted; shutdown flushes what is left', async () => {
  const g = await startGateway(config(`
  endpoint: http://127.0.0.1:${await freePort()}/v1/traces
  timeoutMs: 1000
  batch: { scheduledDelayMs: 50 }`), { env: ENV });
  closers.push(() => g.close());
  await g.ready(15_000);
  const token = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' });
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) {
    const r = await fetch(`${g.url}/orders/${i}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
  }
  assert.ok(performance.now() - t0 < 5000, `20 requests took ${Math.round(performance.now() - t0)} ms`);
  const until = Date.now() + 15_000;
  let failures = 0;
  while (failures < 1 && Date.now() < until) {
    const text = await (await fetch(`${g.adminUrl}/metrics`)).text();
    failures = Number(/^tokengate_trace_export_failures_total (\d+)/m.exec(text)?.[1] ?? 0);
    if (failures < 1) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(failures >= 1, 'tokengate_trace_export_failures_total counts the failed exports');

  // Shutdown: spans still queued (a long batch delay) are exported before the process ends.
  const late = await startOtlpReceiver();
  closers.push(() => late.close());
  const h = await startGateway(config(`
  endpoint: ${late.url}
  batch: { scheduledDelayMs: 600000 }`), { env: ENV });
  await h.ready(15_000);
  const p = parent();
  assert.equal((await fetch(`${h.url}/orders/1`, { headers: { authorization: `Bearer ${token}`, traceparent: p.traceparent } })).status, 200);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(late.spans.length, 0, 'nothing sent before the batch is due');
  await h.close();
  assert.equal(late.spans.filter((s) => s.traceId === p.traceId).length, 3, 'flushed at shutdown');
});
