/**
 * Tracing with the OpenTelemetry SDK: a TracerProvider per gateway (nothing registered
 * globally, so two gateways in one process, or a reload, never share one), parent-based
 * sampling with `sampleRatio` for new traces, a BatchSpanProcessor and the OTLP/HTTP
 * exporter of the configured protocol, wrapped to count failed exports. Spans:
 *
 * - a SERVER span per request, named by its method (OTel HTTP semantic conventions),
 *   continuing the client's W3C `traceparent`/`tracestate` (W3C Trace Context §3);
 * - `tokengate.decide`, the decision, its child; outbound work started while it runs
 *   (JWKS, discovery and introspection fetches, replay-store calls) is a child of it,
 *   found through an AsyncLocalStorage of this gateway's own;
 * - a CLIENT span for the upstream call, whose context the upstream receives.
 *
 * A gRPC call (`content-type: application/grpc…`, over HTTP/2) is an HTTP request like any
 * other, its spans named by the HTTP method; both also carry the RPC semantic conventions'
 * `rpc.system.name` and `rpc.method`, and a call the gateway answers itself (a refusal, an
 * upstream failure) the `rpc.status_code` it answered with.
 *
 * Attributes never hold a token, a secret, a claim set or a query string.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type TextMapGetter, type Tracer } from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider, type ReadableSpan, type SpanExporter,
} from '@opentelemetry/sdk-trace';
import {
  ATTR_CLIENT_ADDRESS, ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_REQUEST_METHOD_ORIGINAL, ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_NETWORK_PEER_ADDRESS, ATTR_NETWORK_PROTOCOL_VERSION, ATTR_RPC_METHOD, ATTR_RPC_STATUS_CODE, ATTR_RPC_SYSTEM_NAME,
  ATTR_SERVER_ADDRESS, ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION, ATTR_URL_PATH, ATTR_URL_SCHEME, ATTR_USER_AGENT_ORIGINAL,
  RPC_SYSTEM_NAME_VALUE_GRPC,
} from '@opentelemetry/semantic-conventions';
import type { TracingConfig } from '../config/schema.js';
import { findHeader, isGrpcContentType } from '../http/headers.js';
import { hostOnly } from '../pipeline/host.js';
import type { RequestFacts } from '../pipeline/run.js';
import { grpcStatusFor } from '../server/error-response.js';
import { outcomeOf, userAgentOf } from '../server/record.js';
import { httpClientAttributes, UNTRACED, type SpanAttributes, type SpanNotes } from './outbound.js';
import type { RequestTrace, TracedRequest, Tracing } from './types.js';

/** Methods the HTTP semantic conventions name; any other is `_OTHER` (its own spelling kept aside). */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE', 'QUERY']);

/** gRPC status names by code (grpc/grpc `doc/statuscodes.md`), as `rpc.status_code` carries them. */
const GRPC_STATUS = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL',
  'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

/** gRPC codes a server reports as a span error (RPC semantic conventions, gRPC: server-side errors). */
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);

/** Reads a W3C header from a raw header list; a header sent twice counts as absent (W3C Trace Context §3.2). */
const RAW_GETTER: TextMapGetter<readonly string[]> = {
  get(raw, key) {
    const i = findHeader(raw, key);
    return i === -1 || findHeader(raw, key, i + 2) !== -1 ? undefined : raw[i + 1];
  },
  keys(raw) {
    const out: string[] = [];
    for (let i = 0; i < raw.length; i += 2) out.push(raw[i].toLowerCase());
    return out;
  },
};

/** Where the gateway learns of failed exports. */
export interface ExportFailures {
  /** An export of `spans` spans failed (collector unreachable, refused, too slow). */
  onFailure(spans: number, error: Error | undefined): void;
  /** An export succeeded (after failures, the gateway says so once). */
  onSuccess(): void;
}

