/**
 * The real `tokengate` CLI (src/cli.ts) as a child process, for tests that need a second
 * process: another replica, or `server.workers`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

const ROOT = new URL('../../', import.meta.url).pathname;

/** A replica as the tests see it: where to send requests. */
export interface Replica {
  url: string;
  adminUrl: string;
}

/** Runs `tokengate --config` (src/cli.ts) as a child process on fixed free ports, with `env` added; resolves once /readyz is 200. */
export async function startCliReplica(yaml: string, env?: NodeJS.ProcessEnv): Promise<Replica & { stop(): Promise<void> }> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-replica-'));
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, `${yaml}\nadmin: { host: 127.0.0.1, port: ${adminPort} }\n`.replace('server:\n', `server:\n  host: 127.0.0.1\n  port: ${port}\n  logLevel: warn\n`));
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env });
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const until = Date.now() + 20_000;
  for (;;) {
    const r = await fetch(adminUrl + '/readyz').catch(() => null);
    if (r?.status === 200) break;
    if (child.exitCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`CLI replica did not start: ${output}`);
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    adminUrl,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(kill);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

