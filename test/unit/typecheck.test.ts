/**
 * The whole project (src, tests, bench, scripts) type-checks under the strict tsconfig.
 * Tests run through tsx, which strips types without checking them, so without this a
 * type error would only show at `npm run build`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

test('tsc --noEmit passes on the whole project', { timeout: 180_000 }, () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json'), '--noEmit'], { encoding: 'utf8', timeout: 170_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