/** The exporter of the configured protocol, counting failed exports; the SDK's exporters do the work. */
class CountingExporter implements SpanExporter {
  constructor(private readonly inner: SpanExporter, private readonly failures: ExportFailures) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) this.failures.onSuccess();
      else this.failures.onFailure(spans.length, result.error);
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** The exporter `config` names. */
function otlpExporter(config: TracingConfig): SpanExporter {
  const opts = { url: config.endpoint, headers: { ...config.headers }, timeoutMillis: config.timeoutMs };
  return config.protocol === 'http/json' ? new JsonExporter(opts) : new ProtobufExporter(opts);
}

/** The version in package.json (`service.version`): src/ and dist/ both sit one level below it. */
function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The tracing `config` describes: the OTLP exporter of its protocol, failed exports reported to `failures`. */
export function createTracing(config: TracingConfig, failures: ExportFailures): OtelTracing {
  return new OtelTracing(config, new CountingExporter(otlpExporter(config), failures), packageVersion());
}

/** `method` as the semantic conventions want it: the method, or `_OTHER` with the original aside. */
function methodAttributes(method: string, attrs: Attributes): string {
  if (KNOWN_METHODS.has(method)) {
    attrs[ATTR_HTTP_REQUEST_METHOD] = method;
    return method;
  }
  attrs[ATTR_HTTP_REQUEST_METHOD] = '_OTHER';
  attrs[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = method;
  return 'HTTP';
}

/**
 * `network.protocol.version` as the semantic conventions spell it: Node says `2.0` for an
 * HTTP/2 request, OTel `2` (`1.0` and `1.1` are the same in both).
 */
function protocolVersion(v: string): string {
  return v === '2.0' ? '2' : v;
}

/**
 * The fully-qualified method of a gRPC call from its `:path` (`/package.Service/Method`,
 * gRPC PROTOCOL-HTTP2.md), for `rpc.method`; undefined when the path has another shape.
 */
function grpcMethod(path: string): string | undefined {
  const slash = path.indexOf('/', 1);
  return path.charCodeAt(0) === 0x2f && slash > 1 && slash < path.length - 1 && path.indexOf('/', slash + 1) === -1 ? path.slice(1) : undefined;
}

/** Copies the set attributes of `from` into `to`. */
function copyDefined(from: SpanAttributes, to: Attributes): Attributes {
  for (const k in from) if (from[k] !== undefined && to[k] === undefined) to[k] = from[k];
  return to;
}

/** A failure's fixed kind for `error.type` (an error's `reason` or `kind`, else its class): never its message. */
function errorType(e: unknown): string {
  const err = e as { reason?: unknown; kind?: unknown; name?: unknown } | null;
  if (typeof err?.reason === 'string') return err.reason;
  if (typeof err?.kind === 'string') return err.kind;
  return typeof err?.name === 'string' ? err.name : 'Error';
}

/** One gateway's OpenTelemetry tracing. */
class OtelTracing implements Tracing {
  private readonly provider: TracerProvider;
  private readonly tracer: Tracer;
  private readonly propagator = new W3CTraceContextPropagator();
  /** The span outbound work started now belongs to (the decision being run). */
  readonly active = new AsyncLocalStorage<Span>();

  constructor(config: TracingConfig, exporter: SpanExporter, version: string) {
    const b = config.batch;
    this.provider = new TracerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: config.serviceName,
        [ATTR_SERVICE_VERSION]: version,
        'service.instance.id': randomUUID(),
        'process.pid': process.pid,
      }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
      spanProcessors: [new BatchSpanProcessor({
        exporter,
        maxQueueSize: b.maxQueueSize,
        maxExportBatchSize: b.maxExportBatchSize,
        scheduledDelayMillis: b.scheduledDelayMs,
        exportTimeoutMillis: config.timeoutMs,
      })],
    });
    this.tracer = this.provider.getTracer('tokengate', version);
  }

  /** See {@link Tracing.begin}. */
  begin(facts: RequestFacts, req: TracedRequest): RequestTrace {
    const parent = this.propagator.extract(ROOT_CONTEXT, facts.rawHeaders, RAW_GETTER);
    const attrs: Attributes = {};
    const name = methodAttributes(facts.method, attrs);
    // The sampler (parent-based, then the trace id's ratio) reads no attribute: a request
    // that is not recorded builds none (most of them, with a small sampleRatio).
    const span = this.tracer.startSpan(name, { kind: SpanKind.SERVER, startTime: performance.timeOrigin + req.start }, parent);
    if (!span.isRecording()) return new OtelRequestTrace(this, span, req, null);
    const q = facts.target.indexOf('?');
    const path = q === -1 ? facts.target : facts.target.slice(0, q);
    const ct = findHeader(facts.rawHeaders, 'content-type');
    const rpc = ct !== -1 && isGrpcContentType(facts.rawHeaders[ct + 1]) ? grpcMethod(path) ?? '_OTHER' : null;
    span.setAttributes(this.serverAttributes(facts, req, attrs, path, rpc));
    return new OtelRequestTrace(this, span, req, rpc);
  }

  /** The server span's attributes (`attrs` holds the method's already). */
  private serverAttributes(facts: RequestFacts, req: TracedRequest, attrs: Attributes, path: string, rpc: string | null): Attributes {
    attrs[ATTR_URL_PATH] = path;
    attrs[ATTR_URL_SCHEME] = facts.scheme ?? 'http';
    const host = hostOnly(facts.authority ?? facts.host);
    if (host) attrs[ATTR_SERVER_ADDRESS] = host;
    const client = facts.client ?? facts.peer;
    if (client) attrs[ATTR_CLIENT_ADDRESS] = client;
    if (facts.peer) attrs[ATTR_NETWORK_PEER_ADDRESS] = facts.peer;
    const ua = userAgentOf(facts);
    if (ua !== undefined) attrs[ATTR_USER_AGENT_ORIGINAL] = ua;
    if (facts.httpVersion) attrs[ATTR_NETWORK_PROTOCOL_VERSION] = protocolVersion(facts.httpVersion);
    attrs['tokengate.request_id'] = req.requestId;
    if (req.listener) attrs['tokengate.listener'] = req.listener;
    if (rpc !== null) {
      attrs[ATTR_RPC_SYSTEM_NAME] = RPC_SYSTEM_NAME_VALUE_GRPC;
      attrs[ATTR_RPC_METHOD] = rpc;
    }
    return attrs;
  }

  /** Starts a span under `parent` (the request trace's own spans). */
  start(name: string, kind: SpanKind, attrs: Attributes, parent: Span): Span {
    return this.tracer.startSpan(name, { kind, attributes: attrs }, trace.setSpan(ROOT_CONTEXT, parent));
  }

  /** Writes `span`'s context into outgoing headers (W3C `traceparent`, and `tracestate` when the trace has one). */
  inject(span: Span, headers: Record<string, string | string[]>): void {
    delete headers.traceparent;
    delete headers.tracestate;
    this.propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, { set: (h, k, v) => void (h[k] = v) });
  }

  /** See {@link OutboundTracer.run}. */
  async run<T>(name: string, attributes: SpanAttributes, fn: (notes: SpanNotes) => Promise<T>): Promise<T> {
    const parent = this.active.getStore();
    // Outside a request (a scheduled refresh: its timer may still carry an ended decision's
    // span) or in an unsampled one: no span.
    if (parent === undefined || !parent.isRecording()) return UNTRACED.run(name, attributes, fn);
    const span = this.start(name, SpanKind.CLIENT, copyDefined(attributes, {}), parent);
    try {
      return await fn({ set: (k, v) => void span.setAttribute(k, v) });
    } catch (e) {
      span.setAttribute(ATTR_ERROR_TYPE, errorType(e));
      const status = (e as { status?: unknown } | null)?.status;
      if (typeof status === 'number') span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw e;
    } finally {
      span.end();
    }
  }

  /** See {@link Tracing.shutdown}: flushes the batch (bounded by the export timeout), then stops. */
  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }
}

