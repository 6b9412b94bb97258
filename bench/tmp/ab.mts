import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { runLoad } from '../lib/load.js';
const up = createServer((req, res) => { req.resume(); res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' }); res.end('ok'); });
await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
const upstream = `http://127.0.0.1:${(up.address() as any).port}`;
const modes = process.argv.slice(2);
const procs = modes.map((m, i) => spawn(process.execPath, ['--import', 'tsx', 'proto.mts', m, upstream, String(19100 + i)], { stdio: 'inherit' }));
await new Promise((r) => setTimeout(r, 4000));
const res: Record<string, number[]> = {};
for (let round = 0; round < 6; round++) for (const [i, m] of modes.entries()) {
  const r = await runLoad({ url: `http://127.0.0.1:${19100 + i}/x`, connections: 50, durationSec: 2 });
  (res[m] ??= []).push(Math.round(r.rps));
}
console.log(res);
for (const p of procs) p.kill(); up.close(); up.closeAllConnections();
