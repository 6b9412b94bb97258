/**
 * Tracing at `server.workers: 2`, through the real CLI (SPEC "Tracing and request ids":
 * one semantics at any worker count). Each worker is a complete gateway with its own
 * TracerProvider and batch: requests on many connections (the kernel hands them to both
 * workers) all become server spans continuing the client's trace, both workers' spans
 * arrive (told apart by their resource's `process.pid` and `service.instance.id`), SIGTERM
 * makes every worker export what it still holds before the pod exits, and no token is in
 * what they send.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { startCliReplica, type CliReplica } from '../helpers/cli.js';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { clientParent, SPAN_KIND, startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.js';

let iss: MockIssuer; let up: EchoUpstream; let rx: OtlpReceiver; let g: CliReplica | undefined;

before(async () => {
  [iss, up, rx] = await Promise.all([startMockIssuer({ algs: ['ES256'] }), startUpstream(), startOtlpReceiver()]);
});
after(async () => {
  await g?.stop();
  await Promise.allSettled([iss?.close(), up?.close(), rx?.close()]);
});

/** One GET on its own connection (the kernel hands each connection to one worker). */
function get(url: string, headers: http.OutgoingHttpHeaders): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });
}

test('workers: 2: every request traced under the client\'s span, both workers export, SIGTERM flushes each worker\'s queue', { timeout: 120_000 }, async () => {
  // A batch delay far beyond the test: nothing is exported until shutdown forces it.
  g = await startCliReplica(`
server:
  workers: 2
  shutdownGraceSec: 2
tracing:
  endpoint: ${rx.url}
  batch: { scheduledDelayMs: 600000 }
issuers:
  - { id: mock, issuer: ${iss.issuer}, jwksUri: ${iss.jwksUri}, audiences: [api] }
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
`);
  const token = await iss.sign();
  const sent = new Map<string, string>(); // trace id → the client's span id
  // Rounds of 10 connections at once: both workers accept some.
  for (let round = 0; round < 5; round++) {
    const statuses = await Promise.all(Array.from({ length: 10 }, (_, i) => {
      const p = clientParent();
      sent.set(p.traceId, p.spanId);
      return get(`${g!.url}/api/${round}-${i}?secret=q-s3cr3t`, { authorization: `Bearer ${token}`, traceparent: p.traceparent });
    }));
    assert.deepEqual(statuses, Array(10).fill(200));
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(rx.spans.length, 0, 'nothing exported before the batch is due');

  g.signal('SIGTERM');
  assert.equal(await g.exited, 0);

  const servers = rx.spans.filter((s) => s.kind === SPAN_KIND.SERVER);
  assert.equal(servers.length, sent.size, 'one server span per request, flushed at SIGTERM');
  for (const s of servers) {
    assert.equal(s.parentSpanId, sent.get(s.traceId), 'continues the client\'s span');
    assert.equal(s.attributes['tokengate.route'], 'api');
    assert.equal(s.attributes['http.response.status_code'], 200);
  }
  // Every request's upstream-call span is there too, under its server span.
  for (const s of servers) {
    assert.ok(rx.spans.some((c) => c.kind === SPAN_KIND.CLIENT && c.parentSpanId === s.spanId), `upstream span of ${s.traceId}`);
  }
  const pids = new Set(servers.map((s) => s.resource['process.pid']));
  const instances = new Set(servers.map((s) => s.resource['service.instance.id']));
  assert.equal(pids.size, 2, `spans from both workers (pids: ${[...pids].join(', ')})`);
  assert.equal(instances.size, 2, 'one service.instance.id per worker');
  assert.equal(new Set(rx.spans.map((s) => s.resource['service.name'])).size, 1);

  const exported = Buffer.concat(rx.bodies).toString('latin1');
  for (const secret of [token, token.split('.')[2]!, 'q-s3cr3t']) assert.equal(exported.includes(secret), false, 'no token or query in the exports');
});