/** The spans of one request (see the module comment). */
class OtelRequestTrace implements RequestTrace {
  private upstreamSpan: Span | null = null;
  private ended = false;

  /** `rpc` is the gRPC method of a recorded gRPC call (`_OTHER` when its path has no such shape), else null. */
  constructor(private readonly tracing: OtelTracing, private readonly span: Span, private readonly req: TracedRequest, private readonly rpc: string | null) {}

  get traceId(): string | undefined {
    return this.span.isRecording() ? this.span.spanContext().traceId : undefined;
  }

  async decide(fn: () => Promise<void>): Promise<void> {
    if (!this.span.isRecording()) return fn();
    const span = this.tracing.start('tokengate.decide', SpanKind.INTERNAL, {}, this.span);
    try {
      await this.tracing.active.run(span, fn);
      span.setAttribute('tokengate.outcome', 'allowed');
    } catch (e) {
      span.setAttribute('tokengate.outcome', 'refused');
      span.setAttribute('tokengate.reason', errorType(e));
      throw e;
    } finally {
      const ctx = this.req.ctx;
      if (ctx.route) span.setAttribute('tokengate.route', ctx.route.id);
      if (ctx.principal) span.setAttribute('tokengate.issuer', ctx.principal.issuerId);
      span.end();
    }
  }

