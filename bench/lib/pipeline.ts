/**
 * The compiled config the in-process benchmarks (bench/decide-micro.ts,
 * bench/decide-distinct.ts) run `decide()` on: one issuer for the bench keys, a `mode: none`
 * route under `/none` and a `mode: jwt` route under `/jwt` with a scope rule and two
 * identity headers, as the socket benchmark's gateway has.
 */
import { compileConfig, type CompiledConfig } from '../../src/config/compile.js';
import { parseConfig } from '../../src/config/load.js';

/** The `iss` of the bench tokens. */
export const BENCH_ISS = 'https://issuer.bench';

/** The config, compiled (`name` is the file name its errors would cite). */
export function benchPipelineConfig(name: string): CompiledConfig {
  return compileConfig(parseConfig(`
issuers:
  - { id: bench, issuer: ${BENCH_ISS}, jwksUri: ${BENCH_ISS}/jwks, algorithms: [RS256, ES256, EdDSA], audiences: [bench-api] }
routes:
  - { id: none, match: { pathPrefix: /none }, upstream: http://u.test, auth: { mode: none } }
  - id: jwt
    match: { pathPrefix: /jwt }
    upstream: http://u.test
    auth: { mode: jwt, scopes: { allOf: [bench:read] } }
    forward: { headers: { x-auth-subject: sub, x-auth-scopes: scope } }
`, name, {}));
}
