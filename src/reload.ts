/**
 * Config reload: on SIGHUP, and when the config file changes, the file is loaded,
 * validated and compiled, then swapped in. An invalid file is logged with every problem
 * and counted; the old config keeps serving.
 *
 * The watcher watches the config file's directory (src/file-watch.ts: a ConfigMap
 * updates by a `..data` symlink swap), debounced, and the file's content hash decides,
 * so a burst of events reloads at most once, and only when the content changed.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, formatProblem } from './config/index.js';
import { compileConfig, type CompiledConfig } from './config/compile.js';
import { parseConfig } from './config/load.js';
import { OFF_THREAD_CHARS, parseConfigOffThread, type OffThreadParse } from './config/parse-off-thread.js';
import type { Config } from './config/schema.js';
import { contentHash, watchFileDirs } from './file-watch.js';
import type { Gateway } from './gateway.js';

/** What a reload attempt did. */
export type ReloadResult = 'success' | 'failure' | 'unchanged';

/**
 * Settings that only take effect at restart: the listeners are bound once. A reload that
 * changes them keeps the old listeners and logs a warning naming each key.
 */
export function restartOnlyChanges(prev: CompiledConfig, next: CompiledConfig): string[] {
  const out: string[] = [];
  const keys = ['host', 'port', 'bodyLimitBytes', 'keepAliveTimeoutMs', 'requestTimeoutMs', 'headersTimeoutMs', 'maxHeaderBytes', 'upstreamConnections', 'upstreamTimeoutMs', 'logLevel', 'workers', 'http2', 'maxConcurrentStreams'] as const;
  for (const k of keys) if (prev.server[k] !== next.server[k]) out.push(`server.${k}`);
  // The files named are re-read when they change (src/server/tls.ts); which files, and the TLS settings, are the listener's.
  if (JSON.stringify(prev.server.tls) !== JSON.stringify(next.server.tls)) out.push('server.tls');
  if (prev.admin.host !== next.admin.host || prev.admin.port !== next.admin.port) out.push('admin');
  const pd = prev.decision;
  const nd = next.decision;
  if (!pd !== !nd || (pd && nd && (pd.host !== nd.host || pd.port !== nd.port))) out.push('decision (listener host/port/presence)');
  return out;
}

/**
 * RFC 9449 §11.1 across a reload: a proof's `jti` is known only to the store that saw it,
 * for the window in force when it was seen. A reload that switched the store (memory ↔
 * redis, or another Redis while Redis holds the ids), lengthened `proofMaxAgeSec` or raised
 * an issuer's `clockToleranceSec` (for its `iss`) would let a proof used just before it
 * pass once more. Those settings keep their running values until a restart (the returned
 * keys are warned about like the listeners' ones); a shorter window and everything else
 * apply. (A restart forgets what a memory store held, as it always has: run Redis where
 * that matters.)
 *
 * `tolerances` is the smallest `clockToleranceSec` each `iss` has had since the start; it
 * is read and updated, so an `iss` that one reload removed and a later one brings back is
 * still bounded by what it had before (pass the same map for every reload of a gateway).
 */
export function keepReplayProtection(
  prev: CompiledConfig, next: CompiledConfig, tolerances: Map<string, number>,
): { config: CompiledConfig; kept: string[] } {
  const p = prev.server;
  const n = next.server;
  const kept: string[] = [];
  let dpop = n.dpop;
  let redis = n.redis;
  if (n.dpop.replayStore !== p.dpop.replayStore) {
    dpop = { ...dpop, replayStore: p.dpop.replayStore };
    kept.push('server.dpop.replayStore');
  }
  if (n.dpop.proofMaxAgeSec > p.dpop.proofMaxAgeSec) {
    dpop = { ...dpop, proofMaxAgeSec: p.dpop.proofMaxAgeSec };
    kept.push('server.dpop.proofMaxAgeSec (longer)');
  }
  if (dpop.replayStore === 'redis' && n.redis.url !== p.redis.url) {
    redis = p.redis;
    kept.push('server.redis.url (it holds the DPoP replay ids)');
  }
  // The proof window is proofMaxAgeSec plus the clock tolerance of the issuer that accepted
  // the token: a larger tolerance widens it as a longer proofMaxAgeSec would. Keyed by `iss`
  // (a token is accepted by any issuer entry naming its `iss`): the smallest tolerance that
  // `iss` had stays until a restart.
  for (const i of prev.source.issuers) tolerances.set(i.issuer, Math.min(tolerances.get(i.issuer) ?? Infinity, i.clockToleranceSec));
  const issuers = next.source.issuers.map((i) => {
    const cap = tolerances.get(i.issuer);
    if (cap === undefined || i.clockToleranceSec <= cap) return i;
    kept.push(`issuers.${i.id}.clockToleranceSec (longer)`);
    return { ...i, clockToleranceSec: cap };
  });
  if (kept.length === 0) return { config: next, kept };
  const source = next.source;
  return { config: compileConfig({ ...source, issuers, server: { ...source.server, dpop, redis } }), kept };
}

/** Reloads config from files into one gateway; remembers the content hash last applied. */
export class Reloader {
  private lastHash: string | null = null;
  private readonly gw: Gateway;
  private readonly file: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly offThreadChars: number;
  /** The reload in progress (or the last one): the next waits for it. */
  private queue: Promise<ReloadResult> = Promise.resolve('unchanged');
  private parsing: OffThreadParse | null = null;
  private closed = false;

