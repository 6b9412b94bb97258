/**
 * HTTP/2 floods run from a child process, so that a test measuring how a normal client
 * fares meanwhile does not share its event loop with the attacker. `runAttack(kind, port,
 * ms)` spawns this file; each attacker connection floods until the server closes it, then
 * the next one connects, until `ms` have passed. Run directly:
 * `node --import tsx test/helpers/h2-attack.ts rapid-reset PORT MS`.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ERR, RawH2, continuation, get, headerBlock, headers, ping, rstStream, settings, SETTING } from './h2-frames.js';

/** The floods this helper knows. */
export type AttackKind = 'rapid-reset' | 'ping' | 'settings' | 'continuation';

/** What the attacker saw. */
export interface AttackSummary {
  /** Connections opened. */
  connections: number;
  /** Of those, the ones the server closed (the others were still open at the end). */
  closedByServer: number;
  /** GOAWAY error codes received. */
  goawayCodes: number[];
}

/** One flood frame (or frames) for `kind`, the `n`th on its connection. */
function floodFrames(kind: AttackKind, n: number, authority: string): Buffer {
  const id = 1 + 2 * n;
  switch (kind) {
    case 'rapid-reset': return Buffer.concat([headers(id, headerBlock(get('/open/x', authority))), rstStream(id, ERR.CANCEL)]);
    case 'ping': return ping(n);
    case 'settings': return settings([[SETTING.INITIAL_WINDOW_SIZE, 65535 + (n % 2)]]);
    case 'continuation': return n === 0
      ? headers(1, headerBlock(get('/open/x', authority)), { endHeaders: false })
      : continuation(1, headerBlock([['x-c', 'v'.repeat(100)]]));
  }
}

/** Floods one connection until the server closes it or `until` (performance.now()). */
async function floodOne(kind: AttackKind, port: number, until: number, summary: AttackSummary): Promise<void> {
  const c = await RawH2.connect(port);
  summary.connections++;
  let n = 0;
  while (!c.closed && performance.now() < until) {
    for (let i = 0; i < 20; i++) c.send(floodFrames(kind, n++, `127.0.0.1:${port}`));
    // Let the socket drain: the flood is as fast as the server reads, not a local buffer.
    if (c.socket.writableNeedDrain) await new Promise((r) => c.socket.once('drain', r).once('close', r));
    else await new Promise((r) => setImmediate(r));
  }
  if (c.closed) summary.closedByServer++;
  const g = c.goaway();
  if (g) summary.goawayCodes.push(g.code);
  c.close();
}

/** Floods connection after connection for `ms`. */
export async function attack(kind: AttackKind, port: number, ms: number): Promise<AttackSummary> {
  const summary: AttackSummary = { connections: 0, closedByServer: 0, goawayCodes: [] };
  const until = performance.now() + ms;
  while (performance.now() < until) await floodOne(kind, port, until, summary).catch(() => undefined);
  return summary;
}

/** A running attacker process. */
export interface RunningAttack {
  /** Resolves when the first connection floods (the child has started). */
  started: Promise<void>;
  /** Resolves with the summary once the attack is over. */
  done: Promise<AttackSummary>;
}

/** Runs {@link attack} in a child process for `ms` once it has started. */
export function runAttack(kind: AttackKind, port: number, ms: number): RunningAttack {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), kind, String(port), String(ms)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let markStarted: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  child.stdout.on('data', (d: Buffer) => {
    out += d;
    if (out.startsWith('started\n')) markStarted();
  });
  const killer = setTimeout(() => child.kill(), ms + 30_000);
  const done = new Promise<AttackSummary>((resolve, reject) => {
    child.on('close', (code) => {
      clearTimeout(killer);
      markStarted();
      try {
        resolve(JSON.parse(out.replace(/^started\n/, '')) as AttackSummary);
      } catch {
        reject(new Error(`attacker exited ${code}: ${out}`));
      }
    });
  });
  return { started, done };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [kind, port, ms] = process.argv.slice(2);
  process.stdout.write('started\n');
  const summary = await attack(kind as AttackKind, Number(port), Number(ms));
  process.stdout.write(JSON.stringify(summary));
  process.exit(0);
}
