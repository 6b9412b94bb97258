/**
 * How an upstream's answer flows to the client: a client that does not read holds the
 * upstream back (the gateway pauses its upstream read, it does not buffer the body), it
 * resumes when the client reads again, and a client that leaves mid-response ends the
 * upstream request at once.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startHandlerUpstream, type HandlerUpstream } from '../helpers/upstream.js';

const CHUNK = 64 * 1024;
const TOTAL = 512 * 1024 * 1024; // far more than any buffer on the way
let upstream: HandlerUpstream; let gw: TestGateway;
/** Per upstream request: bytes written so far, and whether the request was closed before its end. */
const streams: Array<{ written: number; closedEarly: boolean; done: boolean }> = [];

before(async () => {
  upstream = await startHandlerUpstream((_req, res) => {
    const s = { written: 0, closedEarly: false, done: false };
    streams.push(s);
    res.on('close', () => { if (!s.done) s.closedEarly = true; });
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) });
    const chunk = Buffer.alloc(CHUNK, 0x62);
    const pump = () => {
      while (s.written < TOTAL && !res.destroyed) {
        s.written += CHUNK;
        if (s.written >= TOTAL) {
          s.done = true;
          res.end(chunk);
          return;
        }
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
    };
    pump();
  });
  gw = await startGateway(`
routes:
  - { id: stream, match: { pathPrefix: /s }, upstream: "${upstream.url}", auth: { mode: none } }
`);
});
after(async () => {
  await gw?.close();
  await upstream?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens a raw connection and sends a GET; the socket is paused (nothing read) once the headers are in. */
async function openPaused(path: string): Promise<net.Socket> {
  const sock = net.connect(Number(new URL(gw.url).port), '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  await new Promise<void>((resolve) => {
    let head = '';
    const onData = (c: Buffer) => {
      head += c.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        sock.off('data', onData);
        sock.pause();
        resolve();
      }
    };
    sock.on('data', onData);
  });
  return sock;
}

test('a client that stops reading holds the upstream back; reading again resumes it', async () => {
  streams.length = 0;
  const sock = await openPaused('/s/a');
  try {
    // Let every buffer on the way fill up, then check the upstream is stuck well short of the end.
    let last = -1;
    for (let i = 0; i < 50 && streams[0].written !== last; i++) {
      last = streams[0].written;
      await sleep(100);
    }
    const held = streams[0].written;
    assert.ok(held < 64 * 1024 * 1024, `the upstream wrote ${held} bytes to a client that reads nothing: the gateway buffered them`);
    await sleep(300);
    assert.equal(streams[0].written, held, 'the upstream stays held back while the client does not read');
    // Read for a while: the upstream moves on.
    let got = 0;
    sock.on('data', (c: Buffer) => (got += c.length));
    sock.resume();
    const until = Date.now() + 5000;
    while (streams[0].written < held + 32 * 1024 * 1024 && Date.now() < until) await sleep(50);
    assert.ok(streams[0].written >= held + 32 * 1024 * 1024, `resumed: ${streams[0].written} after ${held}`);
    assert.ok(got > 32 * 1024 * 1024);
  } finally {
    sock.destroy();
  }
});

test('a client that leaves mid-response ends the upstream request', async () => {
  streams.length = 0;
  const sock = await openPaused('/s/b');
  sock.destroy();
  const until = Date.now() + 3000;
  while (!streams[0]?.closedEarly && Date.now() < until) await sleep(20);
  assert.equal(streams[0].closedEarly, true, 'the upstream request is still open after the client left');
  assert.equal(streams[0].done, false);
});
