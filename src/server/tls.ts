/**
 * TLS on the proxy port (`server.tls`): the certificate pair, the client CAs and the
 * protocol floor, read at start and re-read when the files change.
 *
 * cert-manager and Kubernetes Secret volumes rotate the files by a symlink swap (`..data`
 * is renamed to a new timestamped directory), so the files' directories are watched
 * (src/file-watch.ts), with a periodic re-read as a fallback for volumes that send no
 * events (and links outside the watched directories). What was read is compared by
 * content hash; a changed set is loaded into a secure context first
 * (`tls.createSecureContext` throws on a key that does not match its certificate, or on
 * garbage), and only then given to the server (`setSecureContext`): new handshakes get
 * the new certificate, open connections (HTTP/1.1 keep-alive, HTTP/2 sessions) keep the
 * one they were made with and are not dropped. A set that does not load is logged (file
 * names and OpenSSL's reason, never the key) and counted; the previous one keeps serving.
 *
 * What the listener asks of clients (`clientCaFile` present, `request` or `require`) and
 * which files are read are fixed at start: `server.tls` is restart-only (src/reload.ts).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ServerOptions } from 'node:https';
import { createSecureContext, type SecureContextOptions, type Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import type { CompiledConfig } from '../config/compile.js';
import { contentHash, watchFileDirs } from '../file-watch.js';
import type { Metrics } from '../metrics.js';

/** `server.tls` as configured. */
type TlsConfig = NonNullable<CompiledConfig['server']['tls']>;

/** Why a set of files does not load: the `server.tls` key at fault, its file(s), the reason (never content). */
interface Problem {
  which: string;
  file: string;
  reason: string;
}

/**
 * What was read from the files: their hash and, when they load, the secure-context
 * options; else the problem.
 */
type Loaded = { hash: string; context: SecureContextOptions; problem?: undefined } | { hash: string; context?: undefined; problem: Problem };

/** Options for {@link TlsFiles.watch}. */
export interface TlsWatchOptions {
  /** Re-read period when no file event came (default 5000 ms; 0: no polling). */
  pollMs?: number;
  /** Quiet time after the last file event before re-reading (default 250 ms). */
  debounceMs?: number;
  /** Watch the files' directories (default true); polling alone otherwise. */
  watch?: boolean;
}

/** A start-up failure of `server.tls`: which file, and why (never the file's content). */
export class TlsFilesError extends Error {}

/** OpenSSL's reason, as Node reports it (`error:...:key values mismatch`): no key material. */
function reasonOf(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code && err.syscall ? err.code : String(err.message ?? e);
}

/** The certificate pair (and client CAs) of the proxy port, and their reload. */
export class TlsFiles {
  private current: Loaded & { context: SecureContextOptions };
  /** The hash of the last set read, loaded or not: the same bad files are reported once. */
  private lastHash: string;
  private server: TlsServer | null = null;
  private stopWatch: (() => void) | null = null;
  private poll: NodeJS.Timeout | null = null;

  /** Reads and loads the files now; throws a {@link TlsFilesError} naming the file that does not load. */
  constructor(private readonly tls: TlsConfig, private readonly logger: Logger, private readonly metrics: Metrics) {
    const first = this.load();
    if (first.problem) throw new TlsFilesError(`server.tls.${first.problem.which} ${first.problem.file}: ${first.problem.reason}`);
    this.current = first;
    this.lastHash = first.hash;
  }

  /** The https options of the listener: the loaded pair, the floor, and what clients are asked for. */
  serverOptions(): ServerOptions {
    const t = this.tls;
    return {
      ...this.current.context,
      ...(t.clientCaFile !== undefined ? { requestCert: true, rejectUnauthorized: t.clientCertificate === 'require' } : {}),
    };
  }

