/**
 * The plain reader (src/config/plain-yaml.ts) against `yaml`, on random documents: random
 * trees written in block and flow style with tricky scalars (core-schema spellings of null,
 * booleans and numbers, indicators, `#`, `: `, quotes, `${VAR}` references), then perhaps
 * mutated in their text (a character inserted, removed or replaced, a line re-indented).
 *
 * Whatever the reader reads, `yaml` must read without error, to the same values (after the
 * same `${VAR}` substitution), and each value must be placed on the line `yaml` places it.
 * It may give up on anything (the config loader then uses `yaml`), but not on the forms
 * configs are written in. fast-check prints the seed of a failure; FC_SEED replays it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import fc from 'fast-check';
import { isNode, LineCounter, parseDocument } from 'yaml';
import { substituteEnv, substituteScalar } from '../../../src/config/env.js';
import { GIVE_UP, readPlainYaml, type PlainYaml, type Seg } from '../../../src/config/plain-yaml.js';

const RUNS = Number(process.env.FC_RUNS ?? 3000);
const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
const ENV = {
  HOST: 'h.example', PORT: '8080', FLAG: 'true', EMPTY: '', HASHED: 'a #b', SPACE: ' x',
  DEV_ISSUER: 'http://127.0.0.1:4000', DEV_UPSTREAM: 'http://127.0.0.1:4001',
};

function readFast(text: string): PlainYaml | null {
  return readPlainYaml(text, (raw, plain) => {
    const r = substituteScalar(raw, plain, ENV);
    return 'value' in r ? r.value : GIVE_UP;
  });
}

/** Every key path of `v`'s values, depth first. */
function paths(v: unknown, at: Seg[] = []): Seg[][] {
  const out: Seg[][] = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

/** Holds the reader to `yaml` on `text`; returns whether the reader read it. */
function agree(text: string): boolean {
  const fast = readFast(text);
  if (!fast) return false;
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  assert.deepEqual(doc.errors.map((e) => e.message), [], `read text that yaml refuses:\n${text}`);
  const problems = substituteEnv(doc, ENV);
  assert.deepEqual(problems.map((p) => p.message), [], `read text whose references yaml's path refuses:\n${text}`);
  assert.deepEqual(fast.data, doc.toJS(), `other values than yaml's:\n${text}`);
  for (const p of paths(fast.data)) {
    const node: unknown = p.length ? doc.getIn(p, true) : doc.contents;
    if (!isNode(node) || !node.range) continue;
    assert.equal(fast.lineAt(p), lines.linePos(node.range[0]).line, `line of ${JSON.stringify(p)} in:\n${text}`);
  }
  return true;
}

/** Keys and scalars as configs have them, and (fewer, so that many documents lie in the subset) tricky ones. */
const COMMON_KEYS = ['id', 'match', 'path', 'upstream', 'auth', 'x-auth-subject', 'realm_access.roles'];
const COMMON_SCALARS = ['plain', 'two words', '/orders', 'http://svc.internal:8080', '0.0.0.0', 'true', '8080', '${PORT}', 'orders:read'];
const TRICKY_KEYS = ['id', 'match', 'path', 'a b', 'x-auth-subject', 'realm_access.roles', 'k:v', 'a#b', 'null', 'True', '1', '0x1', '~', '-a', '?a', '"q"', "'s'", 'a]', '__proto__', '${HOST}', 'é'];
const TRICKY_SCALARS = [
  'plain', 'two words', '/orders', 'http://svc.internal:8080', 'api.example.com', '0.0.0.0', '10.0.0.0/8', 'a#b', 'a #b', 'a: b', 'a:b', 'a:', ':a',
  'true', 'True', 'TRUE', 'tRue', 'false', 'null', 'Null', 'NULL', '~', '', '0', '8080', '007', '-1', '+1', '1.5', '1e3', '.5', '0x1F', '0o17', '.inf', '-.Inf', '.nan',
  "it's", 'say "hi"', 'back\\slash', 'a, b', '[x]', '{x}', 'a]', '&anchor', '*alias', '!tag', '|', '>', '%x', '@x', '`x', '- x', '-x', '?x', 'é ü', '12345678901234567',
  '${HOST}', '${PORT}', '${FLAG}', '${MISSING}', '${MISSING:-dflt}', 'x${PORT}y', '${EMPTY}', '${HASHED}', '${SPACE}', '${PORT', '$PORT',
];

/** Mostly one of `common`, now and then one of `tricky`. */
const pick = (common: string[], tricky: string[]) =>
  fc.oneof({ arbitrary: fc.constantFrom(...common), weight: 5 }, { arbitrary: fc.constantFrom(...tricky), weight: 1 });

/** A random tree: mappings, sequences and scalars (as text, quoted by the writer). */
type Tree = string | Tree[] | Array<[string, Tree]> & { isMap: true };
const tree = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    pick(COMMON_SCALARS, TRICKY_SCALARS),
    fc.array(tie('node'), { maxLength: 4 }),
    fc.array(fc.tuple(pick(COMMON_KEYS, TRICKY_KEYS), tie('node')), { maxLength: 4 }).map((entries) => Object.assign(entries, { isMap: true as const })),
  ),
})).node as fc.Arbitrary<Tree>;

