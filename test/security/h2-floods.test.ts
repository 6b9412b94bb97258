/**
 * HTTP/2 floods and header-size attacks, frame by frame (test/helpers/h2-frames.ts), each
 * bounded in time, each followed by a normal client that must still be served:
 *
 * - CONTINUATION flood (CVE-2024-27316 class): a header block that never ends;
 * - header lists past `maxHeaderBytes`, plain and as an HPACK bomb (one dynamic-table
 *   entry referenced thousands of times: a few KB on the wire, megabytes decoded);
 * - SETTINGS and PING floods (CVE-2019-9515, -9512), read or not;
 * - SETTINGS never acknowledged (RFC 9113 §6.5.3);
 * - `maxConcurrentStreams`: advertised, streams beyond it refused, the rest served.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { startH2Fixture, type Fixture } from '../helpers/fixture.js';
import {
  ERR, FRAME, RawH2, SETTING, continuation, get, headerBlock, headers, h2Request, hpackIndexed, hpackLiteral, ping, settings,
} from '../helpers/h2-frames.js';

let f: Fixture;
let port: number;
let authority: string;

before(async () => {
  ({ f, port, authority } = await startH2Fixture('maxConcurrentStreams: 5, maxHeaderBytes: 8192, headersTimeoutMs: 1500'));
});
after(() => f?.close());
beforeEach(() => {
  f.up.reset();
  f.up.delayMs = 0;
});

/** A normal client is served after (or during) an attack. */
async function othersServed(): Promise<void> {
  const a = await h2Request(f.gw.url, { ':path': '/open/fine' }, 5000);
  assert.equal(a.status, 200, 'a normal client is served');
}

/** Sends `frames()` on `c` as fast as the server reads, until it closes or `ms` pass; how many were sent. */
async function flood(c: RawH2, next: (n: number) => Buffer, ms: number): Promise<number> {
  const until = performance.now() + ms;
  let n = 0;
  while (!c.closed && performance.now() < until) {
    for (let i = 0; i < 50; i++) c.send(next(n++));
    if (c.socket.writableNeedDrain) await new Promise((r) => c.socket.once('drain', r).once('close', r));
    else await new Promise((r) => setImmediate(r));
  }
  return n;
}

test('CONTINUATION flood: a header block that never ends closes the connection within a few frames; memory stays bounded', async () => {
  const rss = process.memoryUsage().rss;
  const c = await RawH2.connect(port);
  c.send(headers(1, headerBlock(get('/open/x', authority)), { endHeaders: false }));
  const sent = await flood(c, () => continuation(1, headerBlock([['x-c', 'v'.repeat(100)]])), 5000);
  assert.ok(c.closed, `still open after ${sent} CONTINUATION frames`);
  assert.ok(sent < 10_000, `${sent} frames sent before the close`);
  assert.ok(process.memoryUsage().rss - rss < 100 * 1024 * 1024, 'the gateway did not buffer the flood');
  assert.equal(f.up.requests.length, 0);
  await othersServed();
});

test('CONTINUATION flood of empty frames: closed too', async () => {
  const c = await RawH2.connect(port);
  c.send(headers(1, headerBlock(get('/open/x', authority)), { endHeaders: false }));
  const sent = await flood(c, () => continuation(1, Buffer.alloc(0)), 5000);
  assert.ok(c.closed, `still open after ${sent} empty CONTINUATION frames`);
  assert.equal(f.up.requests.length, 0);
  await othersServed();
});

test('a header list past maxHeaderBytes (decoded) is answered 431 and not forwarded, on the first request of a connection too', async () => {
  // Sent at once: before the client has acknowledged the gateway's SETTINGS, Node does not
  // hold it to the advertised SETTINGS_MAX_HEADER_LIST_SIZE; the gateway does.
  const first = await h2Request(f.gw.url, { ':path': '/open/big', 'x-big': 'a'.repeat(5000), 'x-big2': 'b'.repeat(5000) }, 5000);
  assert.equal(first.status, 431);
  assert.equal(JSON.parse(first.body).error, 'bad_request');
  const client = http2.connect(f.gw.url);
  client.on('error', () => undefined);
  await new Promise((r) => client.once('remoteSettings', r));
  await new Promise((r) => setTimeout(r, 50));
  const later = await h2Request(client, { ':path': '/open/big', 'x-big': 'a'.repeat(5000), 'x-big2': 'b'.repeat(5000) }, 5000);
  client.close();
  // Once acknowledged, Node itself refuses it (a stream reset), or the gateway does (431).
  assert.ok(later.status === 431 || (later.status === 0 && later.rstCode !== 0), `status ${later.status}, reset ${later.rstCode}`);
  assert.equal(f.up.requests.length, 0);
  // Just under the limit (8192, counted as RFC 9113 §6.5.2 does: name + value + 32 each) passes.
  const under = await h2Request(f.gw.url, { ':path': '/open/under', 'x-big': 'a'.repeat(7500) }, 5000);
  assert.equal(under.status, 200);
  await othersServed();
});

