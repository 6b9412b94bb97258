/**
 * Config entry points: load a file into a compiled, frozen config, and describe the
 * effective routes (for `tokengate check`).
 */
import { contentHash } from '../file-watch.js';
import { compileConfig, type CompiledConfig } from './compile.js';
import { lintConfig } from './lint.js';
import { loadConfigFile, locateProblems, parseConfigLocated, readConfigText, type ConfigProblem } from './load.js';

export { ConfigError, formatProblem } from './load.js';
export type { ConfigProblem } from './load.js';
export type { CompiledConfig } from './compile.js';

/** Loads, validates and compiles `file`. Throws ConfigError. */
export function loadCompiled(file: string, env: NodeJS.ProcessEnv = process.env): CompiledConfig {
  return compileConfig(loadConfigFile(file, env));
}

/** A config as loaded from its file: compiled, its lint warnings, and which text it came from. */
export interface CheckedConfig {
  config: CompiledConfig;
  warnings: ConfigProblem[];
  /**
   * The content hash of the text read (src/file-watch.ts `contentHash`): the reloader
   * compares the file with it, so the running config's file is never parsed a second time.
   */
  textHash: string;
}

/**
 * What `tokengate check` and a start need: the compiled config of `file` and its lint
 * warnings, read and parsed once (the warnings are placed with the same parsed document).
 * Throws ConfigError.
 */
export function loadChecked(file: string, env: NodeJS.ProcessEnv = process.env): CheckedConfig {
  const text = readConfigText(file);
  const located = parseConfigLocated(text, file, env);
  const config = compileConfig(located.config);
  return { config, warnings: located.locate(lintConfig(config.source)), textHash: contentHash(text) };
}

/** Lint warnings of a loaded config, located in `file` (they never make a config invalid). */
export function lintWarnings(file: string, config: CompiledConfig): ConfigProblem[] {
  return locateProblems(file, lintConfig(config.source));
}

/** `file:line key.path warning: why`. */
export function formatWarning(p: ConfigProblem): string {
  return `${p.file}:${p.line} ${p.path || '(root)'} warning: ${p.message}`;
}

/** One line per route, in match order: what it matches, how it authenticates, where it goes. */
export function describeRoutes(config: CompiledConfig): string[] {
  return config.routes.map((r) => {
    const m = r.source.match;
    const what = [
      m.host ? `host=${m.host}` : null,
      m.path !== undefined ? `path=${m.path}` : `pathPrefix=${m.pathPrefix}`,
      m.methods ? `methods=${m.methods.join(',')}` : null,
    ].filter(Boolean).join(' ');
    const a = r.auth;
    const auth = a.mode === 'none'
      ? 'auth=none'
      : [
        `auth=${a.mode}`,
        `issuers=${a.issuerIds.join(',')}`,
        a.audiences ? `audiences=${a.audiences.join(',')}` : null,
        a.scopesAll.length ? `scopes.allOf=${a.scopesAll.join(',')}` : null,
        a.scopesAny.length ? `scopes.anyOf=${a.scopesAny.join(',')}` : null,
        a.claims.length ? `claims=${a.claims.map((c) => `${c.path.raw}=${String(c.value)}`).join(',')}` : null,
        a.binding && a.binding !== 'allow' ? `binding=${a.binding}` : null,
        a.optional ? 'optional' : null,
      ].filter(Boolean).join(' ');
    const cors = r.source.cors ? ` cors=${r.source.cors.allowOrigins.join(',')}` : '';
    return `${r.index + 1}. ${r.id}: ${what} ${auth}${cors} -> ${r.source.upstream}${r.stripPrefix ? ' (stripPrefix)' : ''}`;
  });
}
