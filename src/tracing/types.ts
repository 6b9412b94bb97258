/**
 * What the gateway asks of tracing, without a line of OpenTelemetry: the request path,
 * the IdP clients and the replay store see only these interfaces. The implementation
 * (src/tracing/otel.ts) is loaded only when the config has a `tracing:` block; without
 * one the gateway holds `null` and the request path makes no tracing call at all (one
 * null check per request), and the IdP clients run their calls untraced
 * (src/tracing/outbound.ts).
 */
import type { DecisionContext, RequestFacts } from '../pipeline/run.js';
import type { GatewayError } from '../errors.js';
import type { OutboundTracer } from './outbound.js';

/** What a request's trace reads of the request (the Exchange). */
export interface TracedRequest {
  readonly ctx: DecisionContext;
  readonly error: GatewayError | null;
  readonly requestId: string;
  readonly listener?: string;
  /** `performance.now()` when the request arrived. */
  readonly start: number;
}

/** The spans of one request: its server span, the decision's and the upstream call's. */
export interface RequestTrace {
  /** The trace id, when the request is sampled (for the access line); else undefined. */
  readonly traceId: string | undefined;
  /** Runs the decision as a child span; outbound work inside it becomes its children. */
  decide(fn: () => Promise<void>): Promise<void>;
  /**
   * The request goes upstream now: starts the upstream call's span and writes its W3C
   * `traceparent` (and the trace's `tracestate`) into `headers`, replacing the client's.
   */
  upstream(headers: Record<string, string | string[]>, method: string, origin: string, path: string): void;
  /** The upstream call ended: answered `status`, or failed for `reason`. */
  upstreamDone(status: number, reason?: string): void;
  /** The request was answered `status`: ends the server span. */
  end(status: number): void;
}

/** One gateway's tracing. */
export interface Tracing extends OutboundTracer {
  /** Starts the server span of a request read as `facts`, continuing its `traceparent`. */
  begin(facts: RequestFacts, req: TracedRequest): RequestTrace;
  /** Exports what is left and stops (bounded by the export timeout). */
  shutdown(): Promise<void>;
}
