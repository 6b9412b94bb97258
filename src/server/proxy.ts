/**
 * The proxy listener: the decision pipeline runs on every request, then the exact matched
 * path is forwarded over a pooled undici Agent (src/server/forward.ts), which writes the
 * upstream's answer straight to the client. Fastify is the server, but its routing does
 * not decide anything: requests without a body go from Node's `request` event straight
 * to the pipeline, and those with a body reach it through one Fastify catch-all, which
 * reads form-encoded bodies (to refuse `access_token` in them) and streams the rest.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import { newCredentialMemo, type CredentialMemo } from '../pipeline/extract.js';
import { decide, newContext, type DecisionContext } from '../pipeline/run.js';
import type { CompiledConfig } from '../config/compile.js';
import type { GatewayCore } from '../gateway.js';
import { sendError, toGatewayError, writeErrorRaw, writePreflightRaw, writeRawError } from './error-response.js';
import { clientFacts, clientUpstreamHeaders } from './forwarded.js';
import { UpstreamPool, type ForwardObserver } from './forward.js';

/** Per-request state, declared up front so the request object keeps one shape. */
export interface RequestState {
  ctx: DecisionContext;
  config: CompiledConfig;
  start: number;
  error: GatewayError | null;
}

/**
 * The proxy's per-request state: one object with a fixed shape, which is also the
 * upstream observer, so forwarding allocates no closures.
 */
class ProxyRequestState implements RequestState, ForwardObserver {
  readonly ctx: DecisionContext = newContext();
  readonly start = performance.now();
  error: GatewayError | null = null;
  upstreamStart = 0;
  /** Not under Fastify (no onResponse hook): record the request when its response ends. */
  recordOnEnd = false;

  constructor(readonly config: CompiledConfig, private readonly core: GatewayCore) {}

  /** Upstream response headers arrived. */
  onUpstreamResponse(): void {
    this.core.metrics.upstreamDuration.labels(this.ctx.route!.id).observe((performance.now() - this.upstreamStart) / 1000);
  }

  /** The upstream failed before answering (the error response is written by the forwarder). */
  onUpstreamError(err: GatewayError): void {
    this.error = err;
  }

  /** The response was written in full, or cut short after its headers (recorded once). */
  onResponseDone(status: number): void {
    if (!this.recordOnEnd) return;
    this.recordOnEnd = false;
    this.core.recordRequest(this, status);
  }

  /** Answers a refused request outside Fastify: the catalogue's response, then the access line. */
  answer(res: ServerResponse, err: GatewayError): void {
    this.error = err;
    if (!res.headersSent && !res.destroyed) writeErrorRaw(res, err, this.ctx.cors);
    this.onResponseDone(err.status);
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    tokengate: RequestState | null;
  }
}

const FORM = 'application/x-www-form-urlencoded';

/** Each client connection's last parsed `Authorization` value (src/pipeline/extract.ts). */
const credentialMemos = new WeakMap<Socket, CredentialMemo>();

function credentialMemoOf(socket: Socket): CredentialMemo {
  let memo = credentialMemos.get(socket);
  if (memo === undefined) credentialMemos.set(socket, (memo = newCredentialMemo()));
  return memo;
}

/** Fastify `childLoggerFactory` that hands every request the listener's own logger. */
export function sameLogger(this: unknown, logger: FastifyBaseLogger): FastifyBaseLogger {
  return logger;
}

