/**
 * What the proxy and the decision listener share: Fastify's server options (limits,
 * timeouts, no per-request logger), the answers to requests Fastify or Node's parser
 * refuse before any handler runs, and the hardening of Node's HTTP server. Each refusal
 * here is answered from the error catalogue and recorded like any other request.
 */
import type { FastifyHttpOptions, FastifyInstance } from 'fastify';
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { GatewayError, type Reason } from '../errors.js';
import type { GatewayCore } from './core.js';
import { sendError, toGatewayError, writeRawError } from './error-response.js';
import { Exchange } from './exchange.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** This request's exchange, set by the handler (or by the error handler when parsing failed first). */
    tokengate: Exchange | null;
  }
}

/** Fastify's router reads no query string here: the pipeline reads `search` itself. */
const NO_QUERY = Object.freeze({});

/** Why Node's HTTP parser refused a connection's bytes, as a catalogue reason. */
function parserReason(code: string | undefined): Reason {
  return code === 'HPE_HEADER_OVERFLOW' ? 'header_too_large' : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request_timeout' : 'bad_request';
}

/**
 * Runs `then` once every request the parser completed before the fault on `socket` has
 * been answered. Node assigns a connection's responses to it one at a time, in request
 * order (`_httpMessage` is the one being written, the others wait behind it). A request
 * whose own body the fault is in (not complete) is the faulty one: `then` runs at once.
 */
export function afterResponses(socket: Socket, then: () => void): void {
  const res = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (!res || !res.req?.complete) return then();
  res.once('close', () => afterResponses(socket, then));
}

/**
 * Node's parser refused bytes on a connection (bad framing, header section too large, too
 * slow). Requests it parsed before them on the same connection (pipelined in one write)
 * were already handed to the handler, and may be on their way upstream: each is answered
 * and recorded first, then the refusal is written and the connection closed (RFC 9112
 * §11.2: after a framing error nothing more on it can be trusted). Bytes after a request
 * that asked to close the connection (`Connection: close`, HTTP/1.0) are no request at
 * all (RFC 9112 §9.6): the connection closes after that request's answer.
 */
function clientErrorHandler(core: GatewayCore): (err: NodeJS.ErrnoException, socket: Duplex) => void {
  const refused = new WeakSet<Duplex>(); // the parser may report the same connection again
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed || refused.has(socket)) return;
    refused.add(socket);
    afterResponses(socket as Socket, () => {
      if (socket.destroyed) return;
      if (err.code === 'HPE_CLOSED_CONNECTION') return void socket.destroy();
      const ex = new Exchange(core.config, core);
      ex.error = new GatewayError(parserReason(err.code));
      writeRawError(socket, ex.error, ex.idHeader()); // nothing was read: a new id
      ex.done(ex.error.status);
    });
  };
}

/**
 * Fastify options for a listener that serves clients or front proxies: the limits of
 * `server`, no request logging (the access line is the recorder's), and refusals before
 * the handler (a target the router cannot read, a parser error) answered from the catalogue.
 */
export function listenerOptions(core: GatewayCore, extra: { bodyLimit?: number } = {}): FastifyHttpOptions<Server> {
  const server = core.config.server;
  return {
    // No Fastify logger: with one, Fastify sets up response listeners and a request logger
    // on every request. Nothing here logs through it: the access line is the recorder's,
    // and every error a listener can meet (handler, framework, parser) is logged by our own
    // handlers above through the gateway's logger.
    logger: false,
    routerOptions: { querystringParser: () => NO_QUERY },
    ...extra,
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
    // Requests on open connections once shutdown began reach the handler, which refuses them
    // (503 `shutting_down`) and records them; Fastify adds `Connection: close`.
    return503OnClosing: false,
    forceCloseConnections: false,
    frameworkErrors: (_err, req, reply) => {
      const ex = new Exchange(core.config, core);
      ex.identify(req.raw.rawHeaders);
      ex.error = new GatewayError('bad_path');
      sendError(reply, ex.error, null, ex.idHeader());
      ex.done(ex.error.status);
    },
    clientErrorHandler: clientErrorHandler(core),
  };
}

/**
 * Installs what every client-facing listener needs beyond its options: the error handler
 * (errors before the handler ran, such as an unreadable body, are answered and recorded
 * too), every request header seen, and CONNECT answered.
 */
export function hardenListener(app: FastifyInstance, core: GatewayCore): void {
  app.decorateRequest('tokengate', null);
  app.setErrorHandler((err, req, reply) => {
    const ex = (req.tokengate ??= new Exchange(core.config, core));
    ex.identify(req.raw.rawHeaders);
    const gerr = toGatewayError(err);
    ex.error = gerr.status >= 500 ? ex.bug(err) : gerr;
    sendError(reply, ex.error, null, ex.idHeader());
    ex.done(ex.error.status);
  });
  // Node keeps only the first ~1000 request headers by default and drops the rest silently,
  // so a duplicate Authorization or a forged identity header could hide past the cut-off.
  // See them all: the header section is already bounded by maxHeaderBytes (431 beyond).
  app.server.maxHeadersCount = 0;
  // CONNECT (RFC 9110 §9.3.6) is not proxied: answer 400 instead of Node's silent close.
  app.server.on('connect', (req, socket: Duplex) => {
    const { ex, error } = refuseConnect(core, req.rawHeaders);
    writeRawError(socket, error, ex.idHeader());
    ex.done(error.status);
  });
}

/**
 * A CONNECT, over HTTP/1.1 or HTTP/2 (nothing is tunnelled): its exchange, with the
 * request's id, and the 400 from the catalogue that the caller writes and then records.
 */
export function refuseConnect(core: GatewayCore, rawHeaders: readonly string[]): { ex: Exchange; error: GatewayError } {
  const ex = new Exchange(core.config, core);
  ex.identify(rawHeaders);
  const error = new GatewayError('bad_request');
  ex.error = error;
  return { ex, error };
}
