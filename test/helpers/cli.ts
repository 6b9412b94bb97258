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

/** A running CLI replica, with its process: signals, the config file it reads, its exit. */
export interface CliReplica extends Replica {
  /** The config file (rewrite it, then `signal('SIGHUP')`, to reload). */
  file: string;
  /** Sends a signal to the process (the primary with `server.workers` > 1). */
  signal(sig: NodeJS.Signals): void;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  /** Everything the process wrote so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, and SIGKILL after 5 s; removes the config file. */
  stop(): Promise<void>;
}

/** Runs `tokengate --config` (src/cli.ts) as a child process on fixed free ports, with `env` added; resolves once /readyz is 200. */
export async function startCliReplica(yaml: string, env?: NodeJS.ProcessEnv): Promise<CliReplica> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-replica-'));
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, `${yaml}\nadmin: { host: 127.0.0.1, port: ${adminPort} }\n`.replace('server:\n', `server:\n  host: 127.0.0.1\n  port: ${port}\n  logLevel: warn\n`));
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env });
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  // A test file stopped early (a timeout, a forced exit) must not leave its gateway running.
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  void exited.then(() => process.off('exit', reap));
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const until = Date.now() + 40_000; // a loaded CI machine starts tsx processes slowly
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
    file,
    signal: (sig) => void child.kill(sig),
    exited,
    output: () => output,
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

