/**
 * The gateway: builds and holds the current {@link CompiledConfig}, the per-issuer state
 * (JWKS caches, discovery, introspection), the verifiers, stores, metrics, logger and
 * request recorder, and hands them to the listeners (`server/`), which do all
 * per-request work. A config swap is one assignment; requests read `config` once, at
 * their start.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { CompiledConfig } from './config/compile.js';
import type { IssuerConfig } from './config/schema.js';
import { GatewayError } from './errors.js';
import { discover, type IssuerMetadata } from './idp/discovery.js';
import { LOOPBACK_HOSTS } from './idp/http.js';
import { JwksCache } from './idp/jwks-cache.js';
import { IntrospectionFailure } from './idp/introspection-client.js';
import { Introspector } from './idp/introspector.js';
import { createLogger } from './logger.js';
import { Metrics } from './metrics.js';
import { JwtVerifier, type KeySource } from './pipeline/verify-jwt.js';
import { IntrospectionVerifier } from './pipeline/verify-introspection.js';
import type { Verifiers } from './pipeline/run.js';
import type { Readiness } from './cluster/channel.js';
import { buildAdmin } from './server/admin.js';
import type { GatewayCore } from './server/core.js';
import { buildDecision } from './server/decision.js';
import type { ExtAuthzListener } from './server/ext-authz.js';
import { buildProxy } from './server/proxy.js';
import { RequestRecorder } from './server/record.js';
import type { Redis } from 'ioredis';
import type { DpopConfig } from './config/schema.js';
import { NonceSource } from './dpop/nonce.js';
import { MemoryReplayStore, RedisReplayStore, type ReplayStore } from './dpop/replay-store.js';
import { ProofChecker } from './pipeline/dpop.js';
import { ClaimsHeaderEncoder } from './pipeline/mutate.js';
import { closeRedis, createRedis } from './redis/client.js';
import { RedisIntrospectionStore } from './idp/introspection-redis-store.js';
import { UpgradeTracker, upgradeHandler } from './server/websocket.js';
import { UNTRACED, type OutboundTracer } from './tracing/outbound.js';
import type { Tracing } from './tracing/types.js';

/** One issuer's runtime state, kept across reloads while its config is unchanged. */
export class IssuerRuntime {
  readonly config: IssuerConfig;
  readonly fingerprint: string;
  readonly jwks: JwksCache | null;
  /** RFC 7662 introspection (cached), when the issuer has an `introspection` block. */
  readonly introspection: Introspector | null;
  private metadata: Promise<IssuerMetadata> | null = null;
  /** When the kept discovery attempt failed (null: it did not, or none is kept). */
  private metadataFailedAt: number | null = null;
  private readonly clock: () => number;

  /** Outbound http allow-list (`server.allowInsecureHttpHosts`) this runtime fetches under. */
  readonly allowInsecureHttpHosts: readonly string[];

  /** What must stay equal for a runtime (and its caches) to survive a reload. */
  static fingerprintOf(config: IssuerConfig, allowInsecureHttpHosts: readonly string[]): string {
    return JSON.stringify([config, allowInsecureHttpHosts]);
  }

  /** Where IdP calls are traced (as children of the request that needed them). */
  private readonly tracer: OutboundTracer;

  constructor(
    config: IssuerConfig, metrics: Metrics, log: Logger, now: () => number = Date.now,
    allowInsecureHttpHosts: readonly string[] = LOOPBACK_HOSTS, redis: () => Redis | null = () => null,
    tracer: OutboundTracer = UNTRACED,
  ) {
    this.config = config;
    this.tracer = tracer;
    this.clock = now;
    this.allowInsecureHttpHosts = allowInsecureHttpHosts;
    this.fingerprint = IssuerRuntime.fingerprintOf(config, allowInsecureHttpHosts);
    const jwksLog = log.child({ issuer: config.id });
    this.jwks = config.jwksUri || config.discovery
      ? new JwksCache({
        issuerId: config.id,
        policy: config.jwks,
        now,
        allowInsecureHttpHosts,
        tracer,
        resolveUri: async () => {
          if (config.jwksUri) return config.jwksUri;
          const meta = await this.discover();
          if (!meta.jwksUri) throw new Error('discovery document has no jwks_uri');
          return meta.jwksUri;
        },
        events: {
          onFetch: (result, reason) => {
            metrics.jwksFetches.labels(config.id, result).inc();
            if (result === 'failure') {
              jwksLog.warn({ reason }, 'JWKS fetch failed');
              // The IdP may have moved its keys: the next attempt (after the cooldown) discovers again.
              if (config.discovery) this.metadata = null;
            } else jwksLog.debug('JWKS fetched');
          },
        },
      })
      : null;
    this.introspection = config.introspection ? this.buildIntrospector(config.introspection, metrics, jwksLog, now, redis) : null;
  }

