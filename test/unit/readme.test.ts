/**
 * The README tells the truth about the code: the config reference is the generated one,
 * every error reason and every metric is documented.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERRORS } from '../../src/errors.js';
import { Metrics } from '../../src/metrics.js';
import { referenceBlock } from '../../scripts/gen-config-docs.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const README = readFileSync(`${ROOT}README.md`, 'utf8');

test('the README config reference is what scripts/gen-config-docs.ts generates', () => {
  assert.ok(README.includes(referenceBlock()), 'README config reference is stale: run npx tsx scripts/gen-config-docs.ts');
});

test('scripts/gen-config-docs.ts --check agrees (the command CI would run)', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/gen-config-docs.ts', '--check'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
});

test('every reason in src/errors.ts appears in the README error table', () => {
  const start = README.indexOf('## Errors');
  const table = README.slice(start, README.indexOf('\n## ', start + 1));
  for (const reason of Object.keys(ERRORS)) {
    assert.ok(table.includes(`\`${reason}\``), `reason ${reason} is not in the README error table`);
  }
});

test('every tokengate_ metric in src/metrics.ts appears in the README', async () => {
  const names = (await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => n.startsWith('tokengate_'));
  assert.ok(names.length >= 8);
  for (const name of names) assert.ok(README.includes(`\`${name}\``), `metric ${name} is not in the README`);
});