  upstream(headers: Record<string, string | string[]>, method: string, origin: string, path: string): void {
    // Not recorded: its upstream call would not be either. The upstream still continues the
    // trace (W3C Trace Context §3.2: the not-sampled flag travels on), under this span's id.
    if (!this.span.isRecording()) return this.tracing.inject(this.span, headers);
    const attrs: Attributes = {};
    const name = methodAttributes(method, attrs);
    copyDefined(httpClientAttributes(method, origin + path), attrs);
    if (this.req.ctx.route?.upstreamH2) attrs[ATTR_NETWORK_PROTOCOL_VERSION] = '2';
    if (this.rpc !== null) {
      attrs[ATTR_RPC_SYSTEM_NAME] = RPC_SYSTEM_NAME_VALUE_GRPC;
      attrs[ATTR_RPC_METHOD] = this.rpc;
    }
    this.upstreamSpan = this.tracing.start(name, SpanKind.CLIENT, attrs, this.span);
    this.tracing.inject(this.upstreamSpan, headers);
  }

  upstreamDone(status: number, reason?: string): void {
    const span = this.upstreamSpan;
    if (span === null) return;
    this.upstreamSpan = null;
    if (reason !== undefined) {
      span.setAttribute(ATTR_ERROR_TYPE, reason);
      span.setStatus({ code: SpanStatusCode.ERROR });
    } else {
      span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      // HTTP semantic conventions: a client span is an error from 400 on.
      if (status >= 400) span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  }

  end(status: number): void {
    if (this.ended) return;
    this.ended = true;
    this.upstreamDone(status);
    const span = this.span;
    if (!span.isRecording()) return span.end();
    const { ctx, error } = this.req;
    span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    span.setAttribute('tokengate.route', ctx.route?.id ?? '(none)');
    span.setAttribute('tokengate.outcome', outcomeOf(error));
    span.setAttribute('tokengate.reason', error === null ? ctx.reason : error.reason);
    const p = ctx.principal;
    if (p) {
      span.setAttribute('tokengate.issuer', p.issuerId);
      if (typeof p.claims.sub === 'string') span.setAttribute('enduser.id', p.claims.sub);
    }
    // A gRPC call the gateway answered itself (refused, or the upstream failed): the gRPC
    // status it wrote (src/server/error-response.ts). An upstream's own status is in its trailers.
    let rpcError: string | null = null;
    if (this.rpc !== null && error !== null) {
      const code = grpcStatusFor(error.status);
      span.setAttribute(ATTR_RPC_STATUS_CODE, GRPC_STATUS[code]);
      if (GRPC_SERVER_ERRORS.has(code)) rpcError = GRPC_STATUS[code];
    }
    // HTTP semantic conventions: a server span is an error only for 5xx (a 401 is an answer);
    // RPC ones: only for the codes that say the server failed.
    if (status >= 500 || rpcError !== null) {
      span.setAttribute(ATTR_ERROR_TYPE, rpcError ?? String(status));
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  }
}