/** Whether the request carries a body (RFC 9112 §6.3: Transfer-Encoding or a non-zero Content-Length). */
function hasBody(raw: IncomingMessage): boolean {
  const cl = raw.headers['content-length'];
  return raw.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

/** Builds (does not start) the proxy Fastify instance. */
export async function buildProxy(core: GatewayCore, logger: Logger): Promise<FastifyInstance> {
  const server = core.config.server;
  const app = Fastify({
    loggerInstance: logger as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger (Fastify's default builds one with a request id on every
    // request; nothing here logs per request through it — the access line is our own).
    childLoggerFactory: sameLogger,
    bodyLimit: server.bodyLimitBytes,
    keepAliveTimeout: server.keepAliveTimeoutMs,
    requestTimeout: server.requestTimeoutMs,
    http: {
      maxHeaderSize: server.maxHeaderBytes,
      headersTimeout: server.headersTimeoutMs,
      // false: the handler answers a missing Host with our 400 body instead of Node's empty one.
      requireHostHeader: false,
      // Node enforces headersTimeout/requestTimeout only when it sweeps connections, every
      // 30 s by default: sweep often enough that the configured limits mean what they say.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(server.headersTimeoutMs / 2))),
    },
    return503OnClosing: true,
    forceCloseConnections: false,
    frameworkErrors: (_err, _req, reply) => {
      sendError(reply, new GatewayError('bad_path'));
    },
    // The HTTP parser refused the request (bad framing, header section too large, too slow):
    // answer from the catalogue, count it, close.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const reason = err.code === 'HPE_HEADER_OVERFLOW' ? 'header_too_large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request_timeout' : 'bad_request';
      core.metrics.countRequest('(none)', 'denied', reason);
      // RFC 9112 §11.2: after a framing error nothing more on the connection can be trusted.
      writeRawError(socket, new GatewayError(reason));
    },
  });
  // CONNECT (RFC 9110 §9.3.6) is not proxied: answer 400 instead of Node's silent close.
  app.server.on('connect', (_req, socket: Socket) => writeRawError(socket, new GatewayError('bad_request')));
  app.decorateRequest('tokengate', null);
  // Node keeps only the first ~1000 request headers by default and drops the rest silently,
  // so a duplicate Authorization or a forged identity header could hide past the cut-off.
  // See them all: the header section is already bounded by maxHeaderBytes (431 beyond).
  app.server.maxHeadersCount = 0;

  const pool = new UpstreamPool({ connections: server.upstreamConnections, timeoutMs: server.upstreamTimeoutMs });
  app.addHook('onClose', () => pool.close());

  // Bodies stream to the upstream untouched; only form bodies are read (bounded by bodyLimit).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
  app.addContentTypeParser(FORM, { parseAs: 'string' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err, req, reply) => {
    const gerr = failure(logger, err);
    // Errors before the handler ran (body parsing) still get their access line and metric.
    req.tokengate ??= { ctx: newContext(), config: core.config, start: performance.now(), error: null };
    req.tokengate.error = gerr;
    return sendError(reply, gerr);
  });

  /**
   * Decides one request and, when it is allowed, forwards it (the forwarder writes the
   * response). `read` is a form body Fastify read (sent as read), else the body, if any,
   * streams. Returns the refusal to answer with, or null once forwarding has begun.
   */
  const decideAndForward = async (state: ProxyRequestState, raw: IncomingMessage, res: ServerResponse, read: string | undefined, takeOver: () => void): Promise<GatewayError | null> => {
    const { config, ctx } = state;
    try {
      const ct = read === undefined ? undefined : raw.headers['content-type'];
      const form = ct !== undefined && ct.toLowerCase().startsWith(FORM) ? read : undefined;
      await decide(config, clientFacts(config, raw, form, credentialMemoOf(raw.socket)), core.verifiers, ctx);
    } catch (e) {
      state.error = toGatewayError(e);
      core.metrics.authDuration.observe((performance.now() - state.start) / 1000);
      return state.error;
    }
    core.metrics.authDuration.observe((performance.now() - state.start) / 1000);
    if (ctx.preflight !== null) { // a CORS preflight the route answers itself: nothing is forwarded
      takeOver();
      writePreflightRaw(res, ctx.preflight);
      state.onResponseDone(204);
      return null;
    }
    const route = ctx.route!;
    const headers = clientUpstreamHeaders(config, route, raw, ctx.headers);
    // Node has already answered `Expect: 100-continue` (RFC 9110 §10.1.1); it is not forwarded.
    if (headers.expect !== undefined) delete headers.expect;
    let body: string | IncomingMessage | null = null;
    if (read !== undefined) {
      body = read; // a form body read to look for access_token: sent as read
      headers['content-length'] = String(Buffer.byteLength(body));
    } else if (hasBody(raw)) {
      body = raw;
    }
    takeOver();
    state.upstreamStart = performance.now();
    const search = ctx.search;
    pool.forward(raw, res, {
      origin: route.upstreamOrigin,
      path: search.length > 1 ? ctx.upstreamPath + search : (ctx.upstreamPath as string),
      method: raw.method as string,
      headers,
      body,
      // RFC 9449 §8.2: rotate the client's DPoP nonce on the upstream's answer.
      responseHeaders: ctx.dpopNonce ? { 'dpop-nonce': ctx.dpopNonce } : null,
      cors: ctx.cors,
    }, state);
    return null;
  };

  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    // In-flight requests finish on the config they started with.
    const state = new ProxyRequestState(core.config, core);
    req.tokengate = state;
    // the forwarder writes the response (onResponse hooks still run on finish)
    const refused = await decideAndForward(state, req.raw, reply.raw, typeof req.body === 'string' ? req.body : undefined, () => reply.hijack());
    if (refused !== null) return sendError(reply, refused, state.ctx.cors);
  };
  mountCatchAll(app, core, handler);

  // Requests without a body — nearly all of them — skip Fastify's request and reply objects,
  // its body parsing, routing and hooks: the handler above minus those, measured at ~5 % of
  // a proxied request's CPU. Requests with a body (form bodies are read, others streamed)
  // and every request once shutdown has begun (Fastify answers 503) take Fastify's path.
  const viaFastify = app.server.listeners('request')[0] as (req: IncomingMessage, res: ServerResponse) => void;
  app.server.removeAllListeners('request');
  app.server.on('request', (raw: IncomingMessage, res: ServerResponse) => {
    if (core.draining || hasBody(raw)) return viaFastify(raw, res);
    const state = new ProxyRequestState(core.config, core);
    state.recordOnEnd = true;
    decideAndForward(state, raw, res, undefined, noop).then((refused) => {
      if (refused !== null) state.answer(res, refused);
    }, (e: unknown) => {
      // Not a refusal but a failure (decide's refusals come back as values), as Fastify's error handler sees it.
      state.answer(res, failure(logger, e));
    });
  });
  return app;
}

function noop(): void {}

/**
 * What a thrown error answers (error-response.ts), logged when it is the gateway's fault
 * (5xx), with the error's code and message only.
 */
function failure(logger: Logger, e: unknown): GatewayError {
  const err = toGatewayError(e);
  if (err.status >= 500) logger.error({ err: { code: (e as { code?: string }).code, message: (e as Error).message } }, 'request failed');
  return err;
}

/**
 * Sends every request, whatever its method and path, to `handler` (Fastify's router only
 * dispatches; the pipeline decides), and records one access line per finished request.
 * Shared by the proxy and the decision listener.
 */
export function mountCatchAll(
  app: FastifyInstance,
  core: GatewayCore,
  handler: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
): void {
  app.all('*', handler);
  app.all('/', handler);
  app.setNotFoundHandler(handler);
  app.addHook('onResponse', (req, reply, done) => {
    const st = req.tokengate;
    if (st) core.recordRequest(st, reply.statusCode);
    done();
  });
}
