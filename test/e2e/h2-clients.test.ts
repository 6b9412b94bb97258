/**
 * Real HTTP/2 clients against the gateway, none written here: curl (`--http2-prior-knowledge`,
 * and `--http2`, which offers h2c by Upgrade on cleartext and must be served HTTP/1.1),
 * nghttp (the SETTINGS the gateway sends), and h2load (a short load through the gateway to an
 * HTTP/1.1 upstream and to an h2 upstream, with no failed request). HTTP/1.1 clients reach
 * the h2 upstream and HTTP/2 clients the HTTP/1.1 one. With `server.http2: false`, an h2
 * prior-knowledge client is refused cleanly. Tests skip with a message when a binary is
 * missing (Debian `curl`, `nghttp2-client`; .ci/run installs them).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { execFile, execFileSync } from 'node:child_process';
import { openRoute, startApiFixture, startH2Fixture, type Fixture } from '../helpers/fixture.js';
import { listenLoopback } from '../helpers/ports.js';
import { h2Request } from '../helpers/h2-frames.js';

function has(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const CURL = has('curl') ? false : 'curl is not installed';
const NGHTTP = has('nghttp') ? false : 'nghttp is not installed (Debian nghttp2-client)';
const H2LOAD = has('h2load') ? false : 'h2load is not installed (Debian nghttp2-client)';

/** Runs a command; resolves with its stdout and stderr whatever its exit code. */
function run(bin: string, args: string[], timeoutMs = 60_000): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(bin, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, out, err) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, out, err });
    });
  });
}

let f: Fixture;
let off: Fixture;
let h2up: http2.Http2Server;
let h2upSeen = 0;

before(async () => {
  h2up = http2.createServer((req, res) => {
    h2upSeen++;
    res.setHeader('x-upstream-protocol', req.httpVersion);
    res.end('h2 upstream says hi');
  });
  const h2port = await listenLoopback(h2up);
  ({ f } = await startH2Fixture('', openRoute('h1') + openRoute('h2', { upstream: `http://127.0.0.1:${h2port}`, h2: true })));
  off = await startApiFixture({ routes: openRoute('h1') });
});
after(async () => {
  await f?.close();
  await off?.close();
  h2up?.close();
});

test('curl --http2-prior-knowledge: HTTP/2 answers, the token rules hold (401 with the challenge)', { skip: CURL }, async () => {
  const ok = await run('curl', ['-sS', '--http2-prior-knowledge', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', `${f.gw.url}/h1/x`]);
  assert.equal(ok.out, '2 200', ok.err);
  const denied = await run('curl', ['-sS', '--http2-prior-knowledge', '-D', '-', `${f.gw.url}/api/x`]);
  assert.match(denied.out, /^HTTP\/2 401/);
  assert.match(denied.out, /www-authenticate: Bearer realm="tokengate"/i);
  assert.match(denied.out, /"error":"missing_token"/);
});

test('curl --http2 on cleartext offers h2c by Upgrade: served as HTTP/1.1, never 101', { skip: CURL }, async () => {
  const r = await run('curl', ['-sS', '--http2', '-D', '-', '-o', '/dev/null', `${f.gw.url}/h1/up`]);
  assert.match(r.out, /^HTTP\/1\.1 200/, r.out + r.err);
  assert.doesNotMatch(r.out, /101/);
  const seen = f.up.requests.find((x) => x.url === '/h1/up');
  assert.ok(seen);
  assert.equal(seen.headers.upgrade, undefined);
  assert.equal(seen.headers['http2-settings'], undefined);
});

test('nghttp -nv: the gateway sends SETTINGS with max concurrent streams 100, max header list size, no push', { skip: NGHTTP }, async () => {
  const r = await run('nghttp', ['-nv', `${f.gw.url}/h1/x`]);
  assert.equal(r.code, 0, r.err);
  const settings = r.out.slice(r.out.indexOf('recv SETTINGS frame'));
  assert.match(settings, /SETTINGS_MAX_CONCURRENT_STREAMS\(0x03\):100/);
  assert.match(settings, /SETTINGS_MAX_HEADER_LIST_SIZE\(0x06\):16384/);
  assert.match(settings, /SETTINGS_ENABLE_PUSH\(0x02\):0/);
  assert.match(r.out, /recv \(stream_id=\d+\) :status: 200/);
});

for (const route of ['h1', 'h2']) {
  test(`h2load -n 2000 -c 10 -m 10 through the gateway to the ${route === 'h1' ? 'HTTP/1.1' : 'h2'} upstream: no failed or errored request`, { skip: H2LOAD }, async () => {
    const r = await run('h2load', ['-n', '2000', '-c', '10', '-m', '10', `${f.gw.url}/${route}/load`], 120_000);
    assert.equal(r.code, 0, r.err);
    const m = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(r.out);
    assert.ok(m, r.out);
    assert.deepEqual([m[1], m[3], m[4], m[5], m[6], m[7]], ['2000', '2000', '2000', '0', '0', '0'], r.out);
    assert.match(r.out, /status codes: 2000 2xx/);
  });
}

test('HTTP/1.1 clients reach the h2 upstream, HTTP/2 clients the HTTP/1.1 upstream', async () => {
  const before = h2upSeen;
  const viaH1 = await fetch(`${f.gw.url}/h2/from-h1`);
  assert.equal(viaH1.status, 200);
  assert.equal(await viaH1.text(), 'h2 upstream says hi');
  assert.equal(viaH1.headers.get('x-upstream-protocol'), '2.0');
  assert.equal(h2upSeen, before + 1);
  const viaH2 = await h2Request(f.gw.url, { ':path': '/h1/from-h2' });
  assert.equal(viaH2.status, 200);
  assert.ok(f.up.requests.some((x) => x.url === '/h1/from-h2'));
});

test('server.http2: false: an h2 prior-knowledge client is refused cleanly, nothing forwarded', async () => {
  const client = http2.connect(off.gw.url);
  const outcome = await new Promise<string>((resolve) => {
    client.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
    client.on('close', () => resolve('closed'));
    const req = client.request({ ':path': '/h1/x' });
    req.on('response', (h) => resolve(`answered ${String(h[':status'])}`));
    req.on('error', () => undefined);
    req.end();
  });
  client.destroy();
  assert.doesNotMatch(outcome, /^answered/, outcome);
  assert.equal(off.up.requests.length, 0);
  if (!CURL) {
    // curl sees Node's HTTP/1.1 parser answer the preface with 400 and gives up.
    const r = await run('curl', ['-sS', '--http2-prior-knowledge', '-o', '/dev/null', '-w', '%{http_code}', `${off.gw.url}/h1/x`]);
    assert.notEqual(r.code, 0, 'curl fails');
    assert.notEqual(r.out, '200');
  }
  assert.equal(off.up.requests.length, 0);
  // HTTP/1.1 still works there.
  assert.equal((await fetch(`${off.gw.url}/h1/ok`)).status, 200);
});