const isMap = (t: Tree): t is Array<[string, Tree]> & { isMap: true } => Array.isArray(t) && (t as { isMap?: true }).isMap === true;

/** How a scalar is written: plain, single- or double-quoted. */
function scalar(s: string, style: number): string {
  if (style === 1) return `'${s.replace(/'/g, "''")}'`;
  if (style === 2) return `"${s}"`;
  return s;
}

/** Writes `t` in flow style. */
function flow(t: Tree, style: number): string {
  if (typeof t === 'string') return scalar(t, style % 3);
  if (isMap(t)) return `{ ${t.map(([k, v], i) => `${scalar(k, (style + i) % 3)}: ${flow(v, style + i + 1)}`).join(', ')} }`;
  return `[${t.map((v, i) => flow(v, style + i)).join(', ')}]`;
}

/** Writes `t` in block style at `indent`, choosing flow for some collections; lines without a trailing newline. */
function block(t: Tree, indent: number, style: number): string[] {
  const pad = ' '.repeat(indent);
  if (typeof t === 'string' || style % 5 === 4) return [`${pad}${flow(t, style)}`];
  const out: string[] = [];
  if (style % 7 === 3) out.push(`${pad}# a comment`, '');
  if (isMap(t)) {
    if (!t.length) return [`${pad}{}`];
    t.forEach(([k, v], i) => {
      const key = `${pad}${scalar(k, (style + i) % 4 === 3 ? 1 : 0)}:`;
      if (typeof v === 'string' || (style + i) % 3 === 0) out.push(`${key} ${flow(v, style + i)}${(style + i) % 6 === 5 ? ' # note' : ''}`);
      else {
        out.push(key);
        // A sequence under a key may stand at the key's own indentation.
        const nested = !isMap(v) && (style + i) % 4 === 1 ? indent : indent + 2;
        out.push(...block(v, nested, style + i + 1));
      }
    });
    return out;
  }
  if (!t.length) return [`${pad}[]`];
  t.forEach((v, i) => {
    if (isMap(v) && v.length && (style + i) % 2 === 0) {
      // `- key: value` with the mapping's next keys under the first.
      const lines = block(v, indent + 2, style + i);
      out.push(`${pad}- ${lines[0].slice(indent + 2)}`, ...lines.slice(1));
    } else if (typeof v === 'string' || (style + i) % 3 === 0) {
      out.push(`${pad}- ${flow(v, style + i)}`);
    } else {
      out.push(`${pad}-`, ...block(v, indent + 2, style + i + 1));
    }
  });
  return out;
}

const MUTATIONS = [' ', '\n', '\t', ':', '#', '-', '"', "'", ',', '[', ']', '{', '}', '&', '*', '!', '|', '?', '\\', '${', '\r', '---\n'];
const document = fc.tuple(
  tree.filter((t) => isMap(t) && t.length > 0),
  fc.nat(1000),
  fc.option(fc.tuple(fc.nat(), fc.constantFrom('insert', 'delete', 'replace', 'indent'), fc.constantFrom(...MUTATIONS)), { freq: 2 }),
).map(([t, style, mutation]) => {
  let text = block(t, 0, style).join('\n') + '\n';
  if (mutation) {
    const [at, kind, piece] = mutation;
    const i = at % text.length;
    if (kind === 'insert') text = text.slice(0, i) + piece + text.slice(i);
    else if (kind === 'delete') text = text.slice(0, i) + text.slice(i + 1);
    else if (kind === 'replace') text = text.slice(0, i) + piece + text.slice(i + piece.length);
    else {
      const start = text.lastIndexOf('\n', i) + 1;
      text = text.slice(0, start) + ' ' + text.slice(start);
    }
  }
  return text;
});

