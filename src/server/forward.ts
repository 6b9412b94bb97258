/**
 * Forwarding to upstreams over one pooled undici Agent (keep-alive, `connections` per
 * origin), writing the upstream's answer straight to the client's response: no
 * intermediate Readable, no per-request option objects or closures beyond one handler.
 *
 * Protocol hygiene lives here and in {@link upstreamHeaders}: hop-by-hop headers and the
 * ones a `Connection` header lists are removed in both directions (RFC 9110 §7.6.1),
 * and an upstream that cannot be reached answers 502, one that is too slow 504, each
 * with the generic body of the error catalogue.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Agent, type Dispatcher } from 'undici';
import { GatewayError } from '../errors.js';
import { connectionTokens, HOP_BY_HOP } from '../http/headers.js';
import { clientGone, writeErrorRaw } from './error-response.js';
import { decorateForwarded, type CorsHeaders } from '../pipeline/cors.js';

/** Pool settings (from `server`). */
export interface UpstreamPoolOptions {
  /** Maximum connections per upstream origin. */
  connections: number;
  /** Where a 502/504's cause is logged (warn), with the upstream's origin. */
  log?: { warn(obj: object, msg: string): void };
  /** No response headers by then: 504. */
  timeoutMs: number;
}

/** What the caller learns about one forwarded request. */
export interface ForwardObserver {
  /** Upstream response headers arrived (for the upstream-duration metric). */
  onUpstreamResponse(): void;
  /** The upstream failed before answering; the error response has been written. */
  onUpstreamError(err: GatewayError): void;
  /**
   * The response to the client is complete (`status` sent), or was cut short after its
   * headers, or the client left before any response was written ({@link CLIENT_CLOSED}).
   */
  onResponseDone(status: number): void;
}

/**
 * The status recorded for a request whose client left before its answer was written
 * (nginx's convention): it was forwarded, so it is logged, but nothing was sent.
 */
export const CLIENT_CLOSED = 499;

/** One request on its way upstream. */
export interface ForwardRequest {
  origin: string;
  /** Path and query exactly as they go upstream. */
  path: string;
  method: string;
  headers: Record<string, string | string[]>;
  /** A form body that was read (already in `headers` by length), the raw stream, or none. */
  body: string | IncomingMessage | null;
  /** Headers the gateway adds to the upstream's answer (they replace the upstream's), and to its own 502/504. */
  responseHeaders: Record<string, string> | null;
  /**
   * The route's CORS headers for this request (DecisionContext `cors`): they replace every
   * `Access-Control-*` header of the upstream's answer, and go on a 502/504 too. Absent or
   * null: the answer's headers are left as they are.
   */
  cors?: CorsHeaders | null;
}

/** Response headers minus hop-by-hop ones and those the upstream's `Connection` lists. */
export function responseHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  // undici hands repeated Connection headers over as an array: connectionTokens reads them as one list.
  const listed = connectionTokens(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined || HOP_BY_HOP.has(name) || (listed !== null && listed.has(name))) continue;
    out[name] = v;
  }
  return out;
}

/** Writes the upstream's response to the client (undici's dispatch handler interface). */
class ResponseWriter implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private started = false;
  /** The error response has been written (or the client is gone): later errors change nothing. */
  private failed = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly observer: ForwardObserver,
    private readonly extra: Record<string, string> | null,
    private readonly origin: string,
    private readonly log: UpstreamPoolOptions['log'],
    private readonly cors: CorsHeaders | null,
  ) {}

  /**
   * The client went away before the response was complete: stop the upstream request.
   * (`writableEnded`, not `writableFinished`: an HTTP/2 response reports the latter once
   * its stream is reset.)
   */
  private readonly onClientClose = (): void => {
    if (!this.res.writableEnded) this.controller?.abort(new Error('client closed'));
  };

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // `on`, not `once` (no wrapper per request): it is removed when the response ends or fails.
    this.res.on('close', this.onClientClose);
    // Gone already (an HTTP/2 stream reset while the request was decided): its 'close' has
    // passed, and an answer would be paused forever on a write that never drains, holding
    // the upstream connection.
    if (clientGone(this.res)) this.onClientClose();
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // An interim answer (103 Early Hints, 102): not the response; the final one follows (RFC 9110 §15.2).
    if (statusCode < 200) return;
    this.started = true;
    this.observer.onUpstreamResponse();
    const out = responseHeaders(headers);
    if (this.extra) for (const name in this.extra) out[name] = this.extra[name];
    if (this.cors !== null) decorateForwarded(out, this.cors);
    // An HTTP/1.1 connection cannot be reused until the request body has been read:
    // close it when the upstream answers before that (an HTTP/2 stream ends on its own).
    if (!this.req.complete && this.req.httpVersionMajor !== 2) out.connection = 'close';
    try {
      this.res.writeHead(statusCode, out);
    } catch {
      // An invalid status code or header value from the upstream: 502, and stop reading it.
      this.fail(new GatewayError('upstream_unavailable'));
      controller.abort(new Error('invalid upstream response'));
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.failed) return;
    if (!this.res.write(chunk)) {
      if (clientGone(this.res)) return void controller.abort(new Error('client closed'));
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.res.off('close', this.onClientClose);
    if (this.failed) return;
    // Trailers reach an HTTP/2 client, or an HTTP/1.1 one on a chunked answer (Node drops them otherwise).
    for (const _ in trailers) {
      this.res.addTrailers(responseHeaders(trailers));
      break;
    }
    this.res.end();
    this.observer.onResponseDone(this.res.statusCode);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.res.off('close', this.onClientClose);
    if (this.failed) return;
    if (this.started || this.res.headersSent) {
      // Mid-body: the client must see a truncated response, not a complete one.
      this.res.destroy();
      this.observer.onResponseDone(this.res.statusCode);
      return;
    }
    if (clientGone(this.res)) return void this.observer.onResponseDone(CLIENT_CLOSED);
    this.fail(upstreamError(error, this.origin, this.log));
  }

  private fail(err: GatewayError): void {
    this.failed = true;
    this.observer.onUpstreamError(err);
    if (!this.res.headersSent && !clientGone(this.res)) writeErrorRaw(this.res, err, this.cors, this.extra);
    else this.res.destroy();
    this.observer.onResponseDone(this.res.headersSent ? this.res.statusCode : err.status);
  }
}

