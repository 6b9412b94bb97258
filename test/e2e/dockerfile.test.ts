/**
 * The Dockerfile (no Docker engine runs here): parsed to check the stages, the pinned
 * LTS base, the production-only runtime install, the non-root user and the entrypoint;
 * linted with dockerfile-utils (hadolint is in neither npm nor Debian); and its exact
 * ENTRYPOINT + CMD command line run against the built output (dist/, bin/) with a config
 * at TOKENGATE_CONFIG, as the container would: /healthz 200 and a proxied request.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validate } from 'dockerfile-utils';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { freePort } from '../helpers/ports.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const TEXT = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');

interface Instr { keyword: string; args: string; line: number }
interface Stage { from: string; name: string | null; instrs: Instr[] }

/** Instructions (continuations joined, comments dropped) grouped by stage; ARGs before the first FROM returned apart. */
function parseDockerfile(text: string): { globalArgs: Map<string, string>; stages: Stage[] } {
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i];
    if (/^\s*(#|$)/.test(line)) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) line = line.slice(0, -1) + ' ' + lines[++i].trim();
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    assert.ok(m, `Dockerfile line ${start + 1} parses`);
    const keyword = m[1].toUpperCase();
    const args = m[2].trim();
    if (keyword === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args.replace(/--platform=\S+\s+/, ''))!;
      stages.push({ from: f[1].replace(/\$\{(\w+)\}/g, (_, v: string) => globalArgs.get(v) ?? ''), name: f[2] ?? null, instrs: [] });
    } else if (!stages.length && keyword === 'ARG') {
      const [k, v = ''] = args.split('=');
      globalArgs.set(k, v);
    } else {
      stages.at(-1)!.instrs.push({ keyword, args, line: start + 1 });
    }
  }
  return { globalArgs, stages };
}

const { stages } = parseDockerfile(TEXT);
const runtime = stages.at(-1)!;
const last = (k: string) => runtime.instrs.filter((x) => x.keyword === k).at(-1);

test('multi-stage: build with dev dependencies, runtime with production ones only', () => {
  assert.ok(stages.length >= 2, 'at least two stages');
  const build = stages.find((s) => s.name === 'build');
  assert.ok(build, 'a stage named build');
  const buildRuns = build.instrs.filter((x) => x.keyword === 'RUN').map((x) => x.args).join('\n');
  assert.match(buildRuns, /npm ci(?![^\n]*--omit=dev)/, 'build stage installs dev dependencies');
  assert.match(buildRuns, /npm run build/);
  const runs = runtime.instrs.filter((x) => x.keyword === 'RUN').map((x) => x.args).join('\n');
  assert.match(runs, /npm ci --omit=dev --ignore-scripts/);
  const copies = runtime.instrs.filter((x) => x.keyword === 'COPY').map((x) => x.args);
  assert.ok(copies.some((c) => /^--from=build\s+\/app\/dist\s+/.test(c)), 'dist/ comes from the build stage');
  assert.ok(copies.some((c) => /^bin\s/.test(c)), 'bin/ is copied');
  assert.ok(copies.some((c) => /^proto\s/.test(c)), 'proto/ is copied (the ext_authz listener loads it at start)');
  assert.ok(!copies.some((c) => /\bsrc\b/.test(c)), 'no sources in the runtime image');
});

test('a pinned Node LTS base (even major, explicit version, not latest)', () => {
  for (const s of stages) {
    const m = /^node:(\d+)\.(\d+)\.(\d+)-(alpine[\d.]+|bookworm-slim|bookworm)$/.exec(s.from);
    assert.ok(m, `pinned node tag (got ${s.from})`);
    assert.ok(Number(m[1]) >= 22 && Number(m[1]) % 2 === 0, 'an LTS line (even major >= 22)');
  }
});

