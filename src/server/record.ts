/**
 * The one writer of what happened to a request: one access line and one count in
 * `tokengate_requests_total`, for every request any listener answered, exactly once.
 */
import type { Logger } from 'pino';
import type { GatewayError } from '../errors.js';
import { AccessLog } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { DecisionContext, RequestFacts } from '../pipeline/run.js';
import { findHeader } from '../http/headers.js';

/** What the recorder reads of a finished request. */
export interface RecordedRequest {
  readonly ctx: DecisionContext;
  /** `performance.now()` when the request arrived. */
  readonly start: number;
  /** The refusal or failure it was answered with; null when it was allowed. */
  readonly error: GatewayError | null;
  /** The door it came by, when it is not the proxy (e.g. `ext_authz`). */
  readonly listener?: string;
  /** Its request id (src/server/request-id.ts). */
  readonly requestId: string;
  /** The request as its door read it; null when it was refused before being read. */
  readonly facts: RequestFacts | null;
  /** Its trace, with tracing on (the access line names a sampled trace's id). */
  readonly trace: { readonly traceId: string | undefined } | null;
}

/** The longest `User-Agent` written on an access line; longer ones are cut. */
export const MAX_USER_AGENT_LOGGED = 256;

/** The request's `User-Agent`, cut to {@link MAX_USER_AGENT_LOGGED}; undefined when it sent none. */
export function userAgentOf(facts: RequestFacts): string | undefined {
  const i = findHeader(facts.rawHeaders, 'user-agent');
  if (i === -1) return undefined;
  const ua = facts.rawHeaders[i + 1];
  return ua.length > MAX_USER_AGENT_LOGGED ? ua.slice(0, MAX_USER_AGENT_LOGGED) : ua;
}

/** The outcome label of a request: allowed, denied (4xx, and 503 "cannot validate now"), or error. */
export function outcomeOf(err: GatewayError | null): 'allowed' | 'denied' | 'error' {
  return err === null ? 'allowed' : err.status >= 500 && err.status !== 503 ? 'error' : 'denied';
}

/** Writes the access line and counts the request. */
export class RequestRecorder {
  private readonly access: AccessLog;

  constructor(logger: Logger, private readonly metrics: Metrics) {
    this.access = new AccessLog(logger);
  }

  /** Records one finished request answered with `status`. */
  record(req: RecordedRequest, status: number): void {
    const route = req.ctx.route?.id ?? '(none)';
    const err = req.error;
    const outcome = outcomeOf(err);
    const reason = err === null ? req.ctx.reason : err.reason;
    this.metrics.countRequest(route, outcome, reason, status);
    const ms = performance.now() - req.start;
    this.metrics.requestDuration.labels(route).observe(ms / 1000);
    const p = req.ctx.principal;
    const f = req.facts;
    this.access.write({
      listener: req.listener, requestId: req.requestId, method: f?.method, route, status, ms: Math.round(ms * 100) / 100,
      sub: typeof p?.claims.sub === 'string' ? p.claims.sub : undefined, issuer: p?.issuerId, outcome, reason,
      client: f === null ? undefined : f.client ?? f.peer, userAgent: f === null ? undefined : userAgentOf(f),
      traceId: req.trace === null ? undefined : req.trace.traceId,
    });
  }
}
