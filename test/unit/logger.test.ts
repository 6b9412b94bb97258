/**
 * Access lines are built from a template (src/logger.ts AccessLog) for speed; they must be
 * exactly what pino itself writes for the same entry. And the batched stdout writer must
 * write every line, whole, in order, within its interval, and never split a line across
 * two writes.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import { AccessLog, loggerOptions, type AccessEntry } from '../../src/logger.js';

function capture(level: string): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino(loggerOptions(level), { write: (l: string) => void lines.push(l) });
  return { logger, lines };
}

const entries: AccessEntry[] = [
  {
    requestId: 'f3c1a0e2-7f4e-4c59-9d1e-0b8d6f2a9c11', method: 'GET', route: 'orders', status: 200, ms: 1.25, sub: 'alice', issuer: 'corp',
    outcome: 'allowed', reason: 'ok', client: '127.0.0.1', userAgent: 'curl/8.5.0',
  },
  // Refused before it was read: no method, client or user-agent.
  { requestId: 'req-1', route: '(none)', status: 404, ms: 0.07, sub: undefined, issuer: undefined, outcome: 'denied', reason: 'no_route' },
  // A subject, a client address (a front proxy's X-Forwarded-For) and a user-agent can hold anything:
  // quotes, backslashes, control characters, non-ASCII, a fake field.
  {
    requestId: 'a.b:c-d_e', method: 'POST', route: 'r', status: 403, ms: 12, sub: 'a"b\\c\n\u0001\u2028é😀","level":"fatal', issuer: 'i',
    outcome: 'denied', reason: 'insufficient_scope', client: '1.2.3.4","x":"', userAgent: 'ua\\"\n',
  },
  { requestId: 'x', method: 'DELETE', route: 'r', status: 502, ms: 1000.5, sub: '', issuer: 'i', outcome: 'error', reason: 'upstream_unavailable', client: '::1' },
];

describe('AccessLog', () => {
  for (const e of entries) {
    it(`writes what pino writes (${e.status} ${e.reason})`, () => {
      const ours = capture('info');
      const theirs = capture('info');
      // Same millisecond for both: pin the clock.
      const realNow = Date.now;
      const t = realNow();
      Date.now = () => t;
      try {
        new AccessLog(ours.logger).write(e);
        const { requestId, method, route, status, ms, sub, issuer, outcome, reason, client, userAgent } = e;
        theirs.logger.info({ request_id: requestId, method, route, status, ms, sub, issuer, outcome, reason, client, user_agent: userAgent }, 'access');
      } finally {
        Date.now = realNow;
      }
      assert.equal(ours.lines.length, 1);
      assert.equal(ours.lines[0], theirs.lines[0]);
      const parsed = JSON.parse(ours.lines[0]!) as Record<string, unknown>;
      assert.equal(parsed.level, 'info');
      assert.equal(parsed.sub, e.sub);
      assert.equal(parsed.msg, 'access');
    });
  }

  it('writes child bindings like pino does', () => {
    const ours = capture('info');
    const child = ours.logger.child({ role: 'worker' });
    new AccessLog(child).write(entries[0]!);
    assert.equal((JSON.parse(ours.lines[0]!) as { role: string }).role, 'worker');
  });

  it('writes nothing above info', () => {
    const { logger, lines } = capture('warn');
    new AccessLog(logger).write(entries[0]!);
    assert.deepEqual(lines, []);
  });
});

/** The child script: `body` after importing BatchedLineWriter. */
function writerScript(body: string): string {
  return `
    import { BatchedLineWriter } from ${JSON.stringify(new URL('../../src/log-sink.ts', import.meta.url).href)};
    ${body}
  `;
}

/** Runs a child process writing through BatchedLineWriter to a pipe; returns its stdout and what it timed. */
function runWriter(body: string): { stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', writerScript(body)], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  return { stdout: r.stdout, stderr: r.stderr };
}

/**
 * Runs `body` in a child, recording each write to stdout (fd 1) as text. Its stdout is a
 * file, not a pipe: a pipe can be full on a loaded machine (EAGAIN), and the writer then
 * finishes a batch asynchronously, which is another test's subject.
 */
