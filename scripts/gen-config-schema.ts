/**
 * Writes config/tokengate.schema.json, the config's JSON Schema for editors (the YAML
 * language server reads it from the `# yaml-language-server: $schema=...` modeline), from
 * the TypeBox schema the gateway validates with (src/config/schema.ts).
 * `npx tsx scripts/gen-config-schema.ts` rewrites it; `--check` exits 1 when it is out of
 * date (test/unit/config/schema-file.test.ts checks the same).
 *
 * Two differences, both for what an editor sees before the loader runs:
 * - every scalar value may also be a `${VAR}` / `${VAR:-default}` reference (substituted
 *   at load, src/config/env.ts), so `port: ${PORT:-8080}` is not flagged as "expected
 *   integer". Each such value is `{ description, default, anyOf: [the schema's own node,
 *   ENV_REFERENCE] }`;
 * - a key with a default is not listed as required (the loader fills it in before it
 *   checks `required`; an editor does not).
 * Undoing both gives back the schema exactly (the test checks it).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigSchema } from '../src/config/schema.js';

/** A JSON Schema node, as far as this script looks into one. */
type Node = { [key: string]: unknown };

/** The alternative every scalar accepts: a string holding an environment reference. */
export const ENV_REFERENCE: Readonly<Node> = Object.freeze({
  type: 'string',
  pattern: '\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}',
  description: 'An environment variable reference, ${VAR} or ${VAR:-default}, substituted when the config is loaded',
});

const SCALARS = new Set(['string', 'number', 'integer', 'boolean']);

function isScalar(n: Node): boolean {
  if (typeof n.type === 'string') return SCALARS.has(n.type);
  if (n.const !== undefined) return true;
  return Array.isArray(n.anyOf) && (n.anyOf as Node[]).every(isScalar);
}

function wrap(n: Node): Node {
  if (isScalar(n)) {
    const out: Node = {};
    if (n.description !== undefined) out.description = n.description;
    if (n.default !== undefined) out.default = n.default;
    out.anyOf = [n, ENV_REFERENCE];
    return out;
  }
  const out: Node = { ...n };
  const props = n.properties as Record<string, Node> | undefined;
  if (Array.isArray(n.required) && props) {
    const required = (n.required as string[]).filter((k) => props[k]?.default === undefined);
    if (required.length) out.required = required;
    else delete out.required;
  }
  for (const key of ['properties', 'patternProperties'] as const) {
    const map = n[key] as Record<string, Node> | undefined;
    if (map) out[key] = Object.fromEntries(Object.entries(map).map(([k, v]) => [k, wrap(v)]));
  }
  if (n.items && typeof n.items === 'object') out.items = wrap(n.items as Node);
  if (n.additionalProperties && typeof n.additionalProperties === 'object') out.additionalProperties = wrap(n.additionalProperties as Node);
  if (Array.isArray(n.anyOf)) out.anyOf = (n.anyOf as Node[]).map(wrap);
  return out;
}

/** The published schema: the config schema (as JSON) with environment references allowed for every scalar. */
export function editorSchema(): Node {
  const plain = JSON.parse(JSON.stringify(ConfigSchema)) as Node;
  return { $schema: 'http://json-schema.org/draft-07/schema#', title: 'tokengate configuration', ...wrap(plain) };
}

/** The file's exact text. */
export function schemaText(): string {
  return `${JSON.stringify(editorSchema(), null, 2)}\n`;
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const path = fileURLToPath(new URL('../config/tokengate.schema.json', import.meta.url));
  let current = '';
  try {
    current = readFileSync(path, 'utf8');
  } catch { /* not written yet */ }
  if (process.argv.includes('--check')) {
    if (current !== schemaText()) {
      console.error('config/tokengate.schema.json is out of date: run npx tsx scripts/gen-config-schema.ts');
      process.exit(1);
    }
  } else {
    writeFileSync(path, schemaText());
  }
}
