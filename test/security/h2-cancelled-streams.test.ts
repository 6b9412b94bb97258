/**
 * An HTTP/2 client that cancels its streams (RST_STREAM) must not hold the gateway's
 * upstream connections. Node's HTTP/2 response reports `writableFinished` once its stream
 * is reset and has no `destroyed`, and a write to it returns false with no `drain` to
 * follow: a proxy that trusts those pauses the upstream answer forever. With a small
 * `upstreamConnections`, a handful of cancels then starved every later request to that
 * upstream (found by the rapid-reset test). Held here for an HTTP/1.1 upstream and an h2
 * upstream, for a reset that arrives with the request and one that arrives while the
 * request is upstream.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { openRoute, startH2Fixture, type Fixture } from '../helpers/fixture.js';
import { listenLoopback } from '../helpers/ports.js';
import { ERR, RawH2, get, headerBlock, headers, h2Request, rstStream } from '../helpers/h2-frames.js';

let f: Fixture;
let h2up: http2.Http2Server;
let port: number;

before(async () => {
  // An h2 upstream that answers after 50 ms (the client has cancelled by then).
  h2up = http2.createServer((_req, res) => {
    setTimeout(() => res.writable && res.end('late answer '.repeat(2000)), 50);
  });
  const h2port = await listenLoopback(h2up);
  ({ f, port } = await startH2Fixture('upstreamConnections: 2', openRoute('h1') + openRoute('h2', { upstream: `http://127.0.0.1:${h2port}`, h2: true })));
});
after(async () => {
  await f?.close();
  h2up?.close();
});

/** Opens `n` streams to `path`, each reset `resetAfterMs` after its HEADERS (0: in the same write). */
async function cancelled(path: string, n: number, resetAfterMs: number): Promise<void> {
  const c = await RawH2.connect(port);
  const block = headerBlock(get(path, `127.0.0.1:${port}`));
  for (let i = 0, id = 1; i < n; i++, id += 2) {
    if (resetAfterMs === 0) c.send(Buffer.concat([headers(id, block), rstStream(id, ERR.CANCEL)]));
    else {
      c.send(headers(id, block));
      await new Promise((r) => setTimeout(r, resetAfterMs));
      c.send(rstStream(id, ERR.CANCEL));
    }
  }
  await new Promise((r) => setTimeout(r, 200));
  c.close();
}

for (const route of ['h1', 'h2']) {
  for (const resetAfterMs of [0, 5]) {
    test(`${route} upstream: 10 streams cancelled ${resetAfterMs ? `${resetAfterMs} ms after` : 'with'} their request leave the 2 upstream connections free`, async () => {
      f.up.delayMs = 50;
      await cancelled(`/${route}/x`, 10, resetAfterMs);
      f.up.delayMs = 0;
      for (let i = 0; i < 3; i++) {
        const a = await h2Request(f.gw.url, { ':path': `/${route}/after` }, 5000);
        assert.equal(a.status, 200, `request ${i} after the cancels`);
      }
      const viaH1 = await fetch(`${f.gw.url}/${route}/after-h1`);
      assert.equal(viaH1.status, 200);
      await viaH1.arrayBuffer();
    });
  }
}