function runRecorded(body: string): { stdout: string; writes: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-log-'));
  const out = join(dir, 'stdout');
  const fd = openSync(out, 'w');
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', writerScript(`
      import fs from 'node:fs';
      import { syncBuiltinESMExports } from 'node:module';
      // strace is not available everywhere: record the writes by wrapping fs.writeSync.
      const writes = [];
      const real = fs.writeSync;
      fs.writeSync = (fd, buf, ...rest) => { if (fd === 1) writes.push(buf.subarray(rest[0] ?? 0).toString('utf8')); return real(fd, buf, ...rest); };
      syncBuiltinESMExports();
      ${body}
      process.stderr.write(JSON.stringify(writes));
    `)], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', fd, 'pipe'] });
    assert.equal(r.status, 0, r.stderr);
    return { stdout: readFileSync(out, 'utf8'), writes: JSON.parse(r.stderr) as string[] };
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('BatchedLineWriter', () => {
  it('writes every line whole and in order, in batches no larger than maxBatchBytes', () => {
    const { stdout, writes } = runRecorded(`
      const w = new BatchedLineWriter({ maxBatchBytes: 4096 });
      for (let i = 0; i < 2000; i++) w.write(JSON.stringify({ i, pad: 'x'.repeat(i % 97) }) + '\\n');
      w.flush();
    `);
    const lines = stdout.split('\n');
    assert.equal(lines.pop(), '');
    assert.equal(lines.length, 2000);
    lines.forEach((l, i) => assert.equal((JSON.parse(l) as { i: number }).i, i));
    const sizes = writes.map((w) => Buffer.byteLength(w));
    assert.ok(sizes.length > 10 && sizes.length < 200, `batched: ${sizes.length} writes for 2000 lines`);
    assert.ok(sizes.every((n) => n <= 4096), `no write above 4096 bytes: ${Math.max(...sizes)}`);
  });

  it('keeps multi-byte lines whole, and writes a line longer than a batch on its own', () => {
    const { stdout, writes } = runRecorded(`
      const w = new BatchedLineWriter({ maxBatchBytes: 256 });
      for (let i = 0; i < 400; i++) {
        w.write(i % 50 === 7 ? 'L'.repeat(600) + i + '\\n' : JSON.stringify({ i, s: 'é😀\\u2028'.repeat(i % 13) }) + '\\n');
      }
      w.flush();
    `);
    const lines = stdout.split('\n');
    assert.equal(lines.pop(), '');
    assert.equal(lines.length, 400);
    lines.forEach((l, i) => {
      if (i % 50 === 7) assert.equal(l, 'L'.repeat(600) + i);
      else assert.deepEqual(JSON.parse(l), { i, s: 'é😀\u2028'.repeat(i % 13) });
    });
    for (const w of writes) {
      assert.ok(w.endsWith('\n'), 'every write ends a line');
      const bytes = Buffer.byteLength(w);
      if (bytes > 256) assert.equal(w.split('\n').length, 2, `only a single long line is written past the batch size (${bytes} bytes)`);
    }
    assert.equal(writes.filter((w) => Buffer.byteLength(w) > 256).length, 8, 'each long line alone');
  });

  it('keeps lines whole and in order when the pipe is full (asynchronous writes behind EAGAIN)', async () => {
    const script = `
      import fs from 'node:fs';
      import { syncBuiltinESMExports } from 'node:module';
      import { BatchedLineWriter } from ${JSON.stringify(new URL('../../src/log-sink.ts', import.meta.url).href)};
      let async = 0;
      const realWrite = fs.write;
      fs.write = (...args) => { async++; return realWrite(...args); };
      syncBuiltinESMExports();
      process.stdout._handle.setBlocking(false); // as a pipe shared with a parent that made it non-blocking
      // A generous wait at exit (20 s): the parent reads 200 ms after 'written', later when it is busy.
      const w = new BatchedLineWriter({ maxBatchBytes: 4096, exitWaitMs: 20_000 });
      for (let i = 0; i < 3000; i++) w.write(JSON.stringify({ i, pad: 'x'.repeat(200 + (i % 17)) }) + '\\n');
      w.flush();
      process.stderr.write('written ');
      process.on('exit', () => process.stderr.write(String(async)));
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    const written = new Promise<void>((r) => child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.startsWith('written')) r();
    }));
    // Read only once the child has written everything: the pipe is full by then, and the child
    // exits (nothing else keeps it alive) with most of its lines still queued.
    await written;
    await new Promise((r) => setTimeout(r, 200));
    const chunks: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => chunks.push(d));
    const code = await new Promise<number | null>((r) => child.once('close', r));
    assert.equal(code, 0, err);
    assert.ok(Number(err.slice('written '.length)) > 0, `the writer had to write asynchronously (${err})`);
    const lines = Buffer.concat(chunks).toString('utf8').split('\n');
    assert.equal(lines.pop(), '');
    assert.equal(lines.length, 3000);
    lines.forEach((l, i) => assert.deepEqual(JSON.parse(l), { i, pad: 'x'.repeat(200 + (i % 17)) }));
  });

  it('writes a quiet line within the interval, without an explicit flush', async () => {
    const script = `
      import { BatchedLineWriter } from ${JSON.stringify(new URL('../../src/log-sink.ts', import.meta.url).href)};
      const w = new BatchedLineWriter({ intervalMs: 50 });
      process.stderr.write('written\\n');
      w.write('one\\n');
      setTimeout(() => {}, 1500); // stays alive well past the interval
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let writtenAt = 0;
    child.stderr.on('data', (d: Buffer) => { if (d.toString().includes('written')) writtenAt = Date.now(); });
    const arrived = await new Promise<{ at: number; text: string }>((resolve) => {
      child.stdout.once('data', (d: Buffer) => resolve({ at: Date.now(), text: d.toString() }));
      child.once('exit', () => resolve({ at: Date.now(), text: '(exited without output)' }));
    });
    child.kill();
    assert.equal(arrived.text, 'one\n');
    assert.ok(writtenAt > 0 && arrived.at - writtenAt < 1000, `out ${arrived.at - writtenAt} ms after the write, before the process ended`);
  });

  it('writes what is gathered when the process exits', () => {
    const { stdout } = runWriter(`
      const w = new BatchedLineWriter({ intervalMs: 60_000 });
      w.write('a\\n'); w.write('b\\n');
      process.exit(0);
    `);
    assert.equal(stdout, 'a\nb\n');
  });
});
