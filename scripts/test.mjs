#!/usr/bin/env node
// Runs every test file under test/ with Node's own runner (Node 20's --test does
// not expand globs nor find .ts files by itself). Extra args are passed through;
// `node scripts/test.mjs test/unit` runs one folder.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const roots = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const flags = process.argv.slice(2).filter((a) => a.startsWith('-'));
const files = [];
function walk(p) {
  if (statSync(p).isDirectory()) {
    for (const name of readdirSync(p).sort()) walk(join(p, name));
  } else if (p.endsWith('.test.ts')) files.push(p);
}
for (const r of roots.length ? roots : ['test']) walk(r);
const res = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-force-exit', '--test-concurrency=2', '--test-timeout=120000', ...flags, ...files],
  { stdio: 'inherit', env: { ...process.env, NODE_ENV: 'test' } },
);
process.exit(res.status ?? 1);
