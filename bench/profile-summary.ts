/**
 * Summarizes a V8 `.cpuprofile` (from `node --cpu-prof`, e.g. the gateway run by
 * `BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=DIR" npm run bench`): the functions with
 * the most self time, and self time per package (node_modules/<name>, node internals, ours).
 *
 *   node --import tsx bench/profile-summary.ts FILE.cpuprofile [TOP]
 */
import { readFileSync } from 'node:fs';

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: CpuNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time (µs) per function and per package. */
export function summarize(profile: CpuProfile): { total: number; functions: Array<[string, number]>; packages: Array<[string, number]> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const functions = new Map<string, number>();
  const packages = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    total += us;
    const file = f.url.replace(/^file:\/\//, '');
    const short = file.replace(/^.*node_modules\//, '').replace(/^.*\/(src|dist)\//, '$1/');
    const key = `${f.functionName || '(anonymous)'} ${short ? `${short}:${f.lineNumber + 1}` : ''}`.trim();
    functions.set(key, (functions.get(key) ?? 0) + us);
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)?.[1]
      ?? (file.startsWith('node:') || (file === '' && f.functionName !== '(garbage collector)' && f.functionName !== '(idle)' && f.functionName !== '(program)') ? 'node internals' : file === '' ? f.functionName : 'tokengate');
    packages.set(pkg, (packages.get(pkg) ?? 0) + us);
  }
  const sort = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { total, functions: sort(functions), packages: sort(packages) };
}

const [file, topArg] = process.argv.slice(2);
if (file) {
  const s = summarize(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile);
  const pct = (us: number) => `${((100 * us) / s.total).toFixed(1).padStart(5)} %`;
  console.log(`total sampled: ${(s.total / 1e6).toFixed(2)} s\n\nself time by package:`);
  for (const [k, us] of s.packages.slice(0, 15)) console.log(`  ${pct(us)}  ${k}`);
  console.log('\nself time by function:');
  for (const [k, us] of s.functions.slice(0, Number(topArg ?? 40))) console.log(`  ${pct(us)}  ${k}`);
}