  private buildIntrospector(policy: NonNullable<IssuerConfig['introspection']>, metrics: Metrics, log: Logger, now: () => number, redis: () => Redis | null): Introspector {
    const id = this.config.id;
    const calls = {
      active: metrics.introspectionRequests.labels(id, 'active'),
      inactive: metrics.introspectionRequests.labels(id, 'inactive'),
      error: metrics.introspectionRequests.labels(id, 'error'),
    };
    const duration = metrics.introspectionDuration.labels(id);
    const cache = {
      hit: metrics.cacheCounter('introspection', 'hit'),
      miss: metrics.cacheCounter('introspection', 'miss'),
      negative_hit: metrics.cacheCounter('introspection', 'negative_hit'),
    };
    return new Introspector({
      issuerId: id,
      issuer: this.config.issuer,
      policy,
      now,
      store: policy.cacheStore === 'redis' ? new RedisIntrospectionStore(redis) : undefined,
      allowInsecureHttpHosts: this.allowInsecureHttpHosts,
      tracer: this.tracer,
      endpoint: async () => {
        if (policy.endpoint) return policy.endpoint;
        const meta = await this.discover();
        if (!meta.introspectionEndpoint) throw new IntrospectionFailure('no_endpoint', 'discovery document has no introspection_endpoint');
        return meta.introspectionEndpoint;
      },
      events: {
        onCall: (result, seconds, failure) => {
          calls[result].inc();
          duration.observe(seconds);
          // Fixed kind and a message built from status/errno only: never the token or the secret.
          if (failure) log.warn({ kind: failure.kind, why: failure.message }, 'introspection failed');
        },
        onCache: (result) => cache[result].inc(),
      },
    });
  }

  /**
   * Discovery metadata, fetched once and kept. A failed fetch is kept too, for
   * `jwks.cooldownSec`: callers in that window get the same failure (→ 503) instead of each
   * sending the IdP another request (introspection asks on every uncached token).
   */
  discover(): Promise<IssuerMetadata> {
    if (!this.metadata || (this.metadataFailedAt !== null && this.clock() - this.metadataFailedAt >= this.config.jwks.cooldownSec * 1000)) {
      this.metadataFailedAt = null;
      const p = discover(this.config.issuer, this.config.jwks.timeoutMs, this.config.jwks.maxBytes, {
        discoveryOrigins: this.config.discoveryOrigins, allowInsecureHttpHosts: this.allowInsecureHttpHosts,
        tracer: this.tracer, issuerId: this.config.id,
      });
      this.metadata = p;
      p.catch(() => {
        if (this.metadata === p) this.metadataFailedAt = this.clock();
      });
    }
    return this.metadata;
  }
}

/** Options for {@link Gateway}. */
export interface GatewayOptions {
  logger?: Logger;
  /** Milliseconds since the epoch (tests inject a clock). */
  now?: () => number;
  /** false in a cluster worker: the primary serves the admin port. Default true. */
  admin?: boolean;
  /**
   * The store used when `server.dpop.replayStore` is `memory`. Cluster workers pass one
   * held by the primary process (src/cluster/worker.ts), so a proof used at one worker is
   * a replay at every other. Default: a store in this process.
   */
  memoryReplayStore?: ReplayStore;
}

