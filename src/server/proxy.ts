/**
 * The proxy listener. Every request, with or without a body, enters one Fastify
 * catch-all handler, which judges it once ({@link Exchange.judge}) and either answers the
 * refusal or forwards the exact matched path over a pooled undici Agent
 * (src/server/forward.ts), which writes the upstream's answer straight to the client
 * (`reply.hijack()`). Fastify's router only dispatches; bodies are not parsed, except
 * form-encoded ones, read to refuse an `access_token` in them (RFC 6750 §2.2).
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { newCredentialMemo, type CredentialMemo } from '../pipeline/extract.js';
import { GatewayError } from '../errors.js';
import type { GatewayCore } from './core.js';
import { sendError, writeErrorRaw, writePreflightRaw } from './error-response.js';
import { Exchange } from './exchange.js';
import { certSourceOf, clientFacts, clientUpstreamHeaders } from './forwarded.js';
import { UpstreamPool } from './forward.js';
import { H2UpstreamPool } from './h2-upstream.js';
import { hardenListener, listenerOptions, refuseConnect } from './listener.js';
import { proxyServerFactory } from './serve.js';
import { TlsFiles } from './tls.js';

const FORM = 'application/x-www-form-urlencoded';

/**
 * Whether the request carries a body: on HTTP/2, whether its HEADERS frame did not end
 * the stream; on HTTP/1.1, Transfer-Encoding or a non-zero Content-Length (RFC 9112 §6.3).
 */