  /**
   * `appliedHash`: the content hash of the text the running config was loaded from (the
   * start's `CheckedConfig.textHash` of src/config/index.ts). Without it the file is read and parsed once
   * more to find out whether it describes the running config.
   */
  constructor(gw: Gateway, file: string, env: NodeJS.ProcessEnv = process.env, appliedHash?: string, offThreadChars = OFF_THREAD_CHARS) {
    this.gw = gw;
    this.file = file;
    this.env = env;
    this.offThreadChars = offThreadChars;
    if (appliedHash !== undefined) {
      this.lastHash = appliedHash;
      return;
    }
    // The hash of what runs. The file may have changed since the running config was loaded
    // from it (no watcher was there to see it): its hash counts as applied only when it
    // describes the running config, else the first check reloads it.
    try {
      const text = readFileSync(file, 'utf8');
      this.lastHash = JSON.stringify(parseConfig(text, file, env)) === JSON.stringify(gw.config.source) ? contentHash(text) : null;
    } catch {
      this.lastHash = null;
    }
  }

  /**
   * Reads, validates, compiles and swaps in the file. With `ifChanged`, a file whose
   * content hash equals the last applied one is left alone (`unchanged`, not counted).
   * Reloads run one after another; a large text is parsed on a worker thread
   * (src/config/parse-off-thread.ts) so that requests keep being served meanwhile.
   */
  reload(ifChanged = false): Promise<ReloadResult> {
    const run = this.queue.then(() => this.reloadNow(ifChanged));
    this.queue = run.catch(() => 'failure' as const);
    return run;
  }

  /** Stops a parse in progress; nothing is swapped in after this. */
  close(): void {
    this.closed = true;
    this.parsing?.cancel();
  }

  private async reloadNow(ifChanged: boolean): Promise<ReloadResult> {
    const { gw, file } = this;
    if (this.closed) return 'unchanged';
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      // Mid-swap of a ConfigMap the path can briefly dangle; the next event retries.
      if (ifChanged) return 'unchanged';
      return this.fail([`${file}:0 (root) cannot be read: ${(e as NodeJS.ErrnoException).code ?? 'error'}`]);
    }
    const hash = contentHash(text);
    if (ifChanged && hash === this.lastHash) return 'unchanged';
    let next: CompiledConfig;
    try {
      let source: Config;
      if (text.length >= this.offThreadChars) {
        this.parsing = parseConfigOffThread(text, file, this.env);
        try {
          source = await this.parsing.result;
        } finally {
          this.parsing = null;
        }
      } else {
        source = parseConfig(text, file, this.env);
      }
      if (this.closed) return 'unchanged';
      next = compileConfig(source);
    } catch (e) {
      if (this.closed) return 'unchanged';
      this.lastHash = hash; // do not re-report the same bad file on every event
      return this.fail(e instanceof ConfigError ? e.problems.map(formatProblem) : [(e as Error).message]);
    }
    this.lastHash = hash;
    const ignored = restartOnlyChanges(gw.config, next);
    const replay = keepReplayProtection(gw.config, next, gw.toleranceFloors);
    next = replay.config;
    ignored.push(...replay.kept);
    if (ignored.length) {
      gw.logger.warn({ keys: ignored }, 'config reload: these settings take effect only after a restart; the running gateway keeps their old values');
    }
    gw.swap(next);
    gw.metrics.configReloads.labels('success').inc();
    gw.logger.info({ routes: next.routes.length }, 'config reloaded');
    return 'success';
  }

  private fail(problems: string[]): ReloadResult {
    this.gw.metrics.configReloads.labels('failure').inc();
    this.gw.logger.error({ problems }, 'config reload failed; the previous config keeps serving');
    return 'failure';
  }
}

/** Reloads `file` into `gw` once; resolves to whether the new config was taken. */
export async function reloadOnce(gw: Gateway, file: string): Promise<boolean> {
  return (await new Reloader(gw, file).reload(false)) === 'success';
}

/** Options for {@link installReload}. */
export interface ReloadOptions {
  /** Watch the config's directory for changes (default true). */
  watch?: boolean;
  /** Quiet time after the last file event before reloading (default 250 ms). */
  debounceMs?: number;
  /** Longest a burst of events may postpone the reload (default 4 × debounceMs). */
  maxWaitMs?: number;
  env?: NodeJS.ProcessEnv;
  /**
   * The content hash of the text the running config came from (`CheckedConfig.textHash` of src/config/index.ts):
   * the file is then compared with it instead of being parsed again at install. A change
   * made since is still seen: the install's first check reloads it.
   */
  appliedHash?: string;
  /** Texts of at least this many characters are parsed on a worker thread (default {@link OFF_THREAD_CHARS}). */
  offThreadChars?: number;
}

/**
 * Installs the SIGHUP handler and the directory watcher; returns a function that removes
 * both. SIGHUP always reloads (the operator asked); file events reload only on a content change.
 */
export function installReload(gw: Gateway, file: string, opts: ReloadOptions = {}): () => void {
  const reloader = new Reloader(gw, file, opts.env, opts.appliedHash, opts.offThreadChars);
  const onHup = () => void reloader.reload(false);
  process.on('SIGHUP', onHup);
  let stopWatch: (() => void) | null = null;
  if (opts.watch ?? true) {
    try {
      stopWatch = watchFileDirs([file], () => void reloader.reload(true), {
        debounceMs: opts.debounceMs,
        maxWaitMs: opts.maxWaitMs,
        onError: (e) => gw.logger.warn({ err: { message: e.message } }, 'config watcher failed; SIGHUP still reloads'),
      });
      // A change made before the watcher was there (while the listeners started) has sent no event.
      void reloader.reload(true);
    } catch (e) {
      gw.logger.warn({ err: { message: (e as Error).message } }, 'cannot watch the config directory; SIGHUP still reloads');
    }
  }
  return () => {
    process.off('SIGHUP', onHup);
    stopWatch?.();
    reloader.close();
  };
}