/** The running gateway. */
export class Gateway implements GatewayCore {
  config: CompiledConfig;
  readonly metrics = new Metrics();
  readonly logger: Logger;
  /** The one writer of access lines and request counts. */
  readonly recorder: RequestRecorder;
  readonly verifiers: Verifiers;
  readonly issuers = new Map<string, IssuerRuntime>();
  proxy: FastifyInstance | null = null;
  admin: FastifyInstance | null = null;
  /** The forward-auth listener; null without a `decision:` block. */
  decision: FastifyInstance | null = null;
  /**
   * The smallest `clockToleranceSec` each `iss` has had since the start: a reload may not
   * widen a DPoP proof's window past the ids already stored (src/reload.ts).
   */
  readonly toleranceFloors = new Map<string, number>();
  /** The gRPC ext_authz listener; null without an `extAuthz:` block. */
  extAuthz: ExtAuthzListener | null = null;
  /** Tracing (src/tracing/otel.ts, loaded only then) with a `tracing:` block; null without one. */
  tracing: Tracing | null = null;
  /** The `tracing` block {@link tracing} was built from (JSON), '' for none. */
  /** The `tracing` block the running tracing was built from (JSON); null when none was built successfully. */
  private tracingKey: string | null = '';
  /** Tracings a reload replaced, flushed and stopped once their requests are done. */
  private readonly retiredTracing = new Set<Tracing>();
  /** Runs IdP and replay-store calls through the current tracing, if any. */
  readonly outbound: OutboundTracer = {
    run: (name, attributes, fn) => (this.tracing === null ? UNTRACED.run(name, attributes, fn) : this.tracing.run(name, attributes, fn)),
  };
  /** Counts failed span exports; logs when exports start failing and when they recover. */
  private readonly exportFailures = {
    failing: false,
    onFailure: (spans: number, error: Error | undefined) => {
      this.metrics.traceExportFailures.inc();
      if (this.exportFailures.failing) return;
      this.exportFailures.failing = true;
      this.logger.warn({ spans, why: error?.message }, 'trace export failed (spans dropped; requests are not affected)');
    },
    onSuccess: () => {
      if (!this.exportFailures.failing) return;
      this.exportFailures.failing = false;
      this.logger.info('trace export recovered');
    },
  };
  /** Open WebSocket connections (both legs), ended at the shutdown grace deadline. */
  readonly upgrades = new UpgradeTracker();
  private closing = false;
  private readonly now: () => number;
  private readonly serveAdmin: boolean;
  /** The shared Redis connection, open while some store is `redis`. */
  redis: Redis | null = null;
  private redisKey = '';
  private replayStore: ReplayStore;
  private readonly sharedMemoryStore: ReplayStore | null;
  private nonceSource: { key: string; source: NonceSource } | null = null;

  constructor(config: CompiledConfig, opts: GatewayOptions = {}) {
    this.config = config;
    this.metrics.setConfig(config.hash);
    this.now = opts.now ?? Date.now;
    this.serveAdmin = opts.admin ?? true;
    this.logger = opts.logger ?? createLogger(config.server.logLevel);
    this.recorder = new RequestRecorder(this.logger, this.metrics);
    const keys: KeySource = {
      getKey: (issuerId, kid, alg) => {
        const jwks = this.issuers.get(issuerId)?.jwks;
        if (!jwks) throw new GatewayError('issuer');
        return jwks.getKey(kid, alg);
      },
      hasKey: (issuerId, keyId) => this.issuers.get(issuerId)?.jwks?.hasKey(keyId) ?? false,
    };
    const issuers = this.issuers;
    const cacheCounters = {
      hit: this.metrics.cacheCounter('jwt', 'hit'),
      miss: this.metrics.cacheCounter('jwt', 'miss'),
    };
    this.sharedMemoryStore = opts.memoryReplayStore ?? null;
    this.replayStore = this.sharedMemoryStore ?? new MemoryReplayStore(config.server.dpop.replayCacheSize, this.now);
    this.verifiers = {
      jwt: new JwtVerifier({ keys, now: this.now, cacheSize: config.server.tokenCacheSize, onCache: (r) => cacheCounters[r].inc() }),
      introspection: new IntrospectionVerifier({
        now: this.now,
        source: {
          introspect: (issuerId, token) => {
            const introspector = this.issuers.get(issuerId)?.introspection;
            if (!introspector) throw new GatewayError('unsupported_token');
            return introspector.introspect(token);
          },
        },
      }),
      claimsHeader: new ClaimsHeaderEncoder(),
      proofs: new ProofChecker({
        now: this.now,
        replayStore: () => this.replayStore,
        nonces: (dpop) => this.nonces(dpop),
        onStore: (kind, seconds, ok) => {
          this.metrics.replayStoreDuration.labels(kind).observe(seconds);
          if (!ok) this.metrics.replayStoreErrors.labels(kind).inc();
        },
        tracer: this.outbound,
      }),
    };
    this.metrics.jwksAgeSource = function* (this: void) {
      for (const [id, rt] of issuers) {
        const age = rt.jwks?.ageSec();
        if (age != null) yield [id, age] as [string, number];
      }
    };
    this.syncIssuers(config);
    this.syncStores(config);
  }

