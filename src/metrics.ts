/**
 * Every `tokengate_*` metric, in one prom-client Registry per gateway. Label values come
 * only from config ids and fixed reason names, never from paths or tokens. Children are
 * bound once per label set and reused (no label lookup per request).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Counter as C } from 'prom-client';

type Child = ReturnType<C<string>['labels']>;

/** The gateway's metrics. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'tokengate_requests_total', help: 'Requests by route, outcome (allowed|denied|error) and reason',
    labelNames: ['route', 'outcome', 'reason'] as const, registers: [this.registry],
  });
  readonly authDuration = new Histogram({
    name: 'tokengate_auth_duration_seconds', help: 'Time to reach the auth decision',
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1], registers: [this.registry],
  });
  readonly upstreamDuration = new Histogram({
    name: 'tokengate_upstream_duration_seconds', help: 'Time from forwarding to the upstream response headers, by route',
    labelNames: ['route'] as const, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
    registers: [this.registry],
  });
  readonly jwksFetches = new Counter({
    name: 'tokengate_jwks_fetches_total', help: 'JWKS fetches by issuer and result',
    labelNames: ['issuer', 'result'] as const, registers: [this.registry],
  });
  /** Where the key-set ages come from; read at scrape time, never per request. */
  jwksAgeSource: () => Iterable<[string, number]> = () => [];
  readonly jwksAge: Gauge<'issuer'> = new Gauge({
    name: 'tokengate_jwks_age_seconds', help: 'Age of the key set in use, by issuer',
    labelNames: ['issuer'] as const, registers: [this.registry],
    collect: () => {
      this.jwksAge.reset();
      for (const [issuer, age] of this.jwksAgeSource()) this.jwksAge.labels(issuer).set(age);
    },
  });
  readonly cacheRequests = new Counter({
    name: 'tokengate_cache_requests_total', help: 'Cache lookups by cache (jwt|introspection) and result (hit|miss|negative_hit)',
    labelNames: ['cache', 'result'] as const, registers: [this.registry],
  });
  readonly introspectionRequests = new Counter({
    name: 'tokengate_introspection_requests_total', help: 'Introspection calls by issuer and result (active|inactive|error)',
    labelNames: ['issuer', 'result'] as const, registers: [this.registry],
  });
  readonly introspectionDuration = new Histogram({
    name: 'tokengate_introspection_duration_seconds', help: 'Introspection call latency, by issuer',
    labelNames: ['issuer'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3],
    registers: [this.registry],
  });
  readonly configReloads = new Counter({
    name: 'tokengate_config_reloads_total', help: 'Config reloads by result (success|failure)',
    labelNames: ['result'] as const, registers: [this.registry],
  });
  readonly replayStoreDuration = new Histogram({
    name: 'tokengate_dpop_replay_store_duration_seconds', help: 'DPoP replay-store call latency, by store (memory|redis)',
    labelNames: ['store'] as const, buckets: [0.00001, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });
  readonly replayStoreErrors = new Counter({
    name: 'tokengate_dpop_replay_store_errors_total', help: 'DPoP replay-store calls that failed (request answered 503), by store',
    labelNames: ['store'] as const, registers: [this.registry],
  });
  private readonly children = new Map<string, Child>();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'tokengate_process_' });
  }

  /** Counts one finished request (children are cached per label set). */
  countRequest(route: string, outcome: 'allowed' | 'denied' | 'error', reason: string): void {
    const key = `${route}\u0000${outcome}\u0000${reason}`;
    let child = this.children.get(key);
    if (!child) {
      child = this.requests.labels(route, outcome, reason);
      this.children.set(key, child);
    }
    child.inc();
  }
}
