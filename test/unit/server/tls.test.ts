/**
 * TlsFiles (src/server/tls.ts) without a listener: what a bad pair at start says, that a
 * changed pair reaches `setSecureContext` with every option (minVersion too: Node resets
 * what it is not given), that a bad new pair never does, and that the periodic re-read
 * alone (no directory watch) picks up a change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SecureContextOptions, Server as TlsServer } from 'node:tls';
import pino from 'pino';
import { Metrics } from '../../../src/metrics.js';
import { TlsFiles, TlsFilesError } from '../../../src/server/tls.js';
import { generateCa } from '../../helpers/cert.js';

const ca = generateCa();
const a = ca.issue('a');
const b = ca.issue('b');

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-tls-unit-'));
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  writeFileSync(certFile, a.pem);
  writeFileSync(keyFile, a.key);
  const logs: string[] = [];
  const logger = pino({ level: 'trace' }, { write: (l: string) => void logs.push(l) });
  const metrics = new Metrics();
  const contexts: SecureContextOptions[] = [];
  const server = { setSecureContext: (c: SecureContextOptions) => void contexts.push(c) } as unknown as TlsServer;
  const cfg = { certFile, keyFile, minVersion: 'TLSv1.3' as const, clientCertificate: 'request' as const };
  return { dir, certFile, keyFile, logs, metrics, contexts, server, cfg, logger, done: () => rmSync(dir, { recursive: true, force: true }) };
}

test('a pair that does not load at start is an error naming the file(s) and the reason, never the key', () => {
  const s = setup();
  try {
    assert.throws(() => new TlsFiles({ ...s.cfg, certFile: join(s.dir, 'missing.crt') }, s.logger, s.metrics),
      (e: unknown) => e instanceof TlsFilesError && e.message === `server.tls.certFile ${join(s.dir, 'missing.crt')}: cannot be read (ENOENT)`);
    writeFileSync(s.keyFile, b.key);
    assert.throws(() => new TlsFiles(s.cfg, s.logger, s.metrics), (e: unknown) => {
      const m = (e as Error).message;
      assert.match(m, new RegExp(`^server\\.tls\\.certFile/keyFile ${s.certFile}, ${s.keyFile}: do not load as a certificate chain, its key \\(.*key values mismatch\\)$`));
      assert.ok(!m.includes(b.key.split('\n')[1]), 'no key material');
      return true;
    });
    writeFileSync(s.keyFile, 'garbage');
    assert.throws(() => new TlsFiles(s.cfg, s.logger, s.metrics), /certFile\/keyFile .* do not load/);
  } finally {
    s.done();
  }
});

test('a changed pair is loaded with every option; a bad one is logged once, counted, and never reaches the server', async () => {
  const s = setup();
  const files = new TlsFiles(s.cfg, s.logger, s.metrics);
  try {
    assert.equal(files.serverOptions().minVersion, 'TLSv1.3');
    assert.equal(files.serverOptions().requestCert, undefined, 'no clientCaFile: no certificate requested');
    files.watch(s.server, { watch: false, pollMs: 0 });
    assert.equal(files.reload(), 'unchanged');
    writeFileSync(s.certFile, b.pem);
    writeFileSync(s.keyFile, b.key);
    assert.equal(files.reload(), 'success');
    assert.equal(s.contexts.length, 1);
    assert.equal(String(s.contexts[0].cert), b.pem);
    assert.equal(s.contexts[0].minVersion, 'TLSv1.3', 'the floor is given again: setSecureContext would reset it');
    writeFileSync(s.keyFile, a.key); // b's certificate with a's key
    assert.equal(files.reload(), 'failure');
    assert.equal(files.reload(), 'unchanged', 'the same bad files are reported once');
    assert.equal(s.contexts.length, 1, 'a bad pair never reaches the server');
    const warn = s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.level === 40)!;
    assert.equal(warn.msg, 'TLS certificate reload failed; the previous certificate keeps serving');
    assert.deepEqual(Object.keys(warn.tls as object), ['certFile/keyFile', 'reason']);
    assert.ok(!s.logs.join('').includes('PRIVATE KEY') && !s.logs.join('').includes(a.key.split('\n')[1]), 'no key material logged');
    writeFileSync(s.keyFile, b.key); // back to the pair that serves: nothing to do
    assert.equal(files.reload(), 'unchanged');
    const metrics = await s.metrics.registry.metrics();
    assert.match(metrics, /tokengate_tls_reloads_total\{result="success"\} 1/);
    assert.match(metrics, /tokengate_tls_reloads_total\{result="failure"\} 1/);
  } finally {
    files.close();
    s.done();
  }
});

test('without directory events, the periodic re-read picks up a new pair', async () => {
  const s = setup();
  const files = new TlsFiles(s.cfg, s.logger, s.metrics);
  try {
    files.watch(s.server, { watch: false, pollMs: 30 });
    writeFileSync(s.certFile, b.pem);
    writeFileSync(s.keyFile, b.key);
    const until = Date.now() + 3000;
    while (s.contexts.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.equal(s.contexts.length, 1);
    assert.equal(String(s.contexts[0].cert), b.pem);
  } finally {
    files.close();
    s.done();
  }
});