test('what the plain reader reads, it reads as yaml does: values and lines', () => {
  let read = 0;
  let runs = 0;
  fc.assert(fc.property(document, (text) => {
    runs++;
    if (agree(text)) read++;
  }), { numRuns: RUNS, seed: SEED });
  // Not a vacuous pass: a good share of the random documents lie in the subset.
  assert.ok(read > runs / 4, `read ${read} of ${runs}`);
});

test('the plain reader gives up on what it does not read, and on what yaml refuses', () => {
  const giveUp = [
    'a: &x 1\nb: *x\n', 'a: !!str 1\n', 'a: |\n  text\n', 'a: >\n  text\n', '? a\n: b\n', '%YAML 1.1\n---\na: 1\n', 'a: 1\n---\nb: 2\n',
    'a:\n\tb: 1\n', 'a: 1\r\nb: 2\r\n', 'a: "x\\ny"\n', 'a: two\n  lines\n', 'a: [1,\n  2]\n', 'a: "open\n  quote"\n', 'a: 1\na: 2\n',
    'a: { b: 1, b: 2 }\n', '1: one\n', 'null: x\n', 'a: 1.5\n', 'a: 0x1F\n', 'a: -1\n', 'a: 007\n', '__proto__: {}\n', 'a: b: c\n',
    'a: [1, 2,]\n', 'a: { b }\n', '[a]: b\n', '- - a\n', 'a:\n-\nb: 1\n', 'a: 1\n  b: 2\n', 'a: ${MISSING}\n', 'a: ${HASHED}\n', '${HOST}: a\n',
    'a:\n  b\n  c\n', '- a\nb: 1\n', '',
  ];
  for (const text of giveUp) assert.equal(readFast(text), null, JSON.stringify(text));
});

test('the plain reader reads the forms configs are written in, and every config and example of the repository', () => {
  const root = new URL('../../../', import.meta.url);
  const files = readdirSync(new URL('config/', root)).filter((f) => f.endsWith('.yaml')).map((f) => new URL(`config/${f}`, root));
  assert.ok(files.length >= 2);
  for (const f of files) assert.ok(agree(readFileSync(f, 'utf8')), f.pathname);
  const forms = `# tokengate
server:
  port: \${PORT:-8080}
  host: 0.0.0.0   # all interfaces
  trustProxy: false
  redis: { url: "\${REDIS_URL:-redis://127.0.0.1:6379}" }
issuers:
- id: corp
  issuer: 'https://idp.example.com/realms/corp'
  audiences: [orders-api, "billing"]
  jwks: { cacheTtlSec: 600, cooldownSec: 30 }

routes:
  - { id: r1, match: { host: api.example.com, pathPrefix: /orders, methods: [GET, HEAD] }, upstream: http://orders.internal:3000, auth: { mode: none } }
  - id: r2
    match:
      path: /orders/x
    upstream: http://orders.internal:3000
    auth:
      mode: jwt
      claims: { realm_access.roles: orders-admin, tenant: acme }
      scopes:
        allOf:
          - orders:read
    forward:
      headers:
        x-auth-subject: sub
`;
  assert.ok(agree(forms));
  // The core schema's other spellings of null and booleans, and empty values.
  const spellings = 'a: True\nb: FALSE\nc: Null\nd: NULL\ne: ~\nf:\ng: [tRue, True]\nh:\n\n  # x\ni: 0\n';
  assert.ok(agree(spellings));
  assert.deepEqual(readFast(spellings)!.data, { a: true, b: false, c: null, d: null, e: null, f: null, g: ['tRue', true], h: null, i: 0 });
  const fast = readFast(forms)!;
  assert.equal((fast.data as { server: { port: unknown } }).server.port, 8080);
  assert.equal(fast.lineAt(['routes', 1, 'auth', 'scopes', 'allOf', 0]), 24);
  assert.equal(fast.lineAt(['routes', 1, 'auth', 'audiences']), 20, 'a missing key is placed at its parent');
});
