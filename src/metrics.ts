/**
 * Every `tokengate_*` metric, in one prom-client Registry per gateway. Label values come
 * only from config ids and fixed reason names, never from paths or tokens. Children are
 * bound once per label set and reused (no label lookup per request).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One label set's count, and how much of it the prom-client counter has been given. */
interface Cell {
  child: { inc(n: number): void };
  n: number;
  reported: number;
  inc(): void;
}

/** Cells of a counter by their labels in order: a map per label, the cell at the last. */
type CellTree = Map<string, CellTree | Cell>;

/**
 * Counts for one prom-client Counter kept in plain cells, one per label set, and added to
 * the counter when it is collected (prom-client hashes the label set on every `inc`, even
 * on a bound child). For counters incremented on every request: a cell is found by its
 * labels one map at a time, with no key string built per lookup.
 */
export class CounterCells {
  private readonly tree: CellTree = new Map();
  private readonly cells: Cell[] = [];

  constructor(private readonly counter: Counter<string>) {}

  /** The cell of one label set (created once, then the same cell): `inc()` is a plain increment. */
  cell(...labels: string[]): { inc(): void } {
    let node = this.tree;
    const last = labels.length - 1;
    for (let i = 0; i < last; i++) {
      let next = node.get(labels[i]) as CellTree | undefined;
      if (next === undefined) node.set(labels[i], (next = new Map()));
      node = next;
    }
    let c = node.get(labels[last]) as Cell | undefined;
    if (c === undefined) {
      const cell: Cell = { child: this.counter.labels(...labels), n: 0, reported: 0, inc: () => { cell.n++; } };
      node.set(labels[last], cell);
      this.cells.push(cell);
      c = cell;
    }
    return c;
  }

  /** Adds what was counted since the last flush to the counter (call from its `collect`). */
  flush(): void {
    for (const c of this.cells) {
      const delta = c.n - c.reported;
      if (delta > 0) {
        c.child.inc(delta);
        c.reported = c.n;
      }
    }
  }
}

/** One label set of a {@link RequestHistogram}: plain counters, no lookup on observe. */
export class HistogramCell {
  /** Per-bucket counts (not cumulative); the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[], readonly labels: Readonly<Record<string, string>>) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Records one value (seconds). */
  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

/**
 * A histogram for values observed on every request. prom-client's Histogram hashes the
 * label set and looks up each bucket by name on every `observe`, a visible part of a
 * proxied request's cost; here a label set is bound once to a {@link HistogramCell}
 * and observing is a bucket scan and three additions. It registers in a prom-client
 * Registry like any metric and reports exactly what prom-client's Histogram would
 * (test/unit/metrics checks the exposition text and the cluster aggregation).
 */
export class RequestHistogram {
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  readonly name: string;
  readonly help: string;
  private readonly bounds: readonly number[];
  private readonly labelName: string | null;
  private readonly cells = new Map<string, HistogramCell>();
  private readonly unlabelled: HistogramCell | null;

