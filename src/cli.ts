/**
 * The `tokengate` command: `run` (default), `check` and `dev`. Wiring and exit codes only.
 *
 *   tokengate --config FILE            run the gateway (or TOKENGATE_CONFIG=FILE)
 *   tokengate check --config FILE      validate, print the effective routes; exit 1 with every error
 *   tokengate explain --config FILE --method M --url URL [--token T] [--header 'K: V']...
 *                                      why a request would be allowed or denied (exit 0 allow, 1 deny)
 *   tokengate dev                      development issuer + echo upstream + gateway on config/dev.yaml
 *   tokengate snippet nginx|caddy|traefik|envoy --config FILE
 *                                      the front-proxy setup for this config (src/snippet.ts)
 */
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { ConfigError, describeRoutes, formatProblem, formatWarning, loadChecked, loadCompiled } from './config/index.js';

const USAGE = `usage:
  tokengate [run] --config FILE     run the gateway (TOKENGATE_CONFIG may name the file)
  tokengate check --config FILE     validate a config and print the effective routes
  tokengate explain --config FILE --method GET --url URL [--token -|--token-env NAME|--token T] [--header 'K: V']...
                                    show how a request would be decided (exit 0 allow, 1 deny, 2 usage)
  tokengate dev                     try it: dev issuer, echo upstream and gateway, with curl lines
  tokengate snippet nginx|caddy|traefik|envoy --config FILE
                                    print the front-proxy setup that clears every identity header of this config`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      method: { type: 'string', short: 'X' },
      url: { type: 'string' },
      token: { type: 'string' },
      'token-env': { type: 'string' },
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
      return explainCmd(file, values as { method?: string; url?: string; token?: string; 'token-env'?: string; header?: string[] });
    case 'snippet': {
      const { snippetCommand } = await import('./snippet.js');
      return snippetCommand(file, positionals[1]);
    }
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
    // One write, not one per route: a large config has tens of thousands.
    console.log([`${file}: OK, ${config.routes.length} route(s), first match wins:`, ...describeRoutes(config).map((l) => `  ${l}`)].join('\n'));
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

/** Runs `load`; on config errors prints each as `file:line key.path why` and returns null. */
function loadOrReport<T>(load: () => T): T | null {
  try {
    return load();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const p of e.problems) console.error(formatProblem(p));
    return null;
  }
}

async function explainCmd(file: string | undefined, opts: { method?: string; url?: string; token?: string; 'token-env'?: string; header?: string[] }): Promise<number> {
  if (!file || typeof opts.url !== 'string') {
    console.error(`--config FILE and --url URL are required\n${USAGE}`);
    return 2;
  }
  const config = loadOrReport(() => loadCompiled(file));
  if (!config) return 2;
  const { explain, resolveToken } = await import('./explain.js');
  try {
    const token = await resolveToken({ token: opts.token, tokenEnv: opts['token-env'] });
    const result = await explain(config, { method: opts.method ?? 'GET', url: opts.url, token, headers: opts.header });
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
  // Imported here, not at the top: `check` needs none of the server (~0.3 s of CPU to load).
  const [{ runPrimary, workerCount }, { processRole }, { Gateway }, { installReload }] = await Promise.all([
    import('./cluster/primary.js'), import('./cluster/worker.js'), import('./gateway.js'), import('./reload.js'),
  ]);
  const role = processRole();
  // One parse gives the config and its lint warnings (logged once, by the primary or the
  // single process); a worker takes its primary's instead of reading the file.
  const checked = await role.startConfig(() => loadOrReport(() => loadChecked(file)));
  if (!checked) return 1;
  const { config, textHash } = checked;
  // server.workers > 1: this process becomes the cluster primary (src/cluster/primary.ts).
  if (cluster.isPrimary && workerCount(config) > 1) return runPrimary(checked);
  const gw = new Gateway(config, role.gatewayOptions(config.server.logLevel));
  const addrs = await gw.start();
  role.started(gw);
  gw.logger.info({ ...addrs, routes: config.routes.length }, 'tokengate started');
  const stopReload = installReload(gw, file, { appliedHash: textHash });
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
    role.onDrain(() => stop('SIGTERM'));
  });
  gw.logger.info('stopped');
  // Everything is closed; should a stray handle keep the loop alive, do not hang the pod.
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // A worker that cannot start (its config is invalid) must exit, so that its primary
    // sees it and tries again: its IPC channel would otherwise keep it alive, serving nothing.
    if (code !== 0 && cluster.isWorker) process.exit(code);
  },
  (e: unknown) => {
    console.error(`tokengate: ${(e as Error)?.message ?? String(e)}`);
    // A listener that did open (or a worker's IPC link) must not keep a failed start alive.
    process.exit(1);
  },
);
