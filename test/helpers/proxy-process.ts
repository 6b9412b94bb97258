/**
 * Real front proxies (nginx, Caddy) as child processes on loopback for end-to-end tests:
 * a generated config in a temp dir, started in the foreground, awaited until it accepts
 * connections, and stopped (then its dir removed) by the test's `after`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The first existing path, else what `command -v name` finds, else null. */
export function findBinary(name: string, paths: string[]): string | null {
  return paths.find((p) => existsSync(p)) ?? (spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim() || null);
}

/** Debian's build of the nginx headers-more module (the nginx snippet clears a header prefix with it), or null. */
export const HEADERS_MORE_MODULE = ['/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so', '/usr/share/nginx/modules/ngx_http_headers_more_filter_module.so']
  .find((p) => existsSync(p)) ?? null;

/** A running proxy process. */
export interface ProxyProcess {
  proc: ChildProcess;
  dir: string;
  /** SIGTERM (SIGKILL after 3 s), then the temp dir is removed. */
  stop(): Promise<void>;
}

/** Resolves once `port` on 127.0.0.1 accepts a connection; rejects if `proc` exits or after 10 s. */
export async function waitForPort(port: number, proc: ChildProcess, output: () => string): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`exited: ${output()}`);
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`did not start: ${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Writes `files` into a fresh temp dir (`files` gets the dir), runs `cmd args(dir)` there
 * and waits for `port`.
 */
export async function startProxy(
  prefix: string, port: number, cmd: string, files: (dir: string) => Record<string, string>, args: (dir: string) => string[], env: (dir: string) => NodeJS.ProcessEnv = () => ({}),
): Promise<ProxyProcess> {
  const dir = mkdtempSync(join(tmpdir(), `tokengate-${prefix}-`));
  mkdirSync(join(dir, 'tmp'));
  for (const [name, text] of Object.entries(files(dir))) writeFileSync(join(dir, name), text);
  const proc = spawn(cmd, args(dir), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env(dir) } });
  let out = '';
  proc.stdout!.on('data', (c) => (out += c));
  proc.stderr!.on('data', (c) => (out += c));
  const stop = async () => {
    if (proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, proc, () => out + (existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''));
  } catch (e) {
    await stop();
    throw e;
  }
  return { proc, dir, stop };
}

/** nginx.conf around `http` (server blocks), everything written under `dir`; `head` goes before `events` (load_module). */
export function nginxConf(dir: string, http: string, head = ''): string {
  return `
${head}
worker_processes 1;
error_log ${dir}/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
${http}
}
`;
}

/** Starts nginx in the foreground on `conf(dir)`, waiting for `port`. */
export function startNginx(nginx: string, port: number, conf: (dir: string) => string): Promise<ProxyProcess> {
  return startProxy('nginx', port, nginx, (dir) => ({ 'nginx.conf': conf(dir) }),
    (dir) => ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', `daemon off; pid ${dir}/nginx.pid;`]);
}
