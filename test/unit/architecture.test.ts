/**
 * The layering a newcomer can rely on, checked with a dependency analyser (dpdm) over every
 * module under src/: no import cycle, type-only imports included (a cycle through types
 * still ties two layers together); and one way in for requests — nothing in src/ takes
 * Node's own `request` listener from under Fastify.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseCircular, parseDependencyTree } from 'dpdm';

const ROOT = new URL('../../', import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('src/ has no import cycle, type-only imports included', async () => {
  const files = sources(join(ROOT, 'src')).map((f) => relative(ROOT, f));
  // transform: false keeps `import type` edges; the whole tree is read from every module.
  const tree = await parseDependencyTree(files, { cwd: ROOT, context: ROOT, transform: false, skipDynamicImports: false, tsconfig: join(ROOT, 'tsconfig.json') });
  assert.ok(Object.keys(tree).length >= files.length, 'every module was read');
  const cycles = parseCircular(tree);
  assert.deepEqual(cycles.map((c) => c.join(' -> ')), []);
});

test('one way in: no module takes Node\'s request listener from Fastify', () => {
  for (const f of sources(join(ROOT, 'src'))) {
    assert.doesNotMatch(readFileSync(f, 'utf8'), /listeners\(['"]request['"]\)|removeAllListeners\(['"]request['"]\)/, relative(ROOT, f));
  }
});
