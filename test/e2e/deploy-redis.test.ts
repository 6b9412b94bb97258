/**
 * deploy/redis + deploy/overlays/gateway-redis: the optional Redis wiring. The overlay is
 * built here the way kustomize does for what it uses (resources, a strategic-merge patch
 * of the tokengate container's env, a JSON 6902 replace of the ConfigMap's config) and,
 * when `kubectl` is installed, compared with `kubectl kustomize`. Every object validates
 * against the Kubernetes schemas; names, ports, selectors and secrets line up; Redis is
 * hardened, unpersisted, noeviction and reachable from tokengate pods only; the embedded
 * config passes `tokengate check` with the Redis URL the Deployment builds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { loadCompiled } from '../../src/config/index.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const DEPLOY = join(ROOT, 'deploy');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type K8s = Record<string, any>;

function parseFile(file: string): K8s[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    assert.deepEqual(d.errors, [], file);
    return d.toJS() as K8s;
  }).filter(Boolean);
}

/** Resources, images and labels (as in deploy.test.ts) plus the two patch kinds this overlay uses. */
function build(dir: string): K8s[] {
  const [k] = parseFile(join(dir, 'kustomization.yaml'));
  const objects: K8s[] = [];
  for (const r of k.resources as string[]) {
    const p = join(dir, r);
    objects.push(...(r.endsWith('.yaml') ? parseFile(p) : build(p)));
  }
  for (const img of k.images ?? []) {
    for (const o of objects) for (const c of o.spec?.template?.spec?.containers ?? []) if (c.image === img.name) c.image = `${img.newName}:${img.newTag}`;
  }
  for (const l of k.labels ?? []) for (const o of objects) o.metadata.labels = { ...o.metadata.labels, ...l.pairs };
  for (const p of k.patches ?? []) {
    const target = objects.find((o) => o.kind === p.target.kind && o.metadata.name === p.target.name);
    assert.ok(target, `patch target ${p.target.kind}/${p.target.name} exists`);
    const doc = parseAllDocuments(p.patch as string)[0].toJS() as K8s | K8s[];
    if (Array.isArray(doc)) {
      for (const op of doc) {
        assert.equal(op.op, 'replace');
        const segs = (op.path as string).split('/').slice(1);
        let node = target;
        for (const s of segs.slice(0, -1)) node = node[s];
        assert.ok(segs.at(-1)! in node, `${op.path} exists`);
        node[segs.at(-1)!] = op.value;
      }
    } else {
      // Strategic merge for containers (by name) and their env (by name): the only shape used.
      for (const pc of doc.spec.template.spec.containers) {
        const c = target.spec.template.spec.containers.find((x: K8s) => x.name === pc.name);
        assert.ok(c, `container ${pc.name}`);
        // Like kustomize's strategic merge: replaced entries stay in place, new ones come first, in patch order.
        const added: K8s[] = [];
        for (const e of pc.env ?? []) {
          const i = c.env.findIndex((x: K8s) => x.name === e.name);
          if (i >= 0) c.env[i] = e;
          else added.push(e);
        }
        c.env = [...added, ...c.env];
        assert.deepEqual(Object.keys(pc).filter((x) => x !== 'name' && x !== 'env'), [], 'patch touches env only');
      }
    }
  }
  return objects;
}

const find = (objs: K8s[], kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name);
const selects = (sel: Record<string, string>, labels: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels?.[k] === v);

