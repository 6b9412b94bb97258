/**
 * deploy/observability: the Grafana dashboard, the alert rules (plain file and
 * PrometheusRule), the ServiceMonitor and the metrics Service. Every metric a query names
 * is one a running gateway exports (scraped from its /metrics, not read from the source),
 * with the labels the query filters on; the two rule files hold the same groups; the
 * rules load in `promtool check rules` (skipped with a message where the Debian
 * `prometheus` package is not installed); the monitoring objects validate and point at
 * the gateway overlay's pods and admin port.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startMockIntrospection, type MockIntrospection } from '../helpers/mock-introspection.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { reloadOnce } from '../../src/reload.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const OBS = join(ROOT, 'deploy', 'observability');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;
const yamlDocs = (file: string): Obj[] => parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as Obj).filter((o) => o !== null);

interface Rule { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
const rulesFile = parse(readFileSync(join(OBS, 'tokengate.rules.yaml'), 'utf8')) as { groups: Array<{ name: string; rules: Rule[] }> };
const promRule = yamlDocs(join(OBS, 'prometheusrule.yaml'))[0];
const dashboard = JSON.parse(readFileSync(join(OBS, 'grafana-dashboard.json'), 'utf8')) as Obj;

/** Every PromQL expression of the dashboard (panels, and the template variables' queries). */
function dashboardExprs(): string[] {
  const out: string[] = [];
  for (const p of dashboard.panels as Obj[]) for (const t of p.targets ?? []) out.push(t.expr as string);
  for (const v of dashboard.templating.list as Obj[]) if (v.type === 'query') out.push(v.definition as string);
  return out;
}
const ruleExprs = () => rulesFile.groups.flatMap((g) => g.rules.map((r) => r.expr));

/** Labels Prometheus adds to every target (or Grafana's variables filter on): not the gateway's to export. */
const TARGET_LABELS = new Set(['job', 'instance', 'namespace', 'pod', 'le']);

/** `name{label="x",...}` selectors of the gateway's metrics in an expression. */
function selectors(expr: string): Array<{ name: string; labels: string[] }> {
  const out: Array<{ name: string; labels: string[] }> = [];
  for (const m of expr.matchAll(/\b((?:tokengate|process|nodejs)_[a-zA-Z0-9_]*)\s*(\{[^}]*\})?/g)) {
    const labels = m[2] ? [...m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]) : [];
    out.push({ name: m[1], labels });
  }
  return out;
}

let iss: MockIssuer; let intro: MockIntrospection; let up: EchoUpstream; let gw: TestGateway;
/** Metric name (as a query writes it: histograms by their _bucket/_sum/_count series) -> label names seen on its samples. */
const exported = new Map<string, Set<string>>();

before(async () => {
  [iss, intro, up] = await Promise.all([startMockIssuer(), startMockIntrospection(), startUpstream()]);
  gw = await startGateway(`
issuers:
  - { id: corp, issuer: "${iss.issuer}", jwksUri: "${iss.jwksUri}", audiences: [api] }
  - id: opaque
    issuer: https://opaque.example
    introspection: { endpoint: "${intro.endpoint}", clientId: gw, clientSecret: s }
routes:
  - { id: orders, match: { pathPrefix: /orders }, upstream: "${up.url}", auth: { mode: jwt, issuers: [corp] } }
  - { id: legacy, match: { pathPrefix: /legacy }, upstream: "${up.url}", auth: { mode: introspection, issuers: [opaque] } }
  - { id: pub, match: { pathPrefix: /pub }, upstream: "${up.url}", auth: { mode: none } }
`);
  await gw.ready();
  // Traffic that gives the labelled series samples: allowed, denied, introspected, cached.
  const token = await iss.sign();
  for (const [path, auth] of [['/orders/1', token], ['/orders/2', token], ['/orders/3', 'x.y.z'], ['/legacy/1', 'opaque-token'], ['/pub/1', undefined], ['/nowhere', undefined]] as const) {
    await (await fetch(gw.url + path, { headers: auth ? { authorization: `Bearer ${auth}` } : {} })).arrayBuffer();
  }
  // A config change that does not load (the old config keeps serving): a failed reload.
  writeFileSync(gw.file, 'routes: [');
  assert.equal(await reloadOnce(gw.gw, gw.file), false);
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  const types = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1], m[2]);
  for (const [name, type] of types) {
    const series = type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
    for (const s of series) exported.set(s, new Set());
  }
  for (const m of text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} /gm)) {
    for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) exported.get(m[1])?.add(l[1]);
  }
});
after(async () => { await gw?.close(); await up?.close(); await intro?.close(); await iss?.close(); });

