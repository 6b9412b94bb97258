/**
 * deploy/ (kustomize base + overlays): every manifest parses and validates against the
 * Kubernetes schemas (kubernetes-models); each overlay, built the way kustomize would
 * (resources resolved recursively, image override, ConfigMap replacement and strategic-merge
 * patches applied), is self-consistent: names referenced exist, selectors select, ports
 * line up with the embedded gateway config, the hardening is in place, the drain timing
 * adds up, and the embedded config passes `tokengate check`. kubernetes-models does not flag unknown fields, so the fields that
 * matter are asserted by name below (a typo there fails).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { loadCompiled } from '../../src/config/index.js';
import { matchRoute } from '../../src/pipeline/match.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const DEPLOY = join(ROOT, 'deploy');
const ENV = { INTROSPECTION_CLIENT_ID: 'tokengate', INTROSPECTION_SECRET: 'test-secret' };

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type K8s = Record<string, any>;

/**
 * Kubernetes manifests. Not manifests: a Prometheus rule file (test/e2e/observability.test.ts
 * checks it) and a file a kustomization turns into ConfigMap data (a tokengate config,
 * checked through the overlay that builds it).
 */
function yamlFiles(dir: string): string[] {
  const kustomization = join(dir, 'kustomization.yaml');
  const generated = new Set(existsSync(kustomization)
    ? (parseFile(kustomization)[0].configMapGenerator ?? []).flatMap((g: K8s) => g.files as string[]).map((f: string) => join(dir, f))
    : []);
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(n) && !n.endsWith('.rules.yaml') && !generated.has(p) ? [p] : [];
  });
}

function parseFile(file: string): K8s[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [docs];
  for (const d of list) assert.deepEqual(d.errors.map((e) => e.message), [], relative(ROOT, file));
  return list.map((d) => d.toJS() as K8s).filter((o) => o !== null);
}

const find = (objs: K8s[], kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name);
const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);
const isMap = (v: unknown): v is K8s => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The merge key of a list item in a strategic-merge patch, for the lists these patches touch. */
const MERGE_KEYS: Record<string, (item: K8s) => string> = {
  containers: (c) => c.name,
  env: (e) => e.name,
  // Service ports: kustomize keys them on port *and* protocol (an entry without `protocol` matches nothing).
  ports: (p) => `${p.port}/${p.protocol}`,
};

/**
 * A strategic-merge patch as kustomize applies it, for what these overlays use: maps merge,
 * `null` deletes a field, lists of scalars are replaced, the keyed lists above merge item
 * by item (merged items first, in patch order, then the others). A patch item that matches
 * no existing item is refused: every patch here changes what the overlay below defines.
 */
function strategicMerge(target: K8s, patch: K8s, where: string): void {
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete target[k];
    else if (Array.isArray(v) && MERGE_KEYS[k] && Array.isArray(target[k])) {
      const key = MERGE_KEYS[k];
      const merged = v.map((item: K8s) => {
        const old = (target[k] as K8s[]).find((x) => key(x) === key(item));
        assert.ok(old, `${where}.${k}: patch item ${key(item)} matches an existing entry`);
        strategicMerge(old, item, `${where}.${k}[${key(item)}]`);
        return old;
      });
      target[k] = [...merged, ...(target[k] as K8s[]).filter((x) => !merged.includes(x))];
    } else if (isMap(v) && isMap(target[k])) strategicMerge(target[k], v, `${where}.${k}`);
    else target[k] = v;
  }
}

/**
 * `kustomize build DIR`, for what these manifests use: resources (files, dirs), images,
 * labels, a configMapGenerator replacing a ConfigMap's data from files, and inline
 * strategic-merge patches.
 */
