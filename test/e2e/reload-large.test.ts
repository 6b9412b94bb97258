/**
 * A reload of a large config (thousands of routes: seconds of YAML parsing) must not stop
 * the gateway: the text is parsed and validated on a worker thread while requests keep
 * being answered, and only the result is compiled and swapped in. The same parser runs
 * there: an invalid file is reported with its lines, and the running config keeps serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { Reloader } from '../../src/reload.js';
import { OFF_THREAD_CHARS } from '../../src/config/parse-off-thread.js';

let up: EchoUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up?.close();
});

/** `n` public routes `/svcI`, and `/base`; `extra` is appended to the route list. */
function routes(n: number, extra = ''): string {
  const lines = ['server: { host: 127.0.0.1, port: 0 }', 'admin: { host: 127.0.0.1, port: 0 }', 'routes:'];
  lines.push(`  - { id: base, match: { pathPrefix: /base }, upstream: "${up.url}", auth: { mode: none } }`);
  for (let i = 0; i < n; i++) lines.push(`  - id: r${i}\n    match: { pathPrefix: /svc${i}/v1, methods: [GET, POST] }\n    upstream: "${up.url}"\n    auth: { mode: none }`);
  return lines.join('\n') + '\n' + extra;
}

/**
 * Runs `reload` while a client sends one request after another to `/base`; returns how
 * many were answered after the reload started and before it finished.
 */
async function answeredDuring(gw: TestGateway, reload: () => Promise<unknown>): Promise<{ during: number; result: unknown }> {
  let stop = false;
  const answeredAt: number[] = [];
  const client = (async () => {
    while (!stop) {
      const r = await fetch(gw.url + '/base/x');
      await r.arrayBuffer();
      answeredAt.push(performance.now());
      await new Promise((res) => setTimeout(res, 5));
    }
  })();
  await new Promise((r) => setTimeout(r, 100)); // the client is going
  const t0 = performance.now();
  const result = await reload();
  const t1 = performance.now();
  stop = true;
  await client;
  return { during: answeredAt.filter((t) => t > t0 && t < t1).length, result };
}

test('a large config reloads on a worker thread: requests keep being answered while it parses', { timeout: 60_000 }, async () => {
  const text = routes(6000);
  assert.ok(text.length > OFF_THREAD_CHARS, 'the test config is large enough to be parsed off the event loop');
  const gw = await startGateway(text);
  try {
    assert.equal((await fetch(gw.url + '/svc6000/v1/x')).status, 404);
    writeFileSync(gw.file, routes(6001)); // one route more
    const reloader = new Reloader(gw.gw, gw.file);
    const { during, result } = await answeredDuring(gw, () => reloader.reload(false));
    assert.equal(result, 'success');
    assert.ok(during >= 5, `only ${during} requests were answered during the reload`);
    assert.equal((await fetch(gw.url + '/svc6000/v1/x')).status, 200, 'the new route is served');
  } finally {
    await gw.close();
  }
});

test('control: the same reload parsed on the event loop answers nothing while it parses', { timeout: 60_000 }, async () => {
  const gw = await startGateway(routes(6000));
  try {
    writeFileSync(gw.file, routes(6001));
    const reloader = new Reloader(gw.gw, gw.file, process.env, undefined, Infinity);
    const { during, result } = await answeredDuring(gw, () => reloader.reload(false));
    assert.equal(result, 'success');
    assert.ok(during <= 1, `${during} requests were answered during an on-loop parse`);
  } finally {
    await gw.close();
  }
});

test('a large invalid config is reported from the thread with its lines; the running one keeps serving', { timeout: 60_000 }, async () => {
  const logs: string[] = [];
  const gw = await startGateway(routes(6000), { logs });
  try {
    const broken = routes(6000, '  - { id: late, match: { pathPrefix: /late }, upstream: "not a url", auth: { mode: none } }\n');
    writeFileSync(gw.file, broken);
    const line = broken.split('\n').length - 1;
    const reloader = new Reloader(gw.gw, gw.file);
    assert.equal(await reloader.reload(false), 'failure');
    const failed = logs.map((l) => JSON.parse(l) as { msg: string; problems?: string[] }).find((l) => l.msg.startsWith('config reload failed'));
    assert.ok(failed?.problems?.some((p) => p.startsWith(`${gw.file}:${line} routes[6001].upstream `)), JSON.stringify(failed?.problems));
    assert.equal((await fetch(gw.url + '/svc5999/v1/x')).status, 200, 'the running config keeps serving');
  } finally {
    await gw.close();
  }
});

test('a reloader closed while a large config parses swaps nothing in', { timeout: 60_000 }, async () => {
  const gw = await startGateway(routes(6000));
  try {
    writeFileSync(gw.file, routes(6001));
    const reloader = new Reloader(gw.gw, gw.file);
    const pending = reloader.reload(false);
    reloader.close();
    assert.equal(await pending, 'unchanged');
    assert.equal((await fetch(gw.url + '/svc6000/v1/x')).status, 404, 'the old config still runs');
    assert.equal(await reloader.reload(false), 'unchanged', 'a closed reloader does nothing');
  } finally {
    await gw.close();
  }
});
