/**
 * The `tokengate` command: `run` (default), `check` and `dev`. Wiring and exit codes only.
 *
 *   tokengate --config FILE            run the gateway (or TOKENGATE_CONFIG=FILE)
 *   tokengate check --config FILE      validate, print the effective routes; exit 1 with every error
 *   tokengate explain --config FILE --method M --url URL [--token T] [--header 'K: V']...
 *                                      why a request would be allowed or denied (exit 0 allow, 1 deny)
 *   tokengate dev                      development issuer + echo upstream + gateway on config/dev.yaml
 */
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { ConfigError, describeRoutes, formatProblem, formatWarning, lintWarnings, loadChecked, loadCompiled, type CompiledConfig } from './config/index.js';
import { DRAIN, logWarnings, PrimaryReplayStore, runPrimary, shareIdpRequestsThroughPrimary, serveWorker, workerCount, workerLogger } from './cluster.js';
import { Gateway } from './gateway.js';
import { installReload } from './reload.js';

const USAGE = `usage:
  tokengate [run] --config FILE     run the gateway (TOKENGATE_CONFIG may name the file)
  tokengate check --config FILE     validate a config and print the effective routes
  tokengate explain --config FILE --method GET --url URL [--token T] [--header 'K: V']...
                                    show how a request would be decided (exit 0 allow, 1 deny, 2 usage)
  tokengate dev                     try it: dev issuer, echo upstream and gateway, with curl lines`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      method: { type: 'string', short: 'X' },
      url: { type: 'string' },
      token: { type: 'string' },
      header: { type: 'string', short: 'H', multiple: true },
    },
    allowPositionals: true,
    strict: false,
  });
  const cmd = positionals[0] ?? 'run';
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const file = (values.config as string | undefined) ?? process.env.TOKENGATE_CONFIG;
  switch (cmd) {
    case 'check':
      return check(file);
    case 'run':
      return run(file);
    case 'explain':
      return explainCmd(file, values as { method?: string; url?: string; token?: string; header?: string[] });
    case 'dev': {
      const { runDev } = await import('./dev/run-dev.js');
      return runDev();
    }
    default:
      console.error(`unknown command "${cmd}"\n${USAGE}`);
      return 2;
  }
}

function check(file: string | undefined): number {
  if (!file) {
    console.error(`--config FILE is required\n${USAGE}`);
    return 2;
  }
  try {
    const { config, warnings } = loadChecked(file);
    console.log(`${file}: OK, ${config.routes.length} route(s), first match wins:`);
    for (const line of describeRoutes(config)) console.log(`  ${line}`);
    // Warnings never fail the check (exit 0): legal, but probably not what was meant.
    for (const w of warnings) console.error(formatWarning(w));
    if (warnings.length) console.error(`${file}: ${warnings.length} warning(s)`);
    return 0;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const p of e.problems) console.error(formatProblem(p));
    console.error(`${file}: ${e.problems.length} error(s)`);
    return 1;
  }
}

/** Loads `file`; on config errors prints each as `file:line key.path why` and returns null. */
function loadOrReport(file: string): CompiledConfig | null {
  try {
    return loadCompiled(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const p of e.problems) console.error(formatProblem(p));
    return null;
  }
}

async function explainCmd(file: string | undefined, opts: { method?: string; url?: string; token?: string; header?: string[] }): Promise<number> {
  if (!file || typeof opts.url !== 'string') {
    console.error(`--config FILE and --url URL are required\n${USAGE}`);
    return 2;
  }
  const config = loadOrReport(file);
  if (!config) return 2;
  const { explain } = await import('./explain.js');
  try {
    const result = await explain(config, { method: opts.method ?? 'GET', url: opts.url, token: opts.token, headers: opts.header });
    for (const line of result.lines) console.log(line);
    return result.allowed ? 0 : 1;
  } catch (e) {
    console.error(`tokengate explain: ${(e as Error).message}`);
    return 2;
  }
}

async function run(file: string | undefined): Promise<number> {
  if (!file) {
    console.error(`--config FILE (or TOKENGATE_CONFIG) is required\n${USAGE}`);
    return 2;
  }
  const config = loadOrReport(file);
  if (!config) return 1;
  const warnings = cluster.isWorker ? [] : lintWarnings(file, config);
  // server.workers > 1: this process becomes the cluster primary (src/cluster.ts).
  if (cluster.isPrimary && workerCount(config) > 1) return runPrimary(config, warnings);
  if (cluster.isWorker) shareIdpRequestsThroughPrimary();
  const gw = cluster.isWorker
    ? new Gateway(config, { admin: false, logger: workerLogger(config.server.logLevel), memoryReplayStore: new PrimaryReplayStore() })
    : new Gateway(config);
  logWarnings(gw.logger, warnings);
  const addrs = await gw.start();
  if (cluster.isWorker) serveWorker(gw);
  gw.logger.info({ ...addrs, routes: config.routes.length }, 'tokengate started');
  const stopReload = installReload(gw, file);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      gw.logger.info({ signal, graceSec: gw.config.server.shutdownGraceSec }, 'draining');
      stopReload();
      void gw.close().then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    if (cluster.isWorker) process.on('message', (m: { type?: string }) => { if (m?.type === DRAIN) stop('SIGTERM'); });
  });
  gw.logger.info('stopped');
  // Everything is closed; should a stray handle keep the loop alive, do not hang the pod.
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    if (code !== 0 || process.argv.includes('check')) return;
  },
  (e: unknown) => {
    console.error(`tokengate: ${(e as Error)?.message ?? String(e)}`);
    process.exitCode = 1;
    // A cluster worker's IPC channel would keep it alive: leave, so the primary sees the failure.
    if (cluster.isWorker) process.exit(1);
  },
);
