/**
 * config/tokengate.schema.json, the schema editors complete and check config files with:
 * it is what scripts/gen-config-schema.ts generates from the schema the gateway validates
 * with, it is that schema once the editor-only allowances are undone, the shipped configs
 * carry the modeline and pass it as they are (environment references unresolved), and it
 * catches what an editor should flag: an unknown key, a wrong type, an unknown mode.
 */
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';
import { ENV_REFERENCE, schemaText } from '../../../scripts/gen-config-schema.js';
import { ConfigSchema } from '../../../src/config/schema.js';

const FILE = new URL('../../../config/tokengate.schema.json', import.meta.url);
const published = JSON.parse(readFileSync(FILE, 'utf8')) as Record<string, unknown>;

type Node = { [key: string]: unknown };

/** Undoes the editor allowances: env-reference wrappers go, defaulted keys are required again. */
function plain(n: unknown, original: unknown): unknown {
  if (Array.isArray(n)) return n.map((x, i) => plain(x, (original as unknown[])[i]));
  if (!n || typeof n !== 'object') return n;
  const node = n as Node;
  const anyOf = node.anyOf as Node[] | undefined;
  if (anyOf?.length === 2 && JSON.stringify(anyOf[1]) === JSON.stringify(ENV_REFERENCE)) return plain(anyOf[0], original);
  const out: Node = {};
  for (const [k, v] of Object.entries(node)) out[k] = plain(v, (original as Node | undefined)?.[k]);
  const orig = original as Node | undefined;
  if (orig && Array.isArray(orig.required)) out.required = orig.required.filter((k: string) => (out.required as string[] | undefined)?.includes(k) || (orig.properties as Record<string, Node>)[k]?.default !== undefined);
  return out;
}

test('config/tokengate.schema.json is what scripts/gen-config-schema.ts generates', () => {
  assert.equal(readFileSync(FILE, 'utf8'), schemaText(), 'stale: run npx tsx scripts/gen-config-schema.ts');
});

test('undoing the env-reference wrappers and the defaulted-required keys gives the gateway\'s schema exactly', () => {
  const ref = JSON.parse(JSON.stringify(ConfigSchema)) as Node;
  const { $schema, title, ...rest } = published;
  assert.equal($schema, 'http://json-schema.org/draft-07/schema#');
  assert.equal(title, 'tokengate configuration');
  assert.deepEqual(plain(rest, ref), ref);
  // The only keys no longer required are the ones with a default.
  const requiredAt = (n: Node): number => (Array.isArray(n.required) ? n.required.length : 0);
  assert.ok(requiredAt(ref) > requiredAt(rest));
  assert.deepEqual(rest.required, ['routes']);
});

function validator() {
  const ajv = new Ajv({ allErrors: true, strict: false });
  addFormats.default(ajv);
  return ajv.compile(published);
}

test('every config/*.yaml names the schema in its modeline and passes it as written', () => {
  const validate = validator();
  const files = readdirSync(new URL('../../../config/', import.meta.url)).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 2);
  for (const f of files) {
    const text = readFileSync(new URL(`../../../config/${f}`, import.meta.url), 'utf8');
    assert.equal(text.split('\n')[0], '# yaml-language-server: $schema=./tokengate.schema.json', f);
    assert.ok(validate(parse(text)), `${f}: ${JSON.stringify(validate.errors)}`);
  }
});

test('it flags what an editor should: an unknown key, a wrong type, an unknown auth mode; env references pass', () => {
  const validate = validator();
  const route = { id: 'r', match: { pathPrefix: '/' }, upstream: 'http://127.0.0.1:3000', auth: { mode: 'none' } };
  const ok = (doc: unknown) => validate(doc);
  assert.ok(ok({ routes: [route] }), JSON.stringify(validate.errors));
  assert.ok(ok({ server: { port: '${PORT:-8080}' }, routes: [{ ...route, upstream: '${UPSTREAM}' }] }), JSON.stringify(validate.errors));
  assert.ok(!ok({ server: { prot: 8080 }, routes: [route] }), 'unknown key');
  assert.ok(!ok({ server: { port: 'eighty' }, routes: [route] }), 'wrong type');
  assert.ok(!ok({ routes: [{ ...route, auth: { mode: 'jwtt' } }] }), 'unknown mode');
  assert.ok(!ok({ server: {} }), 'routes are required');
});