function build(dir: string): K8s[] {
  const [k] = parseFile(join(dir, 'kustomization.yaml'));
  assert.equal(k.kind, 'Kustomization');
  assert.deepEqual(Object.keys(k).filter((x) => !['apiVersion', 'kind', 'resources', 'images', 'labels', 'configMapGenerator', 'patches'].includes(x)), [], 'only features this emulation understands');
  const objects: K8s[] = [];
  for (const r of k.resources as string[]) {
    const p = join(dir, r);
    assert.ok(existsSync(p), `${relative(ROOT, dir)}: resource ${r} exists`);
    objects.push(...(statSync(p).isDirectory() ? build(p) : parseFile(p)));
  }
  for (const img of k.images ?? []) {
    for (const o of objects) {
      for (const c of o.spec?.template?.spec?.containers ?? []) {
        if (c.image === img.name) c.image = `${img.newName ?? img.name}:${img.newTag}`;
      }
    }
  }
  for (const l of k.labels ?? []) for (const o of objects) o.metadata.labels = { ...o.metadata.labels, ...l.pairs };
  for (const g of k.configMapGenerator ?? []) {
    // Replacing a ConfigMap of the overlay below, keeping its name (no hash) and metadata.
    assert.equal(g.behavior, 'replace');
    assert.equal(g.options?.disableNameSuffixHash, true, 'the ConfigMap keeps its name: edits reach the mounted file in place');
    const cm = find(objects, 'ConfigMap', g.name);
    assert.ok(cm, `configMapGenerator ${g.name} replaces an existing ConfigMap`);
    cm.data = Object.fromEntries((g.files as string[]).map((f) => [basename(f), readFileSync(join(dir, f), 'utf8')]));
  }
  for (const p of k.patches ?? []) {
    const target = find(objects, p.target.kind, p.target.name);
    assert.ok(target, `patch target ${p.target.kind}/${p.target.name} exists`);
    const doc = parseAllDocuments(p.patch as string)[0].toJS() as K8s;
    assert.ok(isMap(doc) && doc.kind === target.kind && doc.metadata.name === target.metadata.name, 'an inline strategic-merge patch of its target');
    strategicMerge(target.spec, doc.spec, `${p.target.kind}/${p.target.name} spec`);
  }
  const seen = new Set<string>();
  for (const o of objects) {
    const id = `${o.kind}/${o.metadata.name}`;
    assert.ok(!seen.has(id), `${id} defined once`);
    seen.add(id);
  }
  return objects;
}

/** Kubernetes' own kinds from kubernetes-models, Istio's CRDs from @kubernetes-models/istio (their published schemas). */
async function validateModel(o: K8s): Promise<void> {
  // The Prometheus Operator's kinds (ServiceMonitor, PrometheusRule) come from its own models package.
  const pkg = /\.istio\.io\//.test(o.apiVersion) ? '@kubernetes-models/istio'
    : o.apiVersion.startsWith('monitoring.coreos.com/') ? '@kubernetes-models/prometheus-operator' : 'kubernetes-models';
  const mod = await import(`${pkg}/${o.apiVersion}`) as Record<string, new (x: K8s) => { validate(): void }>;
  const Model = mod[o.kind];
  assert.ok(Model, `kubernetes-models knows ${o.apiVersion} ${o.kind}`);
  new Model(o).validate();
}

test('every manifest under deploy/ parses and validates against the Kubernetes schemas', async () => {
  // deploy/envoy holds an Envoy bootstrap and a tokengate config, not Kubernetes objects (checked below).
  const files = yamlFiles(DEPLOY).filter((f) => !f.startsWith(join(DEPLOY, 'envoy')));
  assert.ok(files.length >= 10);
  let n = 0;
  for (const f of files) {
    for (const o of parseFile(f)) {
      if (o.kind === 'Kustomization') continue;
      // cert-manager publishes no models package: its Certificate is checked by name in the tls test below.
      if (o.apiVersion?.startsWith('cert-manager.io/')) continue;
      assert.ok(o.apiVersion && o.kind && o.metadata?.name, `${relative(ROOT, f)}: apiVersion, kind, metadata.name`);
      await assert.doesNotReject(validateModel(o), `${relative(ROOT, f)} ${o.kind}`);
      n++;
    }
  }
  assert.ok(n >= 12, `${n} objects validated`);
  // The validator is live: a wrong type is reported.
  await assert.rejects(validateModel({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { replicas: 'two', selector: {}, template: {} } }), /replicas must be integer/);
});

