/**
 * The config and pipeline modules import each other without cycles (type-only imports
 * included): a cycle makes load order matter and ties the modules together. Imports are
 * read with the TypeScript compiler's own pre-processor, not a regular expression.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const src = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
const FOLDERS = ['config', 'pipeline'];

/** Relative imports of each module under the folders, as absolute `.ts` paths, kept to those folders. */
function importGraph(): Map<string, string[]> {
  const files = FOLDERS.flatMap((f) => readdirSync(join(src, f)).filter((n) => n.endsWith('.ts')).map((n) => join(src, f, n)));
  const inScope = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    graph.set(file, importedFiles.map((i) => i.fileName).filter((n) => n.startsWith('.'))
      .map((n) => resolve(dirname(file), n.replace(/\.js$/, '.ts'))).filter((p) => inScope.has(p)));
  }
  return graph;
}

/** Every cycle met by a depth-first walk, as module paths relative to src. */
function cycles(graph: Map<string, string[]>): string[] {
  const found: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string) => {
    state.set(n, 'open');
    stack.push(n);
    for (const d of graph.get(n) ?? []) {
      if (state.get(d) === 'open') found.push([...stack.slice(stack.indexOf(d)), d].map((p) => relative(src, p)).join(' -> '));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of graph.keys()) if (!state.has(n)) visit(n);
  return found;
}

test('src/config and src/pipeline have no import cycle', () => {
  const graph = importGraph();
  assert.ok(graph.get(join(src, 'config', 'compile.ts'))?.includes(join(src, 'pipeline', 'match.ts')), 'the graph sees compile.ts -> match.ts');
  assert.deepEqual(cycles(graph), []);
});

test('the cycle finder finds a cycle', () => {
  assert.deepEqual(cycles(new Map([['/s/a.ts', ['/s/b.ts']], ['/s/b.ts', ['/s/a.ts']]])).length, 1);
});