test('overlay gateway-redis: valid, consistent, Redis hardened and private, config passes tokengate check', async () => {
  const objs = build(join(DEPLOY, 'overlays', 'gateway-redis'));
  for (const o of objs) {
    const mod = await import(`kubernetes-models/${o.apiVersion}`) as Record<string, new (x: K8s) => { validate(): void }>;
    new mod[o.kind](o).validate();
  }
  const gwDep = find(objs, 'Deployment', 'tokengate')!;
  const redisDep = find(objs, 'Deployment', 'tokengate-redis')!;
  const redisSvc = find(objs, 'Service', 'tokengate-redis')!;
  const secret = find(objs, 'Secret', 'tokengate-redis')!;
  const np = find(objs, 'NetworkPolicy', 'tokengate-redis')!;
  assert.ok(gwDep && redisDep && redisSvc && secret && np);

  // Redis: selected by its Service and NetworkPolicy, hardened, no persistence, noeviction, a password.
  const rpod = redisDep.spec.template.spec;
  const rlabels = redisDep.spec.template.metadata.labels;
  assert.ok(selects(redisDep.spec.selector.matchLabels, rlabels));
  assert.ok(selects(redisSvc.spec.selector, rlabels));
  assert.ok(selects(np.spec.podSelector.matchLabels, rlabels));
  const redis = rpod.containers[0];
  assert.equal(rpod.securityContext.runAsNonRoot, true);
  assert.equal(rpod.automountServiceAccountToken, false);
  assert.equal(redis.securityContext.readOnlyRootFilesystem, true);
  assert.equal(redis.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(redis.securityContext.capabilities.drop, ['ALL']);
  assert.ok(redis.resources.requests.cpu && redis.resources.limits.memory);
  assert.ok(rpod.volumes.some((v: K8s) => v.emptyDir) && redis.volumeMounts.some((m: K8s) => m.mountPath === '/data'), 'writable /data on a read-only root');
  const args = (redis.args as string[]).join(' ');
  for (const a of ['--save  --appendonly no', '--maxmemory-policy noeviction', '--requirepass $(REDIS_PASSWORD)']) assert.ok(args.includes(a), a);
  const pw = redis.env.find((e: K8s) => e.name === 'REDIS_PASSWORD').valueFrom.secretKeyRef;
  assert.ok(pw.name === secret.metadata.name && pw.key in secret.stringData);
  const redisPort = redisSvc.spec.ports[0];
  assert.equal(redis.ports.find((p: K8s) => p.name === redisPort.targetPort)?.containerPort, 6379);

  // Only tokengate pods reach Redis.
  const gwLabels = gwDep.spec.template.metadata.labels;
  assert.equal(np.spec.ingress.length, 1);
  assert.deepEqual(np.spec.ingress[0].from.map((f: K8s) => Object.keys(f)), [['podSelector']]);
  assert.ok(selects(np.spec.ingress[0].from[0].podSelector.matchLabels, gwLabels));
  assert.deepEqual(np.spec.ingress[0].ports, [{ port: 6379, protocol: 'TCP' }]);

  // The gateway: REDIS_PASSWORD before REDIS_URL (Kubernetes expands $(VAR) from earlier entries).
  const tg = gwDep.spec.template.spec.containers.find((c: K8s) => c.name === 'tokengate');
  const names = tg.env.map((e: K8s) => e.name);
  assert.ok(names.indexOf('REDIS_PASSWORD') < names.indexOf('REDIS_URL'));
  const env: Record<string, string> = {};
  for (const e of tg.env) {
    if (e.valueFrom) {
      const ref = e.valueFrom.secretKeyRef;
      const s = find(objs, 'Secret', ref.name);
      assert.ok(s && ref.key in s.stringData, `${e.name} from an existing Secret key`);
      env[e.name] = s.stringData[ref.key];
    } else if (e.value !== undefined) {
      env[e.name] = (e.value as string).replace(/\$\(([A-Z_]+)\)/g, (_m, v: string) => env[v]);
    }
  }
  const url = new URL(env.REDIS_URL);
  assert.equal(url.hostname, redisSvc.metadata.name);
  assert.equal(Number(url.port), redisPort.port);
  assert.equal(decodeURIComponent(url.password), secret.stringData.password);

  const cm = find(objs, 'ConfigMap', 'tokengate-gateway')!;
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-deploy-redis-'));
  try {
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, cm.data['gateway.yaml']);
    const check = spawnSync(process.execPath, [join(ROOT, 'bin/tokengate.js'), 'check', '--config', file], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 });
    assert.equal(check.status, 0, `tokengate check: ${check.stdout}${check.stderr}`);
    const cfg = loadCompiled(file, { ...process.env, ...env });
    assert.equal(cfg.server.redis.url, env.REDIS_URL);
    assert.equal(cfg.server.dpop.replayStore, 'redis');
    assert.equal(cfg.server.dpop.nonce, true);
    assert.equal(cfg.server.dpop.nonceSecret, secret.stringData['dpop-nonce-secret']);
    assert.equal(cfg.server.trustProxy, true, 'htu from the ingress X-Forwarded-Proto/-Host');
    assert.ok(cfg.source.issuers.every((i) => !i.introspection || i.introspection.cacheStore === 'redis'));
    // Apart from the Redis additions, it is the gateway overlay's config.
    const base = parseAllDocuments(readFileSync(join(DEPLOY, 'overlays', 'gateway', 'configmap.yaml'), 'utf8'))[0].toJS() as K8s;
    const strip = (t: string) => t.split('\n').filter((l) => !l.trim().startsWith('#')).map((l) => l.replace(/\s+#.*$/, '')).filter((l) => !/^\s*(trustProxy|dpop|replayStore|nonce|nonceSecret|redis|url|cacheStore|binding):/.test(l)).join('\n');
    assert.equal(strip(cm.data['gateway.yaml']), strip(base.data['gateway.yaml']));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kubectl kustomize builds the same overlay (when kubectl is installed)', { skip: spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0 ? false : 'kubectl not installed' }, () => {
  const out = spawnSync('kubectl', ['kustomize', join(DEPLOY, 'overlays', 'gateway-redis')], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(out.status, 0, out.stderr);
  const real = parseAllDocuments(out.stdout).map((d) => d.toJS() as K8s);
  const ours = build(join(DEPLOY, 'overlays', 'gateway-redis'));
  const key = (o: K8s) => `${o.kind}/${o.metadata.name}`;
  assert.deepEqual(real.map(key).sort(), ours.map(key).sort());
  // (kustomize drops the value's final newline: the patch is a `|-` block)
  assert.equal(find(real, 'ConfigMap', 'tokengate-gateway')!.data['gateway.yaml'].trimEnd(), find(ours, 'ConfigMap', 'tokengate-gateway')!.data['gateway.yaml'].trimEnd());
  const envOf = (objs: K8s[]) => find(objs, 'Deployment', 'tokengate')!.spec.template.spec.containers.find((c: K8s) => c.name === 'tokengate').env;
  assert.deepEqual(envOf(real), envOf(ours));
});