/** Why an upstream could not be used, as logged with a 502/504. */
export type UpstreamCause = 'timeout' | 'refused' | 'reset' | 'dns' | 'tls' | 'unreachable' | 'other';

const CAUSES: Record<string, UpstreamCause> = {
  UND_ERR_HEADERS_TIMEOUT: 'timeout', UND_ERR_CONNECT_TIMEOUT: 'timeout', ETIMEDOUT: 'timeout',
  ECONNREFUSED: 'refused',
  ECONNRESET: 'reset', EPIPE: 'reset', UND_ERR_SOCKET: 'reset', UND_ERR_CLOSED: 'reset',
  ENOTFOUND: 'dns', EAI_AGAIN: 'dns', EAI_FAIL: 'dns', EAI_NODATA: 'dns',
  EHOSTUNREACH: 'unreachable', ENETUNREACH: 'unreachable',
  // OpenSSL's verification codes, as Node's tls passes them on.
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'tls', DEPTH_ZERO_SELF_SIGNED_CERT: 'tls', SELF_SIGNED_CERT_IN_CHAIN: 'tls',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'tls', UNABLE_TO_GET_ISSUER_CERT: 'tls', CERT_HAS_EXPIRED: 'tls',
  CERT_NOT_YET_VALID: 'tls', CERT_REVOKED: 'tls', CERT_UNTRUSTED: 'tls', CERT_REJECTED: 'tls',
};

/** The cause of an undici/Node connection error, from its `code` (or its `cause`'s). */
export function upstreamCause(error: unknown): { cause: UpstreamCause; code: string | undefined } {
  const e = error as { code?: unknown; cause?: { code?: unknown } } | null;
  const raw = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
  if (raw === undefined) return { cause: 'other', code: undefined };
  const cause = CAUSES[raw] ?? (raw.startsWith('ERR_TLS_') || raw.startsWith('ERR_SSL_') ? 'tls' : 'other');
  return { cause, code: raw };
}

/**
 * Headers and connect timeouts are "too slow" (504); refused, reset, DNS, TLS and the rest
 * are 502. The cause is logged: the client's body stays generic.
 */
export function upstreamError(error: Error, origin: string, log: UpstreamPoolOptions['log']): GatewayError {
  const { cause, code } = upstreamCause(error);
  const err = new GatewayError(cause === 'timeout' ? 'upstream_timeout' : 'upstream_unavailable');
  log?.warn({ upstream: origin, status: err.status, cause, code, detail: error.message }, 'upstream failed');
  return err;
}

/**
 * The gateway's connection pools to its HTTP/1.1 upstreams (one Agent; a pool per origin
 * inside). `upstreamProtocol: h2` upstreams have theirs in src/server/h2-upstream.ts.
 */
export class UpstreamPool {
  private readonly agent: Agent;
  private readonly log: UpstreamPoolOptions['log'];

  constructor(opts: UpstreamPoolOptions) {
    this.log = opts.log;
    this.agent = new Agent({
      connections: opts.connections,
      pipelining: 1,
      headersTimeout: opts.timeoutMs,
      keepAliveTimeout: 30_000,
      connect: { timeout: Math.min(opts.timeoutMs, 10_000) },
    });
  }

  /** Sends `fwd` upstream and streams the answer into `res`. */
  forward(req: IncomingMessage, res: ServerResponse, fwd: ForwardRequest, observer: ForwardObserver): void {
    const writer = new ResponseWriter(req, res, observer, fwd.responseHeaders, fwd.origin, this.log, fwd.cors ?? null);
    try {
      this.agent.dispatch({
        origin: fwd.origin,
        path: fwd.path,
        method: fwd.method as Dispatcher.HttpMethod,
        headers: fwd.headers,
        body: fwd.body,
      }, writer);
    } catch (e) {
      // undici refuses a header or method it cannot send: the request cannot be forwarded.
      const err = new GatewayError('upstream_unavailable');
      this.log?.warn({ upstream: fwd.origin, status: err.status, cause: 'other', code: (e as { code?: string }).code }, 'upstream failed');
      observer.onUpstreamError(err);
      writeErrorRaw(res, err, fwd.cors ?? null, fwd.responseHeaders);
      observer.onResponseDone(err.status);
    }
  }

  /** Closes idle upstream connections and waits for in-flight ones. */
  close(): Promise<void> {
    return this.agent.close();
  }
}