  /** Reads the files and loads them into a secure context (to see that they load). */
  private load(): Loaded {
    const t = this.tls;
    let problem: Problem | null = null;
    const read = (which: string, file: string): Buffer | null => {
      try {
        return readFileSync(file);
      } catch (e) {
        problem = { which, file, reason: `cannot be read (${reasonOf(e)})` };
        return null;
      }
    };
    const cert = read('certFile', t.certFile);
    const key = cert && read('keyFile', t.keyFile);
    const ca = key && t.clientCaFile !== undefined ? read('clientCaFile', t.clientCaFile) : undefined;
    if (problem !== null) return { hash: contentHash(JSON.stringify(problem)), problem };
    // Every option, every time: setSecureContext resets what it is not given (minVersion included).
    const context: SecureContextOptions = { cert: cert!, key: key!, minVersion: t.minVersion, ...(ca ? { ca } : {}) };
    const hash = contentHash(cert!, key!, ca ?? '');
    try {
      createSecureContext(context);
    } catch (e) {
      const files = [t.certFile, t.keyFile, ...(ca ? [t.clientCaFile!] : [])];
      return {
        hash,
        problem: { which: ca ? 'certFile/keyFile/clientCaFile' : 'certFile/keyFile', file: files.join(', '), reason: `do not load as a certificate chain, its key${ca ? ' and a CA bundle' : ''} (${reasonOf(e)})` },
      };
    }
    return { hash, context };
  }

  /**
   * Re-reads the files; when their content changed and loads, the server's new
   * handshakes use it. Returns what happened (a failure is logged and counted once per
   * content; the previous pair keeps serving).
   */
  reload(): 'success' | 'failure' | 'unchanged' {
    const next = this.load();
    if (next.hash === this.lastHash) return 'unchanged';
    const p = next.problem;
    if (p) {
      this.lastHash = next.hash;
      this.metrics.tlsReloads.labels('failure').inc();
      this.logger.warn({ tls: { [p.which]: p.file, reason: p.reason } }, 'TLS certificate reload failed; the previous certificate keeps serving');
      return 'failure';
    }
    this.lastHash = next.hash;
    if (next.hash === this.current.hash) return 'unchanged'; // back to what serves after a bad set
    this.server?.setSecureContext(next.context);
    this.current = next;
    this.metrics.tlsReloads.labels('success').inc();
    let leaf: { fingerprint256?: string; validTo?: string } = {};
    try {
      const x = new X509Certificate(next.context.cert as Buffer);
      leaf = { fingerprint256: x.fingerprint256, validTo: x.validTo };
    } catch { /* it loaded, so it parses; the log line does without */ }
    this.logger.info({ tls: { certFile: this.tls.certFile, ...leaf } }, 'TLS certificate reloaded');
    return 'success';
  }

  /** Starts re-reading the files into `server` when they change; {@link close} stops. */
  watch(server: TlsServer, opts: TlsWatchOptions = {}): void {
    this.server = server;
    const t = this.tls;
    const files = [t.certFile, t.keyFile, ...(t.clientCaFile !== undefined ? [t.clientCaFile] : [])];
    if (opts.watch ?? true) {
      try {
        this.stopWatch = watchFileDirs(files, () => void this.reload(), {
          debounceMs: opts.debounceMs,
          onError: (e) => this.logger.warn({ err: { message: e.message } }, 'TLS file watcher failed; the files are still re-read periodically'),
        });
      } catch (e) {
        this.logger.warn({ err: { message: (e as Error).message } }, 'cannot watch the TLS files\' directories; they are re-read periodically');
      }
    }
    const pollMs = opts.pollMs ?? 5000;
    if (pollMs > 0) {
      this.poll = setInterval(() => void this.reload(), pollMs);
      this.poll.unref();
    }
  }

  /** Stops watching (the server keeps its last secure context). */
  close(): void {
    this.stopWatch?.();
    this.stopWatch = null;
    if (this.poll) clearInterval(this.poll);
    this.poll = null;
  }
}