for (const [what, exprs] of [['dashboard', dashboardExprs], ['alert rules', ruleExprs]] as const) {
  test(`every metric the ${what} query is exported by a running gateway, with the labels the queries filter on`, () => {
    const list = exprs();
    assert.ok(list.length >= 8, `${what}: ${list.length} queries`);
    const used = new Set<string>();
    for (const expr of list) {
      const sels = selectors(expr);
      assert.ok(sels.length > 0, `no gateway metric in ${expr}`);
      for (const { name, labels } of sels) {
        used.add(name);
        assert.ok(exported.has(name), `${what} queries ${name}, which the gateway does not export:\n${expr}`);
        const seen = exported.get(name)!;
        for (const l of labels) {
          if (TARGET_LABELS.has(l)) continue;
          assert.ok(seen.has(l), `${what} filters ${name} on label ${l}, which its samples do not carry (${[...seen].join(', ')})`);
        }
      }
    }
    // The checker is live: a misspelt metric and a label it lacks are caught.
    assert.ok(!exported.has('tokengate_request_total'));
    assert.ok(!exported.get('tokengate_requests_total')!.has('status'));
    if (what === 'dashboard') {
      for (const name of ['tokengate_requests_total', 'tokengate_request_duration_seconds_bucket', 'tokengate_jwks_age_seconds', 'tokengate_jwks_fetches_total',
        'tokengate_introspection_requests_total', 'tokengate_cache_requests_total', 'tokengate_dpop_replay_store_duration_seconds_bucket', 'tokengate_dpop_replay_store_errors_total']) {
        assert.ok(used.has(name), `the dashboard shows ${name}`);
      }
    }
  });
}

test('the alert rules cover what an operator is paged for, each with a severity and a summary', () => {
  const rules = rulesFile.groups.flatMap((g) => g.rules);
  const byName = new Map(rules.map((r) => [r.alert, r]));
  for (const [alert, needle] of [
    ['TokengateKeysUnfetchable', 'tokengate_jwks_fetches_total{result="failure"}'], ['TokengateKeysStale', 'tokengate_jwks_age_seconds'],
    ['TokengateDenialSpike', 'outcome="denied"'], ['TokengateUpstream5xx', 'status_class="5xx"'], ['TokengateUpstreamUnavailable', 'upstream_timeout'],
    ['TokengateIntrospectionErrors', 'tokengate_introspection_requests_total{result="error"}'], ['TokengateReloadFailed', 'tokengate_config_reloads_total{result="failure"}'],
    ['TokengateWorkersDisagree', 'tokengate_config_info'],
  ]) {
    const r = byName.get(alert);
    assert.ok(r, `alert ${alert}`);
    assert.ok(r.expr.includes(needle), `${alert} uses ${needle}`);
    assert.match(r.labels?.severity ?? '', /^(warning|critical)$/, `${alert} severity`);
    assert.ok(r.annotations?.summary && r.annotations.description, `${alert} summary and description`);
  }
  assert.ok(byName.get('TokengateDenialSpike')!.expr.includes('by (namespace, reason)'), 'denial spikes are per reason');
});

test('the PrometheusRule holds exactly the plain rule file\'s groups', () => {
  assert.equal(promRule.apiVersion, 'monitoring.coreos.com/v1');
  assert.equal(promRule.kind, 'PrometheusRule');
  assert.deepEqual(promRule.spec.groups, rulesFile.groups);
});

const promtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
test('promtool check rules loads both rule files', { skip: promtool ? false : 'promtool not installed (Debian package prometheus; .ci/run installs it)' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-rules-'));
  try {
    const fromCrd = join(dir, 'from-prometheusrule.yaml');
    writeFileSync(fromCrd, JSON.stringify({ groups: promRule.spec.groups }));
    for (const file of [join(OBS, 'tokengate.rules.yaml'), fromCrd]) {
      const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 0, `${file}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /SUCCESS: \d+ rules found/);
    }
    // promtool is live: a broken expression fails.
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, JSON.stringify({ groups: [{ name: 'x', rules: [{ alert: 'X', expr: 'sum by (route (tokengate_requests_total)' }] }] }));
    assert.notEqual(spawnSync('promtool', ['check', 'rules', bad], { encoding: 'utf8' }).status, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the ServiceMonitor scrapes the gateway pods\' admin port through tokengate-metrics; the objects validate', async () => {
  const objs = (yamlDocs(join(OBS, 'kustomization.yaml'))[0].resources as string[]).flatMap((f) => yamlDocs(join(OBS, f)));
  const mon = await import('@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1') as unknown as Record<string, new (x: Obj) => { validate(): void }>;
  const core = await import('kubernetes-models/v1') as unknown as Record<string, new (x: Obj) => { validate(): void }>;
  for (const o of objs) new (o.apiVersion === 'v1' ? core : mon)[o.kind](o).validate();
  assert.throws(() => new mon.ServiceMonitor({ metadata: { name: 'x' }, spec: { endpoints: 'admin' } }).validate(), 'the validator is live');

  const find = (kind: string) => objs.find((o) => o.kind === kind)!;
  const sm = find('ServiceMonitor'); const svc = find('Service');
  const matches = (sel: Record<string, string>, labels: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);
  assert.ok(matches(sm.spec.selector.matchLabels, svc.metadata.labels), 'the ServiceMonitor selects tokengate-metrics');
  assert.equal(sm.spec.endpoints[0].path, '/metrics');
  assert.ok(svc.spec.ports.some((p: Obj) => p.name === sm.spec.endpoints[0].port), 'it scrapes a port the Service names');
  // The gateway overlay's pods and their admin port.
  const gwDeploy = yamlDocs(join(ROOT, 'deploy/overlays/gateway/deployment.yaml'))[0];
  const gwService = yamlDocs(join(ROOT, 'deploy/overlays/gateway/service.yaml'))[0];
  assert.ok(matches(svc.spec.selector, gwDeploy.spec.template.metadata.labels), 'tokengate-metrics selects the gateway pods');
  assert.ok(!matches(sm.spec.selector.matchLabels, gwService.metadata.labels), 'the client-facing Service is not scraped (it has no admin port)');
  const tg = gwDeploy.spec.template.spec.containers.find((c: Obj) => c.name === 'tokengate');
  const admin = tg.ports.find((p: Obj) => p.name === svc.spec.ports[0].targetPort);
  assert.equal(admin?.containerPort, 9090);
  // The sidecar shape: a PodMonitor on the app's pods, their tokengate container's admin port.
  const pm = find('PodMonitor');
  const side = yamlDocs(join(ROOT, 'deploy/overlays/sidecar/deployment.yaml'))[0];
  assert.ok(matches(pm.spec.selector.matchLabels, side.spec.template.metadata.labels));
  assert.ok(side.spec.template.spec.containers.some((c: Obj) => c.ports?.some((p: Obj) => p.name === pm.spec.podMetricsEndpoints[0].port)));
});

test('the dashboard: one data source variable for every panel, unique panel ids, a 24-column grid', () => {
  assert.equal(dashboard.uid, 'tokengate');
  const ids = new Set<number>();
  for (const p of dashboard.panels as Obj[]) {
    assert.ok(!ids.has(p.id), `panel id ${p.id} unique`);
    ids.add(p.id);
    assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits the grid`);
    if (p.type === 'row') continue;
    assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${datasource}' }, p.title);
    assert.ok(p.targets.length > 0 && p.targets.every((t: Obj) => t.expr.includes('job=~"$job"')), `${p.title}: every query follows the job variable`);
  }
  assert.ok(dashboard.templating.list.some((v: Obj) => v.name === 'datasource' && v.type === 'datasource' && v.query === 'prometheus'));
});