  /** The nonce source for `dpop` (rebuilt only when the secret or window changes). */
  private nonces(dpop: DpopConfig): NonceSource | null {
    if (!dpop.nonce || !dpop.nonceSecret) return null;
    const key = `${dpop.proofMaxAgeSec}:${dpop.nonceSecret}`;
    if (this.nonceSource?.key !== key) this.nonceSource = { key, source: new NonceSource(dpop.nonceSecret, dpop.proofMaxAgeSec, this.now) };
    return this.nonceSource.source;
  }

  /** Opens, keeps or closes the Redis connection and picks the replay store for `config`. */
  private syncStores(config: CompiledConfig): void {
    const s = config.server;
    const needRedis = s.dpop.replayStore === 'redis' || config.source.issuers.some((i) => i.introspection?.cacheStore === 'redis');
    const key = needRedis ? `${s.redis.url}\u0000${s.redis.commandTimeoutMs}` : '';
    if (key !== this.redisKey) {
      if (this.redis) void closeRedis(this.redis);
      this.redis = needRedis ? createRedis({ url: s.redis.url, commandTimeoutMs: s.redis.commandTimeoutMs, logger: this.logger }) : null;
      this.redisKey = key;
    }
    if (s.dpop.replayStore === 'redis' && this.redis) {
      this.replayStore = new RedisReplayStore(this.redis);
    } else if (this.sharedMemoryStore) {
      this.replayStore = this.sharedMemoryStore;
    } else if (this.replayStore instanceof MemoryReplayStore) {
      // A new size keeps the ids seen so far: a fresh store would let every recent proof pass once more.
      this.replayStore.max = s.dpop.replayCacheSize;
    } else {
      this.replayStore = new MemoryReplayStore(s.dpop.replayCacheSize, this.now);
    }
  }

  /** Creates runtimes for new or changed issuers and stops those no longer configured. */
  private syncIssuers(config: CompiledConfig): void {
    const wanted = new Map(config.source.issuers.map((i) => [i.id, i]));
    for (const [id, rt] of this.issuers) {
      const next = wanted.get(id);
      if (!next || IssuerRuntime.fingerprintOf(next, config.server.allowInsecureHttpHosts) !== rt.fingerprint) {
        rt.jwks?.stop();
        this.issuers.delete(id);
      }
    }
    for (const [id, cfg] of wanted) {
      if (!this.issuers.has(id)) {
        const rt = new IssuerRuntime(cfg, this.metrics, this.logger, this.now, config.server.allowInsecureHttpHosts, () => this.redis, this.outbound);
        this.issuers.set(id, rt);
        if (this.proxy && this.jwtIssuerIds(config).has(id)) rt.jwks?.start();
      }
    }
  }

  /**
   * Builds the tracing `config` asks for, unless it runs already. The OpenTelemetry SDK is
   * loaded only here: a gateway without `tracing:` never loads it. A tracing a reload
   * replaces keeps serving the requests that began on it and is flushed and stopped after
   * `shutdownGraceSec`.
   */
  private async syncTracing(config: CompiledConfig): Promise<void> {
    const want = config.tracing;
    const key = want ? JSON.stringify(want) : '';
    if (key === this.tracingKey) return;
    this.tracingKey = key;
    let next: Tracing | null;
    try {
      const otel = want ? await import('./tracing/otel.js') : null;
      if (this.tracingKey !== key) return; // a later reload decided meanwhile
      next = otel && want ? otel.createTracing(want, this.exportFailures) : null;
    } catch (e) {
      // Not built: the next reload with the same block tries again.
      if (this.tracingKey === key) this.tracingKey = null;
      throw e;
    }
    const old = this.tracing;
    this.tracing = next;
    if (old === null) return;
    this.retiredTracing.add(old);
    const t = setTimeout(() => {
      this.retiredTracing.delete(old);
      void old.shutdown().catch(() => undefined);
    }, config.server.shutdownGraceSec * 1000);
    t.unref();
  }

