/**
 * Deployment-level fail-closed properties that deploy.test.ts / deploy-redis.test.ts do not
 * state (static: the manifests, the Dockerfile and the README are parsed, nothing runs in a
 * cluster):
 *
 * 1. deploy/redis ships placeholder credentials in a Secret that `kubectl apply -k` applies
 *    as they are. Whoever can write to that Redis can plant introspection answers (the
 *    cache key is a SHA-256 of non-secret inputs: issuer, endpoint, client id, token) and
 *    delete seen DPoP proof ids, so a Redis password that is printed in this repository is
 *    no password. The Redis pod must refuse to start on the placeholders (then DPoP
 *    requests get 503 and introspection goes to the IdP: fail closed).
 * 2. The admin port (/metrics, /readyz; no authentication) must not be published on every
 *    host interface by the documented `docker run` (SECURITY.md: bind it privately).
 * 3. In the gateway shape, the upstreams are ordinary Services that any pod can call with a
 *    forged `X-Auth-Subject`: the README must give a NetworkPolicy that admits only the
 *    gateway pods (and, for forward auth, the ingress controller pods), each peer pinned by
 *    namespace *and* pod labels, on the upstream's port.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

const ROOT = new URL('../../', import.meta.url).pathname;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type K8s = Record<string, any>;

function parse(text: string, what: string): K8s[] {
  return parseAllDocuments(text).map((d) => {
    assert.deepEqual(d.errors.map((e) => e.message), [], what);
    return d.toJS() as K8s;
  }).filter(Boolean);
}
const parseFile = (rel: string) => parse(readFileSync(join(ROOT, rel), 'utf8'), rel);
const selects = (sel: Record<string, string> | undefined, labels: Record<string, string>) =>
  !!sel && Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => labels?.[k] === v);

async function validateModel(o: K8s): Promise<void> {
  const mod = await import(`kubernetes-models/${o.apiVersion}`) as Record<string, new (x: K8s) => { validate(): void }>;
  assert.ok(mod[o.kind], `kubernetes-models knows ${o.apiVersion} ${o.kind}`);
  new mod[o.kind](o).validate();
}

test('deploy/redis: the Redis pod refuses to start while its Secret holds the shipped placeholders', () => {
  const [secret] = parseFile('deploy/redis/secret.yaml');
  const [dep] = parseFile('deploy/redis/deployment.yaml');
  const pod = dep.spec.template.spec;
  const usesKey = (c: K8s, key: string) => (c.env ?? []).some((e: K8s) => e.valueFrom?.secretKeyRef?.name === secret.metadata.name && e.valueFrom.secretKeyRef.key === key);
  const keys = Object.keys(secret.stringData);
  assert.deepEqual(keys.sort(), ['dpop-nonce-secret', 'password']);
  const guards = (pod.initContainers ?? []).filter((c: K8s) => keys.every((k) => usesKey(c, k)));
  assert.equal(guards.length, 1, 'an init container that checks every key of the tokengate-redis Secret before Redis starts');
  const guard = guards[0];
  for (const f of ['readOnlyRootFilesystem', 'runAsNonRoot']) assert.equal(guard.securityContext?.[f], true, `guard ${f}`);
  assert.equal(guard.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(guard.securityContext.capabilities?.drop, ['ALL']);
  assert.ok(guard.resources?.limits?.memory, 'guard memory limit');
  assert.equal(guard.image, pod.containers[0].image, 'the Redis image (busybox sh), nothing else to pull');

  const run = (values: Record<string, string>) => {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    for (const e of guard.env) env[e.name] = values[e.valueFrom.secretKeyRef.key];
    return spawnSync(guard.command[0], [...guard.command.slice(1), ...(guard.args ?? [])], { env, encoding: 'utf8', timeout: 10_000 });
  };
  // As shipped: refused, and the value is never printed.
  const shipped = run(secret.stringData);
  assert.notEqual(shipped.status, 0, 'the shipped placeholders must not start Redis');
  for (const v of Object.values(secret.stringData) as string[]) assert.ok(!`${shipped.stdout}${shipped.stderr}`.includes(v), 'the guard never prints a value');
  // One placeholder left, the other replaced: still refused.
  assert.notEqual(run({ ...secret.stringData, password: randomBytes(32).toString('hex') }).status, 0, 'nonce secret placeholder refused');
  assert.notEqual(run({ ...secret.stringData, 'dpop-nonce-secret': randomBytes(32).toString('hex') }).status, 0, 'password placeholder refused');
  assert.notEqual(run({ password: 'short', 'dpop-nonce-secret': randomBytes(32).toString('hex') }).status, 0, 'a short password refused');
  // Real values (what the README says to use: `openssl rand -hex 32`): starts.
  const ok = run({ password: randomBytes(32).toString('hex'), 'dpop-nonce-secret': randomBytes(32).toString('hex') });
  assert.equal(ok.status, 0, `${ok.stdout}${ok.stderr}`);
});

test('documented `docker run` publishes the admin port (no authentication) on loopback only', () => {
  const sources: Array<[string, string]> = [
    ['README.md', readFileSync(join(ROOT, 'README.md'), 'utf8')],
    // The Dockerfile's usage comment, comment markers removed.
    ['Dockerfile', readFileSync(join(ROOT, 'Dockerfile'), 'utf8').split('\n').map((l) => l.replace(/^#\s?/, '')).join('\n')],
  ];
  let runs = 0;
  for (const [name, text] of sources) {
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      if (!/^\s*docker run\b/.test(lines[i])) continue;
      let cmd = lines[i];
      while (cmd.trimEnd().endsWith('\\') && i + 1 < lines.length) cmd = cmd.trimEnd().slice(0, -1) + ' ' + lines[++i].trim();
      runs++;
      for (const m of cmd.matchAll(/(?:-p|--publish)[ =](\S+)/g)) {
        const spec = m[1];
        const container = Number(spec.split(':').at(-1)!.split('/')[0]);
        if (container === 9090) assert.match(spec, /^127\.0\.0\.1:/, `${name}: \`${cmd.trim()}\` publishes the admin port on every interface`);
      }
    }
  }
  assert.ok(runs >= 2, `found ${runs} docker run examples`);
});

test('README: the gateway shape comes with an upstream NetworkPolicy admitting only tokengate (and the ingress for forward auth)', async () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
  const nps = blocks.flatMap((b, i) => parse(b, `README yaml block ${i}`)).filter((o) => o.kind === 'NetworkPolicy');
  assert.equal(nps.length, 1, 'one NetworkPolicy example for the upstreams in the README');
  const np = nps[0];
  await validateModel(np);
  assert.ok(np.spec.policyTypes.includes('Ingress'));
  assert.ok(Object.keys(np.spec.podSelector.matchLabels ?? {}).length > 0, 'selects the upstream pods, not the whole namespace');

  const gw = parseFile('deploy/overlays/gateway/deployment.yaml')[0];
  const gwLabels = gw.spec.template.metadata.labels;
  const cm = parseFile('deploy/overlays/gateway/configmap.yaml')[0];
  const cfg = parse(cm.data['gateway.yaml'], 'gateway config')[0];
  const ordersPorts = new Set(cfg.routes.filter((r: K8s) => /\/\/orders\./.test(r.upstream)).map((r: K8s) => Number(new URL(r.upstream).port)));
  assert.equal(ordersPorts.size, 1);

  assert.ok(np.spec.ingress.length >= 1);
  let gatewayAdmitted = false;
  for (const rule of np.spec.ingress) {
    assert.ok(Array.isArray(rule.from) && rule.from.length > 0, 'every rule names its peers (no rule open to every source)');
    assert.ok(Array.isArray(rule.ports) && rule.ports.length > 0, 'every rule names its ports');
    for (const p of rule.ports) assert.ok(ordersPorts.has(Number(p.port)), `port ${p.port} is the upstream port`);
    for (const peer of rule.from) {
      assert.equal(peer.ipBlock, undefined, 'no ipBlock peers');
      assert.ok(Object.keys(peer.namespaceSelector?.matchLabels ?? {}).length > 0, 'peer pinned to a namespace');
      assert.ok(Object.keys(peer.podSelector?.matchLabels ?? {}).length > 0, 'peer pinned to pod labels, not a whole namespace');
      if (selects(peer.podSelector.matchLabels, gwLabels)) gatewayAdmitted = true;
    }
  }
  assert.ok(gatewayAdmitted, 'the gateway pods are admitted');
});
