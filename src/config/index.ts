/**
 * Config entry points: load a file into a compiled, frozen config, and describe the
 * effective routes (for `tokengate check`).
 */
import { compileConfig, type CompiledConfig } from './compile.js';
import { loadConfigFile } from './load.js';

export { ConfigError, formatProblem } from './load.js';
export type { CompiledConfig } from './compile.js';

/** Loads, validates and compiles `file`. Throws ConfigError. */
export function loadCompiled(file: string, env: NodeJS.ProcessEnv = process.env): CompiledConfig {
  return compileConfig(loadConfigFile(file, env));
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
      ].filter(Boolean).join(' ');
    return `${r.index + 1}. ${r.id}: ${what} ${auth} -> ${r.source.upstream}${r.stripPrefix ? ' (stripPrefix)' : ''}`;
  });
}

/**
 * Risky but valid choices worth a warning from `tokengate check`: a token route that
 * accepts an issuer's tokens for any audience (neither the route nor the issuer lists
 * audiences; RFC 9068 §4 wants the resource server to check `aud`).
 */
export function configWarnings(config: CompiledConfig): string[] {
  const out: string[] = [];
  for (const r of config.routes) {
    if (r.auth.mode === 'none' || r.auth.audiences) continue;
    for (const id of r.auth.issuerIds) {
      if (!config.issuers.get(id)?.audiences) {
        out.push(`routes[${r.index}] (${r.id}) accepts tokens of issuer ${id} for any audience: set audiences on the issuer or the route`);
      }
    }
  }
  return out;
}