  /** Issuers whose keys some route needs (readiness waits for them). */
  private jwtIssuerIds(config: CompiledConfig): Set<string> {
    const ids = new Set<string>();
    for (const r of config.routes) {
      if (r.auth.mode !== 'jwt' && r.auth.mode !== 'jwt_or_introspection') continue;
      for (const id of r.auth.issuerIds) if (this.issuers.get(id)?.jwks) ids.add(id);
    }
    return ids;
  }

  /** Shutdown has begun. */
  get draining(): boolean {
    return this.closing;
  }

  /** Ready: config loaded, every needed issuer's keys fetched once, not draining. */
  readiness(): Readiness {
    if (this.closing) return { ready: false, reason: 'shutting down' };
    for (const id of this.jwtIssuerIds(this.config)) {
      if (!this.issuers.get(id)?.jwks?.ready) return { ready: false, reason: `keys of issuer ${id} not fetched yet` };
    }
    return { ready: true };
  }

  /** Swaps in a new compiled config (already validated); keeps unchanged issuers' caches. */
  swap(config: CompiledConfig): void {
    this.syncIssuers(config);
    this.syncStores(config);
    void this.syncTracing(config).catch((e: unknown) => this.logger.error({ why: (e as Error).message }, 'tracing could not be started'));
    this.config = config;
    this.metrics.setConfig(config.hash);
    for (const id of this.jwtIssuerIds(config)) {
      const jwks = this.issuers.get(id)?.jwks;
      if (jwks && !jwks.ready) jwks.start();
    }
  }

  /** Builds and starts the listeners, and the first key fetches. */
  async start(): Promise<{ proxy: string; admin: string; decision?: string; extAuthz?: string }> {
    await this.syncTracing(this.config);
    this.proxy = buildProxy(this);
    this.proxy.server.on('upgrade', upgradeHandler(this, this.proxy.server, this.upgrades));
    // Cluster workers leave the admin listener to the primary (src/cluster/primary.ts).
    this.admin = this.serveAdmin
      ? buildAdmin({
        readiness: () => this.readiness(),
        metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
      }, this.logger)
      : null;
    const d = this.config.decision;
    if (d) this.decision = buildDecision(this);
    for (const id of this.jwtIssuerIds(this.config)) this.issuers.get(id)?.jwks?.start();
    const s = this.config.server;
    const a = this.config.admin;
    const proxy = await this.proxy.listen({ host: s.host, port: s.port });
    const admin = this.admin ? await this.admin.listen({ host: a.host, port: a.port }) : '(primary)';
    const decision = d && this.decision ? await this.decision.listen({ host: d.host, port: d.port }) : undefined;
    const x = this.config.extAuthz;
    // Loaded only when configured: gRPC is not on every gateway's start-up path.
    if (x) this.extAuthz = await (await import('./server/ext-authz.js')).ExtAuthzListener.start(this, x);
    return { proxy, admin, ...(decision ? { decision } : {}), ...(this.extAuthz ? { extAuthz: this.extAuthz.address } : {}) };
  }

  /**
   * Readiness turns 503 at once and the proxy and decision listeners stop accepting;
   * in-flight requests and open WebSockets get up to `graceSec` to finish, then their
   * connections are closed. The admin listener stays up (answering 503) until the end.
   */
  async close(graceSec = this.config.server.shutdownGraceSec): Promise<void> {
    this.closing = true;
    const listeners = [this.proxy, this.decision].filter((l): l is FastifyInstance => l !== null);
    const forced = setTimeout(() => {
      for (const l of listeners) l.server.closeAllConnections();
      this.upgrades.endAll();
    }, graceSec * 1000);
    forced.unref();
    // Stop accepting now, synchronously (Fastify's close gets there a few ticks later): with
    // server.workers, a connection the primary hands over after this is refused, not served.
    for (const l of listeners) if (l.server.listening) l.server.close();
    for (const l of listeners) l.server.closeIdleConnections();
    await Promise.all([...listeners.map((l) => l.close()), this.extAuthz?.close(graceSec)]);
    clearTimeout(forced);
    await this.admin?.close();
    for (const rt of this.issuers.values()) rt.jwks?.stop();
    if (this.redis) await closeRedis(this.redis);
    this.redis = null;
    // Every request is answered: export their spans (each export bounded by tracing.timeoutMs).
    await Promise.allSettled([this.tracing, ...this.retiredTracing].map((t) => t?.shutdown()));
    this.logger.flush?.();
  }
}
