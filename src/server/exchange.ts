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

/** Base64url runs long enough to be a token or a secret; scrubbed from a bug's log line. */
const SECRET_LIKE = /[A-Za-z0-9_-]{24,}(?:\.[A-Za-z0-9_-]*){0,2}/g;

/** Per-request state with a fixed shape; also the upstream observer, so forwarding allocates no closures. */
export class Exchange implements RecordedRequest, ForwardObserver {
  readonly ctx: DecisionContext = newContext();
  readonly start = performance.now();
  error: GatewayError | null = null;
  upstreamStart = 0;
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
      await decide(this.config, read(this.config, arg), this.core.verifiers, this.ctx);
    } catch (e) {
      this.error = e instanceof GatewayError ? e : this.bug(e);
    }
    this.core.metrics.observeAuth(this.ctx.route?.id, this.start);
    return this.error;
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
  }
}
