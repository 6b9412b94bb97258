/**
 * One request at one of the gateway's doors (the proxy, the decision listener, a
 * WebSocket upgrade): its decision context, the verdict of {@link decide} run once, and
 * its record written once. Each door turns its input into request facts, calls
 * {@link Exchange.judge}, renders the verdict in its own protocol and calls
 * {@link Exchange.done} with the status it answered.
 */
import type { CompiledConfig } from '../config/compile.js';
import { GatewayError } from '../errors.js';
import { decide, newContext, type DecisionContext, type RequestFacts } from '../pipeline/run.js';
import type { GatewayCore } from './core.js';
import type { ForwardObserver } from './forward.js';
import type { RecordedRequest } from './record.js';
import { newRequestId, REQUEST_ID_HEADER, requestIdOf } from './request-id.js';
import type { RequestTrace } from '../tracing/types.js';

/** Base64url runs long enough to be a token or a secret; scrubbed from a bug's log line. */
const SECRET_LIKE = /[A-Za-z0-9_-]{24,}(?:\.[A-Za-z0-9_-]*){0,2}/g;

/** Per-request state with a fixed shape; also the upstream observer, so forwarding allocates no closures. */
export class Exchange implements RecordedRequest, ForwardObserver {
  readonly ctx: DecisionContext = newContext();
  readonly start = performance.now();
  error: GatewayError | null = null;
  upstreamStart = 0;
  /** The request as its door read it; null while unread (and for requests refused before being read). */
  facts: RequestFacts | null = null;
  /** Its spans, with tracing on (from when it was read); null otherwise. */
  trace: RequestTrace | null = null;
  private id: string | null = null;
  private recorded = false;

  /**
   * `config` is the config in force when the request arrived: it finishes on it.
   * `listener` names the door on the access line when it is not the proxy.
   */
  constructor(readonly config: CompiledConfig, private readonly core: GatewayCore, readonly listener?: string) {}

  /**
   * Runs the decision once for the facts `read` returns (reading them may refuse the
   * request too). Resolves to the refusal to answer with, or null when the request may
   * pass. A throw that is not in the error catalogue is a bug: it is logged with its stack
   * and answered 500, never turned into a refusal that would hide it.
   */
  async judge<A>(read: (config: CompiledConfig, arg: A) => RequestFacts, arg: A): Promise<GatewayError | null> {
    try {
      if (this.core.draining) throw new GatewayError('shutting_down', { retryAfterSec: 1 });
      const facts = read(this.config, arg);
      this.facts = facts;
      this.identify(facts.rawHeaders);
      const tracing = this.core.tracing;
      if (tracing === null) {
        await decide(this.config, facts, this.core.verifiers, this.ctx);
      } else {
        this.trace = tracing.begin(facts, this);
        await this.trace.decide(() => decide(this.config, facts, this.core.verifiers, this.ctx));
      }
    } catch (e) {
      this.error = e instanceof GatewayError ? e : this.bug(e);
    }
    this.core.metrics.observeAuth(this.ctx.route?.id, this.start);
    return this.error;
  }

  /**
   * This request's id (src/server/request-id.ts): the client's `X-Request-Id` once the
   * request was read and that id is safe, else a new one (also for a request refused before
   * its headers could be read).
   */
  get requestId(): string {
    return (this.id ??= newRequestId());
  }

  /** Takes the request id from the request's raw headers, unless it is known already. */
  identify(rawHeaders: readonly string[]): void {
    this.id ??= requestIdOf(rawHeaders);
  }

  /** The request id as the one header the writers of refusals add. */
  idHeader(): Record<string, string> {
    return { [REQUEST_ID_HEADER]: this.requestId };
  }

  /**
   * Headers the gateway sets on the upstream's answer (replacing the upstream's own): the
   * request id, and a fresh DPoP nonce (RFC 9449 §8.2) when the check produced one.
   */
  answerHeaders(): Record<string, string> {
    const h = this.idHeader();
    if (this.ctx.dpopNonce) h['dpop-nonce'] = this.ctx.dpopNonce;
    return h;
  }

  /**
   * The request goes upstream now with `headers` (it is timed from here): its id goes with
   * it, and with tracing, the W3C context of the upstream call's span.
   */
  forwarding(headers: Record<string, string | string[]>): void {
    this.upstreamStart = performance.now();
    headers[REQUEST_ID_HEADER] = this.requestId;
    if (this.trace !== null) this.trace.upstream(headers, this.facts!.method, this.ctx.route!.upstreamOrigin, this.ctx.upstreamPath!);
  }

  /** Logs an unexpected error with its stack (token-like runs scrubbed) and returns the 500 to answer. */
  bug(e: unknown): GatewayError {
    const err = e as { name?: string; message?: string; stack?: string; code?: string } | undefined;
    const scrub = (s: string | undefined) => s?.replace(SECRET_LIKE, '[redacted]');
    this.core.logger.error({
      route: this.ctx.route?.id,
      fault: { type: err?.name, code: err?.code, message: scrub(err?.message ?? String(e)), stack: scrub(err?.stack) },
    }, 'request failed: unexpected error');
    return new GatewayError('internal');
  }

  /** Upstream response headers arrived. */
  onUpstreamResponse(): void {
    this.core.metrics.upstreamDuration.labels(this.ctx.route!.id).observe((performance.now() - this.upstreamStart) / 1000);
  }

  /** The upstream failed before answering (the forwarder writes the error response). */
  onUpstreamError(err: GatewayError): void {
    this.error = err;
    if (this.trace !== null) this.trace.upstreamDone(err.status, err.reason);
  }

  /** The response was written in full, or cut short after its headers. */
  onResponseDone(status: number): void {
    this.done(status);
  }

  /** The request was answered with `status`: record it (once, whoever calls first). */
  done(status: number): void {
    if (this.recorded) return;
    this.recorded = true;
    this.core.recorder.record(this, status);
    if (this.trace !== null) this.trace.end(status);
  }
}
