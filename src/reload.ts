/**
 * Config reload: on SIGHUP the file is loaded, validated and compiled, then swapped in.
 * An invalid file is logged with every problem and counted; the old config keeps serving.
 */
import { ConfigError, formatProblem, loadCompiled } from './config/index.js';
import type { Gateway } from './gateway.js';

/** Reloads `file` into `gw` once; returns whether the new config was taken. */
export function reloadOnce(gw: Gateway, file: string): boolean {
  try {
    const next = loadCompiled(file);
    gw.swap(next);
    gw.metrics.configReloads.labels('success').inc();
    gw.logger.info({ routes: next.routes.length }, 'config reloaded');
    return true;
  } catch (e) {
    gw.metrics.configReloads.labels('failure').inc();
    const problems = e instanceof ConfigError ? e.problems.map(formatProblem) : [(e as Error).message];
    gw.logger.error({ problems }, 'config reload failed; the previous config keeps serving');
    return false;
  }
}

/** Installs the SIGHUP handler; returns a function that removes it. */
export function installReload(gw: Gateway, file: string): () => void {
  const onHup = () => void reloadOnce(gw, file);
  process.on('SIGHUP', onHup);
  return () => process.off('SIGHUP', onHup);
}