test('HPACK bomb: one 4 KB table entry referenced 2000 times (6 KB sent, 8 MB decoded) is refused, not forwarded', async () => {
  const c = await RawH2.connect(port);
  const refs = Array.from({ length: 2000 }, () => hpackIndexed(62));
  const block = Buffer.concat([headerBlock(get('/open/bomb', authority)), hpackLiteral('x-fill', 'z'.repeat(4000), true), ...refs]);
  assert.ok(block.length < 16_384, 'fits one frame');
  c.send(headers(1, block));
  // Refused either way a careful server may: an answer (431) or a stream reset, never the upstream.
  await c.waitFor((x) => x.streamId === 1 && (x.type === FRAME.HEADERS || x.type === FRAME.RST_STREAM), 5000);
  assert.equal(f.up.requests.length, 0);
  // The same bomb through node:http2's client, whose encoder indexes the repeats itself: 431.
  const a = await h2Request(f.gw.url, { ':path': '/open/bomb', 'x-fill': Array.from({ length: 2000 }, () => 'z'.repeat(4000)) }, 5000);
  assert.ok(a.status === 431 || (a.status === 0 && a.rstCode !== 0), `status ${a.status}, reset ${a.rstCode}`);
  assert.equal(f.up.requests.length, 0);
  c.close();
  await othersServed();
});

test('SETTINGS flood: the session is closed with ENHANCE_YOUR_CALM', async () => {
  const c = await RawH2.connect(port);
  const sent = await flood(c, (n) => settings([[SETTING.INITIAL_WINDOW_SIZE, 65535 + (n % 2)]]), 5000);
  assert.ok(c.closed, `still open after ${sent} SETTINGS frames`);
  assert.equal(c.goaway()?.code, ERR.ENHANCE_YOUR_CALM);
  await othersServed();
});

test('PING flood from a client that reads the acknowledgements: closed with ENHANCE_YOUR_CALM', async () => {
  const c = await RawH2.connect(port);
  const sent = await flood(c, (n) => ping(n), 5000);
  assert.ok(c.closed, `still open after ${sent} PINGs`);
  assert.equal(c.goaway()?.code, ERR.ENHANCE_YOUR_CALM);
  await othersServed();
});

test('PING flood from a client that never reads: closed', async () => {
  const c = await RawH2.connect(port);
  await c.waitFor((x) => x.type === FRAME.SETTINGS, 5000);
  c.socket.pause();
  const sent = await flood(c, (n) => ping(n), 5000);
  c.socket.resume();
  assert.ok(await c.waitClosed(2000), `still open after ${sent} unread PINGs`);
  await othersServed();
});

test('PINGs that follow data the gateway sent (gRPC bandwidth probes) are not a flood', async () => {
  const client = http2.connect(f.gw.url);
  client.on('error', () => undefined);
  try {
    // 300 requests, each answered, a PING after each answer: three times the PING burst.
    for (let i = 0; i < 300; i++) {
      const a = await h2Request(client, { ':path': `/open/p${i}` }, 5000);
      assert.equal(a.status, 200);
      await new Promise<void>((resolve, reject) => client.ping((err) => (err ? reject(err) : resolve())));
    }
    assert.equal(client.closed || client.destroyed, false);
  } finally {
    client.close();
  }
});

test('SETTINGS never acknowledged: the session ends with SETTINGS_TIMEOUT after headersTimeoutMs', async () => {
  const c = await RawH2.connect(port, settings(), false);
  const t0 = performance.now();
  assert.ok(await c.waitClosed(5000), 'closed');
  const ms = performance.now() - t0;
  assert.equal(c.goaway()?.code, ERR.SETTINGS_TIMEOUT);
  assert.ok(ms > 1000 && ms < 4000, `closed after ${Math.round(ms)} ms (headersTimeoutMs 1500)`);
});

test('maxConcurrentStreams: advertised in SETTINGS; streams past it are refused (REFUSED_STREAM), the others served', async () => {
  f.up.delayMs = 300;
  // The client has not acknowledged the gateway's SETTINGS yet when it opens 8 streams
  // at once: the limit is enforced by refusing the streams past it.
  const c = await RawH2.connect(port, settings(), false);
  await c.waitFor((x) => x.type === FRAME.SETTINGS, 5000);
  assert.equal(c.serverSettings().get(SETTING.MAX_CONCURRENT_STREAMS), 5);
  assert.equal(c.serverSettings().get(SETTING.MAX_HEADER_LIST_SIZE), 8192);
  assert.equal(c.serverSettings().get(SETTING.ENABLE_PUSH), 0);
  const ids = [1, 3, 5, 7, 9, 11, 13, 15];
  for (const id of ids) c.send(headers(id, headerBlock(get(`/open/s${id}`, authority))));
  for (const id of ids.slice(0, 5)) await c.waitFor((x) => x.streamId === id && (x.flags & 1) === 1, 5000);
  assert.deepEqual(ids.slice(0, 5).map((id) => c.answered(id)), [true, true, true, true, true]);
  assert.deepEqual(ids.slice(5).map((id) => c.reset(id)), [ERR.REFUSED_STREAM, ERR.REFUSED_STREAM, ERR.REFUSED_STREAM]);
  assert.deepEqual(f.up.requests.map((r) => r.url).sort(), ids.slice(0, 5).map((id) => `/open/s${id}`).sort());
  c.close();
});

test('maxConcurrentStreams: a real client with 15 requests at once is held to 5 in flight, and all 15 are served', async () => {
  f.up.delayMs = 100;
  const client = http2.connect(f.gw.url);
  client.on('error', () => undefined);
  // A client opening many streams at once waits for the server's SETTINGS (as curl, nghttp
  // and browsers do); before them it would get REFUSED_STREAM past the limit, as above.
  await new Promise((r) => client.once('remoteSettings', r));
  try {
    const answers = await Promise.all(Array.from({ length: 15 }, (_, i) => h2Request(client, { ':path': `/open/m${i}` }, 10_000)));
    assert.deepEqual(answers.map((a) => a.status), Array(15).fill(200));
    assert.equal(client.remoteSettings.maxConcurrentStreams, 5);
  } finally {
    client.close();
  }
});
