/**
 * The log as an operator stores it: `tokengate` with its stdout redirected to a real file,
 * at `server.workers: 1` and `2` (the workers and the primary share the file). Every line
 * must parse as JSON and the access lines must be one per request. pino calls
 * `emit('message', ...)` on a destination that has an `emit` method; a log writer with one
 * wrote the word `message` at offset 0 of the file (once per process): into the first
 * line of a truncated file once another process had written, and into the stream of an
 * appended one at once, which this test uses.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { freePort } from '../helpers/ports.js';

const ROOT = new URL('../../', import.meta.url).pathname;
let up: EchoUpstream;
let dir = '';

before(async () => {
  up = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'tokengate-logfile-'));
});
after(async () => {
  await up?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

for (const workers of [1, 2]) {
  test(`workers: ${workers}: stdout to a file holds only JSON lines, one access line per request`, { timeout: 60_000 }, async () => {
    const [port, adminPort] = [await freePort(), await freePort()];
    const file = join(dir, `gateway-${workers}.yaml`);
    writeFileSync(file, `
server: { host: 127.0.0.1, port: ${port}, workers: ${workers}, shutdownGraceSec: 1, logLevel: info }
admin: { host: 127.0.0.1, port: ${adminPort} }
routes:
  - { id: pub, match: { pathPrefix: /pub }, upstream: "${up.url}", auth: { mode: none } }
`);
    const logPath = join(dir, `out-${workers}.log`);
    // Appending, as `>>` would: a positional write (pwrite at offset 0) lands in the stream there.
    const fd = openSync(logPath, 'a');
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', file], { cwd: ROOT, stdio: ['ignore', fd, 'pipe'] });
    closeSync(fd);
    let stderr = '';
    child.stderr!.on('data', (c) => (stderr += c));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const until = Date.now() + 40_000;
    while ((await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status, () => 0)) !== 200) {
      assert.ok(Date.now() < until && child.exitCode === null, `did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const n = 10;
    for (let i = 0; i < n; i++) {
      const r = await fetch(`http://127.0.0.1:${port}/pub/${i}`, { headers: { connection: 'close' } });
      assert.equal(r.status, 200);
      await r.text();
    }
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    const text = readFileSync(logPath, 'utf8');
    assert.ok(text.startsWith('{'), `the file starts with a JSON line: ${JSON.stringify(text.slice(0, 40))}`);
    const lines = text.split('\n').filter((l) => l !== '');
    const parsed = lines.map((l, i) => {
      try {
        return JSON.parse(l) as { msg?: string; route?: string };
      } catch {
        throw new Error(`line ${i + 1} is not JSON: ${JSON.stringify(l.slice(0, 80))}`);
      }
    });
    assert.equal(parsed.filter((l) => l.msg === 'access' && l.route === 'pub').length, n);
  });
}