for (const overlay of ['gateway', 'sidecar', 'sidecar-grpc']) {
  test(`overlay ${overlay}: consistent, hardened, drain timing adds up, embedded config passes tokengate check`, async () => {
    const objs = build(join(DEPLOY, 'overlays', overlay));
    for (const o of objs) await validateModel(o);
    const deploys = objs.filter((o) => o.kind === 'Deployment');
    assert.equal(deploys.length, 1);
    const dep = deploys[0];
    const pod = dep.spec.template.spec;
    assert.ok(selects(dep.spec.selector.matchLabels, dep.spec.template.metadata.labels), 'Deployment selector matches its pods');
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.automountServiceAccountToken, false);
    assert.ok(find(objs, 'ServiceAccount', pod.serviceAccountName), 'service account exists');

    const tg = pod.containers.find((c: K8s) => c.name === 'tokengate');
    assert.ok(tg, 'a tokengate container');
    assert.match(tg.image, /^registry\.example\.com\/tokengate:\d+\.\d+\.\d+$/, 'image override applied');
    for (const c of pod.containers) {
      assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${c.name} readOnlyRootFilesystem`);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false, `${c.name} no privilege escalation`);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], `${c.name} drops all capabilities`);
      assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory, `${c.name} resources`);
    }

    // The embedded config: mounted as a directory (subPath never sees ConfigMap updates), passes `tokengate check`.
    const cfgPath = tg.env.find((e: K8s) => e.name === 'TOKENGATE_CONFIG').value as string;
    assert.equal(cfgPath, '/etc/tokengate/gateway.yaml', 'the path the Dockerfile documents');
    const mount = tg.volumeMounts.find((m: K8s) => m.mountPath === dirname(cfgPath));
    assert.ok(mount && mount.subPath === undefined && mount.readOnly === true, 'config directory mounted read-only, no subPath');
    const vol = pod.volumes.find((v: K8s) => v.name === mount.name);
    const cm = find(objs, 'ConfigMap', vol.configMap.name);
    assert.ok(cm, 'the ConfigMap exists');
    for (const e of tg.env.filter((x: K8s) => x.valueFrom)) {
      const ref = e.valueFrom.secretKeyRef;
      const secret = find(objs, 'Secret', ref.name);
      assert.ok(secret && ref.key in secret.stringData, `${e.name} from an existing Secret key`);
    }
    const dir = mkdtempSync(join(tmpdir(), 'tokengate-deploy-'));
    try {
      const file = join(dir, 'gateway.yaml');
      writeFileSync(file, cm.data['gateway.yaml']);
      const check = spawnSync(process.execPath, [join(ROOT, 'bin/tokengate.js'), 'check', '--config', file], { env: { ...process.env, ...ENV }, encoding: 'utf8', timeout: 20_000 });
      assert.equal(check.status, 0, `tokengate check: ${check.stdout}${check.stderr}`);
      assert.match(check.stdout, /OK, \d+ route\(s\)/);
      const cfg = loadCompiled(file, { ...process.env, ...ENV });
      const port = (name: string) => tg.ports.find((p: K8s) => p.name === name)?.containerPort;
      assert.equal(port('http'), cfg.server.port);
      assert.equal(port('admin'), cfg.admin.port);
      assert.equal(cfg.decision ? port('decision') : undefined, cfg.decision?.port);
      assert.equal(cfg.admin.host, '0.0.0.0', 'probes reach the admin port on the pod IP');
      assert.deepEqual(tg.livenessProbe.httpGet, { path: '/healthz', port: 'admin' });
      assert.deepEqual(tg.readinessProbe.httpGet, { path: '/readyz', port: 'admin' });
      // The admin port shares the event loop with the proxy: one slow answer must not take the pod out.
      const rp = tg.readinessProbe;
      assert.ok(rp.failureThreshold >= 3 && rp.timeoutSeconds >= 2 && rp.periodSeconds * rp.failureThreshold >= 10,
        `readiness tolerates a slow answer (period ${rp.periodSeconds} s, timeout ${rp.timeoutSeconds} s, failureThreshold ${rp.failureThreshold})`);
      assert.ok(tg.livenessProbe.failureThreshold >= 3 && tg.livenessProbe.timeoutSeconds >= 2, 'liveness tolerates a slow answer');
      // An idle worker is ~107 MiB resident: the request must cover it.
      const mib = (q: string) => Number(/^(\d+)(Mi|Gi)$/.exec(q)![1]) * (q.endsWith('Gi') ? 1024 : 1);
      assert.ok(mib(tg.resources.requests.memory) >= 128, `tokengate requests ${tg.resources.requests.memory}, idle is ~107 MiB`);
      assert.ok(mib(tg.resources.limits.memory) >= 2 * mib(tg.resources.requests.memory), 'room for the caches above idle');
      // Annotation-based scraping of the admin port, in both shapes.
      const ann = dep.spec.template.metadata.annotations ?? {};
      assert.deepEqual([ann['prometheus.io/scrape'], ann['prometheus.io/path'], Number(ann['prometheus.io/port'])], ['true', '/metrics', cfg.admin.port]);
      // Drain: preStop sleep while endpoints go away, then SIGTERM and up to shutdownGraceSec.
      const sleep = tg.lifecycle.preStop.exec.command;
      assert.equal(sleep[0], 'sleep');
      assert.ok(pod.terminationGracePeriodSeconds >= Number(sleep[1]) + cfg.server.shutdownGraceSec + 1,
        `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} >= preStop ${sleep[1]} + shutdownGraceSec ${cfg.server.shutdownGraceSec} + margin`);

      const svc = objs.find((o) => o.kind === 'Service');
      assert.ok(svc, 'a Service');
      assert.ok(selects(svc.spec.selector, dep.spec.template.metadata.labels), 'Service selects the pods');
      const exposed = svc.spec.ports.map((p: K8s) => p.targetPort);
      for (const t of exposed) assert.ok(tg.ports.some((p: K8s) => p.name === t), `Service targets tokengate's ${t} port only`);
      assert.ok(!exposed.includes('admin'), 'admin port not in the Service');

      const pdb = objs.find((o) => o.kind === 'PodDisruptionBudget');
      assert.ok(pdb && selects(pdb.spec.selector.matchLabels, dep.spec.template.metadata.labels), 'PDB selects the pods');
      const np = objs.find((o) => o.kind === 'NetworkPolicy');
      assert.ok(np && selects(np.spec.podSelector.matchLabels, dep.spec.template.metadata.labels), 'NetworkPolicy selects the pods');

      if (overlay === 'gateway') {
        const hpa = objs.find((o) => o.kind === 'HorizontalPodAutoscaler');
        assert.ok(hpa, 'an HPA');
        assert.equal(hpa.spec.scaleTargetRef.name, dep.metadata.name);
        assert.equal(hpa.spec.scaleTargetRef.kind, 'Deployment');
        assert.ok(hpa.spec.minReplicas >= 2, 'at least two replicas (PDB can then allow one down)');
        assert.equal(dep.spec.replicas, undefined, 'no replicas beside the HPA: every apply would reset its scale');
        // Edge by default: the ingress controller on proxy and decision ports; other callers by namespace label, proxy port only.
        const from = (i: K8s) => JSON.stringify(i.from);
        const ports = (i: K8s) => i.ports.map((p: K8s) => p.port).sort();
        const rules = np.spec.ingress as K8s[];
        const ingress = rules.find((i) => from(i).includes('ingress-nginx'))!;
        const clients = rules.find((i) => from(i).includes('"tokengate/client":"true"'))!;
        assert.deepEqual(ports(ingress), [8080, 8081]);
        assert.deepEqual(ports(clients), [8080], 'labelled namespaces reach the proxy port only');
        assert.ok(!rules.some((i) => i.from === undefined), 'no rule admits every peer');
        assert.ok(cfg.decision, 'the gateway overlay enables the decision listener');
      } else {
        const app = pod.containers.find((c: K8s) => c.name !== 'tokengate');
        assert.equal(app.ports, undefined, 'the app declares no container port');
        assert.notEqual(pod.serviceAccountName, 'tokengate', 'the app runs under its own service account');
        const env = (name: string) => app.env.find((e: K8s) => e.name === name)?.value;
        assert.equal(env('HOST'), '127.0.0.1', 'the app listens on loopback only');
        const appAddr = `127.0.0.1:${env('PORT')}`;
        for (const r of cfg.routes) assert.equal(r.upstreamOrigin, `http://${appAddr}`, `route ${r.id} goes to the app over loopback`);
        assert.deepEqual(exposed, ['http'], 'tokengate is the only exposed port');
        // The app listens on loopback: readiness through tokengate's public health route, liveness inside the container.
        if (overlay === 'sidecar') {
          assert.equal(appAddr, '127.0.0.1:3000');
          const health = cfg.routes.find((r) => r.exactPath === app.readinessProbe.httpGet.path);
          assert.ok(health && health.auth.mode === 'none', 'the app readiness path is a mode: none route');
          assert.equal(app.readinessProbe.httpGet.port, cfg.server.port);
          assert.ok(app.livenessProbe.exec.command.some((a: string) => a.startsWith(`http://${appAddr}/`)), 'liveness checks the app itself');
        } else {
          // gRPC end to end: h2c on the proxy port, h2c to the app, a Service port that says gRPC.
          assert.equal(appAddr, '127.0.0.1:50051');
          assert.equal(cfg.server.http2, true, 'server.http2: gRPC clients reach the proxy port over h2c');
          for (const r of cfg.routes) assert.equal(r.upstreamH2, true, `route ${r.id}: upstreamProtocol h2`);
          assert.deepEqual(svc.spec.ports.map((p: K8s) => p.appProtocol), ['grpc'], 'the Service port says gRPC (Istio: HTTP/2, no sniffing)');
          // Readiness: the kubelet's own gRPC probe (grpc.health.v1.Health/Check, service "") on the proxy port.
          assert.deepEqual(app.readinessProbe.grpc, { port: cfg.server.port }, 'readiness: a gRPC probe on the proxy port');
          assert.equal(app.readinessProbe.httpGet, undefined, 'one probe handler (the sidecar overlay\'s httpGet removed)');
          // Exactly the health service is public: the probe's call lands on it, nothing beside it does.
          const routeOf = (path: string) => matchRoute(cfg.routeIndex, 'POST', '10.1.2.3', path);
          const publicRoutes = cfg.routes.filter((r) => r.auth.mode === 'none');
          assert.deepEqual(publicRoutes.map((r) => [r.prefix, r.exactPath, r.methods, r.host]), [['/grpc.health.v1.Health', null, null, null]], 'one public route: the health service\'s prefix, no wider');
          for (const m of ['Check', 'Watch']) assert.equal(routeOf(`/grpc.health.v1.Health/${m}`), publicRoutes[0], `Health/${m} is public`);
          for (const path of ['/grpc.health.v1.HealthX/Check', '/grpc.health.v1/Check', '/orders.v1.OrderService/GetOrder', '/orders.v1.OrderService/CreateOrder']) {
            assert.notEqual(routeOf(path)?.auth.mode ?? 'none (404)', 'none', `${path} is not public`);
          }
          assert.equal(routeOf('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'), null, 'other services match no route');
          for (const r of cfg.routes) if (r !== publicRoutes[0]) assert.equal(r.auth.mode, 'jwt', `route ${r.id} needs a token`);
          // Liveness: the app's own health service, from inside its container.
          assert.deepEqual(app.livenessProbe.exec.command.slice(0, 2), ['grpc_health_probe', `-addr=${appAddr}`], 'liveness checks the app itself');
          assert.equal(app.livenessProbe.httpGet, undefined);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** `loadCompiled` of a config held as text (a ConfigMap's data, a deploy file). */
function compiledFrom(text: string): ReturnType<typeof loadCompiled> {
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-deploy-'));
  writeFileSync(join(dir, 'gateway.yaml'), text);
  try {
    return loadCompiled(join(dir, 'gateway.yaml'), { ...process.env, ...ENV });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('istio: mesh provider, CUSTOM policy, tokengate Deployment + Service (appProtocol grpc) agree with each other and the config', async () => {
  const objs = build(join(DEPLOY, 'istio'));
  for (const o of objs) await validateModel(o);
  const [mesh] = parseFile(join(DEPLOY, 'istio', 'mesh-config.yaml'));
  await validateModel(mesh);
  // IstioOperator's published schema leaves spec open: the fields that matter are checked by name.
  const providers = mesh.spec.meshConfig.extensionProviders as K8s[];
  const policy = find(objs, 'AuthorizationPolicy', 'orders-tokengate')!;
  assert.equal(policy.spec.action, 'CUSTOM');
  // The Istio validator is live: an action the CRD does not know is reported.
  await assert.rejects(validateModel({ ...policy, spec: { ...policy.spec, action: 'MAYBE' } }), /action/);
  const provider = providers.find((p) => p.name === policy.spec.provider.name);
  assert.ok(provider?.envoyExtAuthzGrpc, 'the policy names an envoyExtAuthzGrpc provider of the mesh config');
  assert.equal(provider.envoyExtAuthzGrpc.failOpen, false, 'fail closed');

  const svc = find(objs, 'Service', 'tokengate')!;
  const dep = find(objs, 'Deployment', 'tokengate')!;
  assert.equal(provider.envoyExtAuthzGrpc.service, `${svc.metadata.name}.${svc.metadata.namespace}.svc.cluster.local`);
  const sp = svc.spec.ports.find((p: K8s) => p.port === provider.envoyExtAuthzGrpc.port);
  assert.ok(sp, 'the provider port is a Service port');
  assert.equal(sp.appProtocol, 'grpc');
  assert.ok(selects(svc.spec.selector, dep.spec.template.metadata.labels), 'Service selects the pods');
  const pod = dep.spec.template.spec;
  const tg = pod.containers.find((c: K8s) => c.name === 'tokengate');
  assert.match(tg.image, /^registry\.example\.com\/tokengate:\d+\.\d+\.\d+$/, 'image override applied');
  const target = tg.ports.find((p: K8s) => p.name === sp.targetPort);
  assert.ok(target, 'the Service targets a named container port');
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(tg.securityContext.readOnlyRootFilesystem, true);
  assert.deepEqual(tg.securityContext.capabilities.drop, ['ALL']);

  const cm = find(objs, 'ConfigMap', pod.volumes.find((v: K8s) => v.name === 'config').configMap.name)!;
  const cfg = compiledFrom(cm.data['gateway.yaml']);
  assert.ok(cfg.extAuthz, 'the embedded config enables the extAuthz listener');
  assert.equal(cfg.extAuthz.port, target.containerPort);
  assert.equal(cfg.extAuthz.host, '0.0.0.0');
  assert.deepEqual(tg.readinessProbe.grpc, { port: cfg.extAuthz.port }, 'readiness through grpc.health.v1 on the ext_authz port');
  const sleep = Number(tg.lifecycle.preStop.exec.command[1]);
  assert.ok(pod.terminationGracePeriodSeconds >= sleep + cfg.server.shutdownGraceSec + 1, 'drain timing adds up');
});

test('envoy: the standalone bootstrap asks tokengate over gRPC with the filter `tokengate snippet envoy` prints', async () => {
  const [bootstrap] = parseFile(join(DEPLOY, 'envoy', 'envoy.yaml'));
  const cfg = compiledFrom(readFileSync(join(DEPLOY, 'envoy', 'tokengate.yaml'), 'utf8'));
  assert.ok(cfg.extAuthz);
  const hcm = bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const filters = hcm.http_filters as K8s[];
  assert.equal(filters.at(-1)!.name, 'envoy.filters.http.router', 'the router comes last');
  const authz = filters.find((f) => f.name === 'envoy.filters.http.ext_authz')!.typed_config;
  const { frontProxySnippet } = await import('../../src/snippet.js');
  const snippet = parseAllDocuments(frontProxySnippet(cfg, 'envoy'))[0].toJS() as K8s;
  assert.deepEqual(authz, snippet.http_filters[0].typed_config, 'the same ext_authz filter as the snippet');
  assert.equal(authz.failure_mode_allow, false);
  assert.equal(authz.allowed_headers, undefined, 'every request header reaches tokengate (it lists what to remove)');
  const cluster = (bootstrap.static_resources.clusters as K8s[]).find((c) => c.name === authz.grpc_service.envoy_grpc.cluster_name);
  assert.ok(cluster, 'the ext_authz cluster exists');
  assert.ok(cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config.http2_protocol_options, 'gRPC needs HTTP/2 to tokengate');
  const addr = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
  assert.equal(addr.port_value, cfg.extAuthz.port);
  assert.ok(cfg.extAuthzTrusted!(addr.address), 'tokengate trusts the Envoy that asks');
  assert.ok(cluster.health_checks[0].grpc_health_check, 'Envoy health-checks tokengate with grpc.health.v1');
});

test('tls: the sidecar serves TLS from the Secret mounted as a directory; cert-manager writes that Secret; config, ports and probes agree', async () => {
  const objs = build(join(DEPLOY, 'tls'));
  for (const o of objs) await validateModel(o);
  const dep = find(objs, 'Deployment', 'payments')!;
  const pod = dep.spec.template.spec;
  const tg = pod.containers.find((c: K8s) => c.name === 'tokengate');
  assert.match(tg.image, /^registry\.example\.com\/tokengate:\d+\.\d+\.\d+$/, 'image override applied');
  const cm = find(objs, 'ConfigMap', pod.volumes.find((v: K8s) => v.name === 'tokengate-config').configMap.name)!;
  const cfg = compiledFrom(cm.data['gateway.yaml']);
  const t = cfg.server.tls!;
  assert.ok(t && cfg.server.http2, 'TLS with ALPN h2');
  // Every TLS file is a key of one Secret volume, mounted as a directory (a subPath mount never sees a rotation).
  const dir = dirname(t.certFile);
  for (const f of [t.certFile, t.keyFile, t.clientCaFile!]) assert.equal(dirname(f), dir, `${f} in the Secret's directory`);
  assert.deepEqual([t.certFile, t.keyFile, t.clientCaFile].map((f) => f!.slice(dir.length + 1)), ['tls.crt', 'tls.key', 'ca.crt'], 'the keys of a kubernetes.io/tls Secret (cert-manager writes ca.crt)');
  const mount = tg.volumeMounts.find((m: K8s) => m.mountPath === dir);
  assert.ok(mount && mount.subPath === undefined && mount.readOnly === true, 'the Secret mounted read-only as a directory');
  assert.notEqual(dirname(cfg.source.server.tls!.certFile), '/etc/tokengate', 'not nested in the ConfigMap volume');
  const vol = pod.volumes.find((v: K8s) => v.name === mount.name);
  assert.equal(vol.secret.items, undefined, 'every key of the Secret, no items list to keep in step');
  assert.equal(vol.secret.defaultMode, 0o440, 'the key is readable by owner and group only');
  assert.equal(pod.securityContext.fsGroup, tg.securityContext.runAsGroup, 'tokengate reads it through its group');
  // cert-manager's Certificate writes that Secret, with names the Service answers to.
  const [certificate] = parseFile(join(DEPLOY, 'tls', 'cert-manager.yaml'));
  assert.deepEqual([certificate.apiVersion, certificate.kind], ['cert-manager.io/v1', 'Certificate']);
  assert.equal(certificate.spec.secretName, vol.secret.secretName);
  assert.ok(certificate.spec.issuerRef.name && ['Issuer', 'ClusterIssuer'].includes(certificate.spec.issuerRef.kind));
  assert.equal(certificate.spec.privateKey.rotationPolicy, 'Always');
  assert.ok(certificate.spec.usages.includes('server auth'));
  const svc = find(objs, 'Service', 'payments')!;
  assert.ok(certificate.spec.dnsNames.includes(svc.metadata.name) && certificate.spec.dnsNames.some((n: string) => n.startsWith(`${svc.metadata.name}.`) && n.endsWith('.svc.cluster.local')));
  // The TLS port: the Service's only target, the config's port; the app's readiness goes through it over HTTPS.
  const https = tg.ports.find((p: K8s) => p.name === 'https');
  assert.equal(https.containerPort, cfg.server.port);
  assert.deepEqual(svc.spec.ports.map((p: K8s) => p.targetPort), ['https']);
  assert.ok(selects(svc.spec.selector, dep.spec.template.metadata.labels), 'Service selects the pods');
  const app = pod.containers.find((c: K8s) => c.name === 'app');
  assert.deepEqual([app.readinessProbe.httpGet.port, app.readinessProbe.httpGet.scheme], [cfg.server.port, 'HTTPS']);
  assert.ok(cfg.routes.find((r) => r.exactPath === app.readinessProbe.httpGet.path)?.auth.mode === 'none', 'readiness through a mode: none route');
  assert.ok(cfg.routes.some((r) => r.auth.binding === 'require-mtls'), 'a route that needs certificate-bound tokens');
  assert.ok(pod.terminationGracePeriodSeconds >= Number(tg.lifecycle.preStop.exec.command[1]) + cfg.server.shutdownGraceSec + 1, 'drain timing adds up');
});

test('kubectl kustomize builds each overlay exactly as this emulation does (when kubectl is installed)', { skip: spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0 ? false : 'kubectl not installed' }, () => {
  const key = (o: K8s) => `${o.kind}/${o.metadata.name}`;
  const byKey = (objs: K8s[]) => Object.fromEntries(objs.map((o) => [key(o), o]));
  for (const dir of ['overlays/gateway', 'overlays/sidecar', 'overlays/sidecar-grpc', 'observability', 'tls']) {
    const out = spawnSync('kubectl', ['kustomize', join(DEPLOY, dir)], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(out.status, 0, `${dir}: ${out.stderr}`);
    const real = parseAllDocuments(out.stdout).map((d) => d.toJS() as K8s);
    assert.deepEqual(byKey(real), byKey(build(join(DEPLOY, dir))), dir);
  }
});

test('every tokengate container under deploy/: prometheus.io annotations on its admin port, probes that tolerate one slow answer', () => {
  let n = 0;
  for (const f of yamlFiles(DEPLOY)) {
    for (const o of parseFile(f)) {
      const tg = o.spec?.template?.spec?.containers?.find((c: K8s) => c.name === 'tokengate');
      if (!tg) continue;
      n++;
      const where = `${relative(ROOT, f)} ${o.kind}/${o.metadata.name}`;
      const ann = o.spec.template.metadata.annotations ?? {};
      const admin = tg.ports.find((p: K8s) => p.name === 'admin');
      assert.deepEqual([ann['prometheus.io/scrape'], ann['prometheus.io/path'], Number(ann['prometheus.io/port'])], ['true', '/metrics', admin?.containerPort], where);
      for (const kind of ['readinessProbe', 'livenessProbe']) {
        const p = tg[kind];
        assert.ok(p.failureThreshold >= 3 && p.timeoutSeconds >= 2 && p.periodSeconds * p.failureThreshold >= 10, `${where} ${kind}: ${JSON.stringify(p)}`);
      }
    }
  }
  assert.ok(n >= 4, `${n} tokengate pod templates (gateway, sidecar, istio, tls)`);
});