  constructor(opts: { name: string; help: string; buckets: number[]; labelName?: string; registers: Registry[] }) {
    this.name = opts.name;
    this.help = opts.help;
    this.bounds = Object.freeze([...opts.buckets].sort((a, b) => a - b));
    this.labelName = opts.labelName ?? null;
    this.unlabelled = this.labelName === null ? new HistogramCell(this.bounds, {}) : null;
    for (const r of opts.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** The cell of one label value (created on first use, then reused). */
  labels(value: string): HistogramCell {
    if (this.labelName === null) throw new Error(`${this.name} has no labels`);
    let cell = this.cells.get(value);
    if (!cell) {
      cell = new HistogramCell(this.bounds, { [this.labelName]: value });
      this.cells.set(value, cell);
    }
    return cell;
  }

  /** Records one value on the unlabelled histogram. */
  observe(value: number): void {
    if (this.unlabelled === null) throw new Error(`${this.name} needs a label`);
    this.unlabelled.observe(value);
  }

  /** prom-client's metric interface: the exposition data (cumulative buckets, +Inf, sum, count per label set). */
  async get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> }> {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    const bucket = `${this.name}_bucket`;
    const cells = this.unlabelled ? [this.unlabelled] : [...this.cells.values()];
    for (const cell of cells) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += cell.counts[i];
        values.push({ labels: { le, ...cell.labels }, value: acc, metricName: bucket });
      });
      values.push({ labels: { le: '+Inf', ...cell.labels }, value: cell.count, metricName: bucket });
      values.push({ labels: { ...cell.labels }, value: cell.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...cell.labels }, value: cell.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** prom-client's metric interface (`registry.resetMetrics()`). */
  reset(): void {
    this.cells.clear();
    if (this.unlabelled) {
      this.unlabelled.counts.fill(0);
      this.unlabelled.sum = 0;
      this.unlabelled.count = 0;
    }
  }
}

/** The gateway's metrics. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'outcome' | 'reason' | 'status_class'> = new Counter({
    name: 'tokengate_requests_total',
    help: 'Requests by route, outcome (allowed|denied|error), reason and status class of the answer (1xx..5xx)',
    labelNames: ['route', 'outcome', 'reason', 'status_class'] as const, registers: [this.registry],
    // Requests are counted in plain cells (countRequest) and added here when scraped.
    collect: () => this.requestCells.flush(),
  });
  private readonly requestCells = new CounterCells(this.requests);
  readonly authDuration = new RequestHistogram({
    name: 'tokengate_auth_duration_seconds', help: 'Time to reach the auth decision, by route',
    labelName: 'route', buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1], registers: [this.registry],
  });
  readonly requestDuration = new RequestHistogram({
    name: 'tokengate_request_duration_seconds',
    help: 'Time from the request to the end of its answer (refusals included; WebSocket: to the upgrade), by route',
    labelName: 'route', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
    registers: [this.registry],
  });
  readonly upstreamDuration = new RequestHistogram({
    name: 'tokengate_upstream_duration_seconds', help: 'Time from forwarding to the upstream response headers, by route',
    labelName: 'route', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
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
    aggregator: 'max', // server.workers > 1: the oldest key set of any worker
    collect: () => {
      this.jwksAge.reset();
      for (const [issuer, age] of this.jwksAgeSource()) this.jwksAge.labels(issuer).set(age);
    },
  });
  readonly cacheRequests: Counter<'cache' | 'result'> = new Counter({
    name: 'tokengate_cache_requests_total', help: 'Cache lookups by cache (jwt|introspection) and result (hit|miss|negative_hit)',
    labelNames: ['cache', 'result'] as const, registers: [this.registry],
    // Incremented per request: plain cells, added here when scraped.
    collect: () => this.cacheCells.flush(),
  });
  private readonly cacheCells = new CounterCells(this.cacheRequests);

  /** A per-request counter for one cache and result (see {@link CounterCells}). */
  cacheCounter(cache: 'jwt' | 'introspection', result: 'hit' | 'miss' | 'negative_hit'): { inc(): void } {
    return this.cacheCells.cell(cache, result);
  }
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
    aggregator: 'max', // server.workers: every worker reloads the same file; the pod reloaded once
  });
  readonly tlsReloads = new Counter({
    name: 'tokengate_tls_reloads_total', help: 'Re-reads of the proxy port\'s TLS certificate files after they changed, by result (success|failure)',
    labelNames: ['result'] as const, registers: [this.registry],
    aggregator: 'max', // server.workers: every worker re-reads the same files; the pod rotated once
  });
  readonly configInfo = new Gauge({
    name: 'tokengate_config_info',
    help: 'The config this process runs: 1, labelled with a hash of it (secrets left out); with server.workers, the number of workers running that config',
    labelNames: ['hash'] as const, registers: [this.registry],
  });
  readonly replayStoreDuration = new Histogram({
    name: 'tokengate_dpop_replay_store_duration_seconds', help: 'DPoP replay-store call latency, by store (memory|redis)',
    labelNames: ['store'] as const, buckets: [0.00001, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });
  readonly traceExportFailures = new Counter({
    name: 'tokengate_trace_export_failures_total',
    help: 'Span exports to the OTLP collector that failed (unreachable, refused, too slow); their spans are dropped, requests are never affected',
    registers: [this.registry],
  });
  readonly replayStoreErrors = new Counter({
    name: 'tokengate_dpop_replay_store_errors_total', help: 'DPoP replay-store calls that failed (request answered 503), by store',
    labelNames: ['store'] as const, registers: [this.registry],
  });

  constructor() {
    // No prefix: process_* and nodejs_* are the names every Prometheus client library uses
    // for its process collector, so stock dashboards and queries (rate(process_cpu_seconds_total))
    // work, and the job/instance labels tell the processes apart.
    collectDefaultMetrics({ register: this.registry });
  }

  /** Marks `hash` as the running config (the only `tokengate_config_info` series of this process). */
  setConfig(hash: string): void {
    this.configInfo.reset();
    this.configInfo.labels(hash).set(1);
  }

  /**
   * Counts one finished request answered with `status` (a plain increment; see
   * {@link CounterCells}). An allowed request the upstream answered 5xx is `allowed`
   * with `status_class="5xx"`: the error rate is computed from the class.
   */
  countRequest(route: string, outcome: 'allowed' | 'denied' | 'error', reason: string, status: number): void {
    this.requestCells.cell(route, outcome, reason, statusClass(status)).inc();
  }

  /** Records the auth decision's duration for `route` (`(none)` when none matched), from `start` (performance.now()). */
  observeAuth(route: string | undefined, start: number): void {
    this.authDuration.labels(route ?? '(none)').observe((performance.now() - start) / 1000);
  }
}

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

/** `1xx` (a WebSocket's 101) to `5xx` for an HTTP status; anything out of range counts as `5xx`. */
export function statusClass(status: number): string {
  return STATUS_CLASSES[Math.floor(status / 100) - 1] ?? '5xx';
}