function hasBody(raw: IncomingMessage): boolean {
  if (raw.httpVersionMajor === 2) return !(raw as unknown as { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders;
  const cl = raw.headers['content-length'];
  return raw.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

/** The form body Fastify read, when the request's content type is form-encoded. */
function formBody(req: FastifyRequest): string | undefined {
  return typeof req.body === 'string' && req.headers['content-type']?.toLowerCase().startsWith(FORM) ? req.body : undefined;
}

/** Builds (does not start) the proxy Fastify instance. */
export function buildProxy(core: GatewayCore): FastifyInstance {
  const server = core.config.server;
  // server.tls: the pair is read now (a bad one fails the start) and re-read when it changes.
  const tls = server.tls ? new TlsFiles(server.tls, core.logger, core.metrics) : null;
  const certs = certSourceOf(core.config);
  const app = Fastify({
    ...listenerOptions(core, { bodyLimit: server.bodyLimitBytes }),
    serverFactory: proxyServerFactory(core.config, {
      tls: tls?.serverOptions() ?? null,
      onH2Abuse: (reason, peer) => core.logger.warn({ reason, peer }, 'http2 session closed for abuse'),
      // Nothing is tunnelled (RFC 9113 §8.5): 400 from the catalogue, recorded, as on HTTP/1.1.
      onH2Connect: (req, res) => {
        const { ex, error } = refuseConnect(core, req.rawHeaders);
        writeErrorRaw(res as unknown as ServerResponse, error, null, ex.idHeader());
        ex.done(error.status);
      },
    }),
  });
  hardenListener(app, core);
  // This listener answers gRPC clients itself: refusals of gRPC calls in gRPC form (src/server/error-response.ts).
  app.decorate('grpcRefusals', true);
  if (tls) {
    tls.watch(app.server as unknown as TlsServer);
    app.addHook('onClose', (_app, done) => {
      tls.close();
      done();
    });
  }

  const poolOptions = { connections: server.upstreamConnections, timeoutMs: server.upstreamTimeoutMs, log: core.logger };
  const pool = new UpstreamPool(poolOptions);
  const h2pool = new H2UpstreamPool(poolOptions);
  app.addHook('onClose', () => {
    h2pool.close();
    return pool.close();
  });

  // Bodies stream to the upstream untouched; only form bodies are read (bounded by bodyLimit).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
  app.addContentTypeParser(FORM, { parseAs: 'string' }, (_req, body, done) => done(null, body));

  // Each connection's last parsed `Authorization` value (src/pipeline/extract.ts): a
  // keep-alive client sends the same one on every request. An HTTP/2 connection is its
  // session: Node's compat `req.socket` is a new Proxy per stream, so keyed by it the
  // memo would never be found again (a stream already reset has no session: its Proxy then).
  const memos = new WeakMap<Socket | Http2Session, CredentialMemo>();
  const memoOf = (raw: IncomingMessage): CredentialMemo => {
    const conn = (raw.httpVersionMajor === 2 ? (raw as unknown as Http2ServerRequest).stream.session : undefined) ?? raw.socket;
    let memo = memos.get(conn);
    if (memo === undefined) memos.set(conn, (memo = newCredentialMemo()));
    return memo;
  };
  const factsOf = (config: Parameters<typeof clientFacts>[0], req: FastifyRequest) =>
    clientFacts(config, req.raw, formBody(req), memoOf(req.raw), certs);

  /** Answers `req` once it is judged: the refusal, a preflight's answer, or the upstream's. */
  const answer = (req: FastifyRequest, reply: FastifyReply, ex: Exchange, refused: GatewayError | null): void => {
    if (refused !== null) {
      sendError(reply, refused, ex.ctx.cors, ex.idHeader());
      ex.done(refused.status);
      return;
    }
    const { config, ctx } = ex;
    if (ctx.preflight !== null) { // a CORS preflight the route answers itself: nothing is forwarded
      reply.hijack();
      writePreflightRaw(reply.raw, ctx.preflight, ex.idHeader());
      ex.done(204);
      return;
    }
    const raw = req.raw;
    const route = ctx.route!;
    const headers = clientUpstreamHeaders(config, route, raw, ctx.headers, certs);
    // Node has already answered `Expect: 100-continue` (RFC 9110 §10.1.1); it is not forwarded.
    if (headers.expect !== undefined) delete headers.expect;
    const form = formBody(req);
    let body: string | IncomingMessage | null = null;
    if (form !== undefined) {
      body = form; // read to look for access_token: sent as read
      headers['content-length'] = String(Buffer.byteLength(form));
    } else if (hasBody(raw)) {
      body = raw;
    }
    reply.hijack(); // the forwarder writes the response
    ex.forwarding(headers);
    const search = ctx.search;
    (route.upstreamH2 ? h2pool : pool).forward(raw, reply.raw, {
      origin: route.upstreamOrigin,
      path: search.length > 1 ? ctx.upstreamPath + search : (ctx.upstreamPath as string),
      method: raw.method as string,
      headers,
      body,
      responseHeaders: ex.answerHeaders(),
      cors: ctx.cors,
    }, ex);
  };

  // Not an async function: Fastify then waits for the reply without wrapping a promise of
  // its own around every request. Whatever `answer` throws is a bug, answered as Fastify's
  // error handler would.
  const handler = (req: FastifyRequest, reply: FastifyReply): void => {
    // In-flight requests finish on the config they started with.
    const ex = new Exchange(core.config, core);
    req.tokengate = ex;
    ex.judge(factsOf, req).then((refused) => answer(req, reply, ex, refused)).catch((e: unknown) => {
      ex.error = ex.bug(e);
      // Too late for an answer of our own: cut the response (the client sees it truncated).
      if (reply.sent || reply.raw.headersSent) reply.raw.destroy();
      else sendError(reply, ex.error, ex.ctx.cors, ex.idHeader());
      ex.done(ex.error.status); // once: a no-op when the forwarder already recorded it
    });
  };
  mountCatchAll(app, handler);
  return app;
}

/**
 * Sends every request, whatever its method and path, to `handler`: Fastify's router only
 * dispatches, the pipeline decides. Shared by the proxy and the decision listener.
 */
export function mountCatchAll(app: FastifyInstance, handler: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown> | void): void {
  app.all('*', handler);
  app.all('/', handler);
  app.setNotFoundHandler(handler);
}
