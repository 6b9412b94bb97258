/**
 * The k6 scripts cannot run here (no k6 binary): they are type-checked against @types/k6
 * instead (k6/tsconfig.json: checkJs, strict), so a wrong API call or option fails `npm test`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

test('k6 scripts type-check against @types/k6', { timeout: 120_000 }, () => {
  const scripts = readdirSync(join(root, 'k6')).filter((f) => f.endsWith('.js')).sort();
  assert.deepEqual(scripts, ['load.js', 'smoke.js', 'soak.js', 'spike.js']);
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'k6', 'tsconfig.json'), '--noEmit', '--listFilesOnly'], { encoding: 'utf8', timeout: 110_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  for (const f of [...scripts, 'lib/common.js']) assert.ok(r.stdout.includes(join('k6', f)), `${f} is part of the check`);
  const check = spawnSync(process.execPath, [tsc, '-p', join(root, 'k6', 'tsconfig.json'), '--noEmit'], { encoding: 'utf8', timeout: 110_000 });
  assert.equal(check.status, 0, check.stdout + check.stderr);
});
