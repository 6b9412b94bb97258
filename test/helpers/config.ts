/**
 * Config helpers for unit tests: validate and compile YAML text without touching disk.
 *
 * @module
 */
import { compileConfig, type CompiledConfig } from '../../src/config/compile.js';
import { parseConfig } from '../../src/config/load.js';

/** Parses, validates and compiles `yaml` (file name `test.yaml` in errors). */
export function compileYaml(yaml: string, env: NodeJS.ProcessEnv = {}): CompiledConfig {
  return compileConfig(parseConfig(yaml, 'test.yaml', env));
}

/** An issuer block usable by JWT routes (id `a`, iss `https://a.test`, audience `api`). */
export const ISSUER_A = `
  - id: a
    issuer: https://a.test
    jwksUri: https://a.test/jwks
    audiences: [api]`;