test('the Node the image runs is the Node CI tests on, and package.json engines says so', () => {
  const pinned = /^node:(\d+\.\d+\.\d+)-/.exec(stages[0].from)![1];
  for (const s of stages) assert.ok(s.from.startsWith(`node:${pinned}-`), 'every stage on the same Node');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
  assert.equal(pkg.engines.node, `>=${pinned}`, 'engines names the tested version as the minimum');
  // .ci/run installs node-linux-<arch>@<the version it reads from the Dockerfile> first on PATH.
  const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
  assert.match(ci, /sed -n 's\/\^ARG NODE_IMAGE=node:/);
  assert.match(ci, /"\$node_pkg@\$node_version"/);
  if (process.env.CI) assert.equal(process.version, `v${pinned}`, 'CI runs the tests on the image\'s Node');
});

test('private registry: .npmrc and CA come in as build secrets for every npm ci, never a COPY or ARG; no HEALTHCHECK', () => {
  const installs = stages.flatMap((s) => s.instrs.filter((x) => x.keyword === 'RUN' && /npm ci/.test(x.args)));
  assert.equal(installs.length, 2);
  for (const run of installs) {
    assert.match(run.args, /--mount=type=secret,id=npmrc,target=\/root\/\.npmrc/, `line ${run.line}`);
    assert.match(run.args, /--mount=type=secret,id=npm_ca,target=\/run\/secrets\/npm_ca/, `line ${run.line}`);
    assert.match(run.args, /NODE_EXTRA_CA_CERTS=\/run\/secrets\/npm_ca/);
  }
  const all = stages.flatMap((s) => s.instrs);
  assert.ok(!all.some((x) => (x.keyword === 'COPY' || x.keyword === 'ADD') && /npmrc|\.pem|\.crt/.test(x.args)), 'no credential file copied into a layer');
  assert.ok(!all.some((x) => x.keyword === 'ARG' && /token|npmrc|auth/i.test(x.args)), 'no credential as a build arg');
  assert.ok(!all.some((x) => x.keyword === 'HEALTHCHECK'), 'no HEALTHCHECK (documented in the Dockerfile and README)');
});

test('runs as a non-root numeric user; read-only friendly; entrypoint and config path', () => {
  const user = last('USER');
  assert.ok(user, 'USER set in the runtime stage');
  const [uid] = user.args.split(':');
  assert.match(uid, /^\d+$/, 'numeric uid (Kubernetes runAsNonRoot can verify it)');
  assert.notEqual(Number(uid), 0, 'not root');
  assert.ok(runtime.instrs.indexOf(user) > runtime.instrs.findIndex((x) => x.keyword === 'RUN'), 'USER after the last RUN');
  assert.deepEqual(JSON.parse(last('ENTRYPOINT')!.args), ['node', 'bin/tokengate.js'], 'exec form: node is PID 1 and gets the signals');
  assert.match(last('ENV')!.args, /TOKENGATE_CONFIG=\/etc\/tokengate\/gateway\.yaml/);
  assert.match(TEXT, /EXPOSE 8080 8081 9090/);
  assert.ok(!/VOLUME|\/tmp/.test(runtime.instrs.map((x) => x.args).join('\n')), 'no writable paths needed');
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8');
  for (const p of ['node_modules', 'dist', '.git']) assert.match(ignore, new RegExp(`^${p.replace('.', '\\.')}$`, 'm'));
});

test('lint (dockerfile-utils; hadolint is not installable here)', () => {
  assert.ok(validate('RUN echo no FROM').length > 0, 'the linter reports problems when there are some');
  assert.deepEqual(validate(TEXT).map((d) => `${d.range.start.line + 1}: ${d.message}`), []);
});

let up: EchoUpstream; let dir = ''; let child: ChildProcess | null = null;
before(async () => {
  up = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'tokengate-docker-'));
});
after(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await up?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the exact ENTRYPOINT + CMD, run on the built output with TOKENGATE_CONFIG, serves and exits 0 on SIGTERM', async () => {
  assert.ok(existsSync(join(ROOT, 'dist/cli.js')), 'dist/ is built (npm ci runs `prepare`; else npm run build)');
  const argv = [...JSON.parse(last('ENTRYPOINT')!.args) as string[], ...JSON.parse(last('CMD')?.args ?? '[]') as string[]];
  assert.equal(argv[0], 'node');
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, `
server: { host: 127.0.0.1, port: ${port}, shutdownGraceSec: 1 }
admin: { host: 127.0.0.1, port: ${adminPort} }
routes:
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
`);
  // WORKDIR /app is the repository root here; the container's env is NODE_ENV + TOKENGATE_CONFIG.
  child = spawn(process.execPath, argv.slice(1), {
    cwd: ROOT,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', TOKENGATE_CONFIG: file },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
  const until = Date.now() + 15_000;
  let health = 0;
  while (health !== 200) {
    health = await fetch(`http://127.0.0.1:${adminPort}/healthz`).then((r) => r.status, () => 0);
    if (child.exitCode !== null || Date.now() > until) throw new Error(`entrypoint did not start: ${output}`);
    if (health !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  const r = await fetch(`http://127.0.0.1:${port}/pub/hello?x=1`);
  assert.equal(r.status, 200);
  assert.equal(up.requests.at(-1)!.url, '/pub/hello?x=1');
  child.kill('SIGTERM');
  assert.equal(await exited, 0, output);
});
