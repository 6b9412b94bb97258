/**
 * Shutdown with HTTP/2 clients (`server.http2: true`): at SIGTERM every client session
 * gets GOAWAY — the client opens no new stream on it — while streams in flight finish
 * and are recorded; a session still open at the grace deadline is closed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { startHandlerUpstream } from '../helpers/upstream.js';
import { startGateway } from '../helpers/gateway.js';

/** A GET on an open client session: status and body, or the stream's error. */
function get(session: http2.ClientHttp2Session, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': path });
    let status = 0;
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (h) => { status = Number(h[':status']); });
    req.on('data', (c: string) => (body += c));
    req.on('end', () => resolve({ status, body }));
    req.on('error', reject);
    req.end();
  });
}

test('SIGTERM: GOAWAY to HTTP/2 sessions, the stream in flight finishes and is recorded, the listener closes', async () => {
  const up = await startHandlerUpstream((req, res) => {
    setTimeout(() => res.end(`done:${req.url}`), req.url?.startsWith('/pub/slow') ? 700 : 0);
  });
  const logs: string[] = [];
  const gw = await startGateway(`
server: { http2: true, shutdownGraceSec: 5 }
routes:
  - { id: pub, match: { pathPrefix: /pub }, upstream: "${up.url}", auth: { mode: none } }
`, { logs });
  const session = http2.connect(gw.url);
  try {
    assert.equal((await get(session, '/pub/warm')).status, 200);
    const slow = get(session, '/pub/slow');
    await new Promise((r) => setTimeout(r, 150));
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
    const t0 = Date.now();
    const closed = gw.gw.close(5);
    await goaway; // the client is told at once, not at the grace deadline
    assert.ok(Date.now() - t0 < 600, `GOAWAY after ${Date.now() - t0} ms`);
    assert.deepEqual(await slow, { status: 200, body: 'done:/pub/slow' });
    // After GOAWAY node:http2 refuses to open another stream on the session.
    assert.throws(() => session.request({ ':path': '/pub/late' }));
    await closed;
    const access = logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'access');
    assert.deepEqual(access.map((l) => l.status), [200, 200]);
  } finally {
    session.destroy();
    await gw.close().catch(() => undefined);
    await up.close();
  }
});

test('a session still open at the grace deadline is closed then', async () => {
  const up = await startHandlerUpstream(() => { /* never answers */ });
  const gw = await startGateway(`
server: { http2: true, shutdownGraceSec: 1 }
routes:
  - { id: pub, match: { pathPrefix: /pub }, upstream: "${up.url}", auth: { mode: none } }
`);
  const session = http2.connect(gw.url);
  try {
    const stuck = get(session, '/pub/stuck').then((r) => r.status, () => 'reset');
    await new Promise((r) => setTimeout(r, 150));
    const t0 = Date.now();
    await gw.gw.close(1);
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 4000, `closed after ${took} ms`);
    assert.notEqual(await stuck, 200);
    await new Promise<void>((resolve) => (session.closed ? resolve() : session.once('close', () => resolve())));
  } finally {
    session.destroy();
    await up.close();
  }
});
