/**
 * The decision listener (forward auth): nginx `auth_request`, Traefik ForwardAuth and
 * Envoy ext_authz (HTTP) ask it whether a request may pass. Any request to it is judged
 * as the request described by `X-Forwarded-Method` / `-Host` / `-Uri` (or nginx's
 * `X-Original-Method` / `X-Original-URI`) with its `Authorization` header, by the same
 * {@link decide} the proxy runs: same routes, same path rules, same policies. The answer
 * is 200 with the identity headers the proxy would have forwarded, or the error the proxy
 * would have sent. The forwarded headers are believed only from `decision.trustedProxies`,
 * and the trusted peer must set or drop every one of them itself: nginx passes the client's
 * own headers on to the auth subrequest (README, "Decision endpoint", has the setups, and
 * test/e2e/decision-nginx.test.ts sends forgeries through them).
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import { decide, newContext } from '../pipeline/run.js';
import { addressMatcher, type AddressMatcher } from '../config/address-matcher.js';
import type { GatewayCore } from '../gateway.js';
import { mountCatchAll, sameLogger, type RequestState } from './proxy.js';
import { sendError, toGatewayError } from './error-response.js';
import { clientScheme, countHeader } from './forwarded.js';

/** A compiled `trustedProxies` list (the same matcher as `clientCert.trustedProxies`). */
export type PeerMatcher = AddressMatcher;

/** Compiles CIDR strings (already validated by cross-check) into a matcher. */
export const peerMatcher: (cidrs: readonly string[]) => PeerMatcher = addressMatcher;

/** The one value of a header sent at most once; `null` when absent, throws when repeated. */
function single(raw: readonly string[], lname: string): string | null {
  let found: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === lname.length && raw[i].toLowerCase() === lname) {
      if (found !== null) throw new GatewayError('missing_forwarded_uri');
      found = raw[i + 1];
    }
  }
  return found;
}

function bad(): never {
  throw new GatewayError('bad_request');
}

/**
 * The request a decision call describes. The `X-Forwarded-*` set wins over nginx's
 * `X-Original-*` set; the sets are never mixed. Without a forwarded method the decision
 * request's own method is used (Envoy ext_authz keeps the original method); without a
 * `X-Forwarded-Host`, the decision request's own `Host` is used.
 * A described URI that is absent, repeated or not origin-form is 400, and so are two
 * `Host` headers when no `X-Forwarded-Host` names the host.
 */
export function describedRequest(method: string, host: string | undefined, raw: readonly string[]): { method: string; target: string; host: string | undefined } {
  const fUri = single(raw, 'x-forwarded-uri');
  const oUri = fUri === null ? single(raw, 'x-original-uri') : null;
  const target = fUri ?? oUri;
  if (target === null || !target.startsWith('/')) throw new GatewayError('missing_forwarded_uri');
  const m = fUri !== null ? single(raw, 'x-forwarded-method') : single(raw, 'x-original-method');
  // RFC 9112 §3.2: a request with two Host headers is ambiguous (the proxy refuses it too).
  const h = single(raw, 'x-forwarded-host') ?? (countHeader(raw, 'host') > 1 ? bad() : host);
  return { method: m === null ? method : m.trim().toUpperCase(), target, host: h };
}

/** Builds (does not start) the decision Fastify instance. */
export function buildDecision(core: GatewayCore, logger: Logger): FastifyInstance {
  const started = core.config;
  const server = started.server;
  const app = Fastify({
    loggerInstance: logger as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger (Fastify's default builds one with a request id on every
    // request; nothing here logs per request through it — the access line is our own).
    childLoggerFactory: sameLogger,
    keepAliveTimeout: server.keepAliveTimeoutMs,
    requestTimeout: server.requestTimeoutMs,
    http: { maxHeaderSize: server.maxHeaderBytes, headersTimeout: server.headersTimeoutMs },
    return503OnClosing: true,
    forceCloseConnections: false,
    frameworkErrors: (_err, _req, reply) => {
      sendError(reply, new GatewayError('bad_path'));
    },
  });
  app.decorateRequest('tokengate', null);
  // As on the proxy: see every header (a second Authorization must not hide past Node's
  // ~1000-header cut-off); the section is bounded by maxHeaderBytes.
  app.server.maxHeadersCount = 0;
  // The body of a decision call means nothing: read and discard it.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => {
    payload.on('error', done);
    payload.on('end', () => done(null, undefined));
    payload.resume();
  });
  app.setErrorHandler((err, req, reply) => {
    const gerr = toGatewayError(err);
    if (req.tokengate) req.tokengate.error = gerr;
    return sendError(reply, gerr);
  });

  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    const config = core.config;
    const ctx = newContext();
    const state: RequestState = { ctx, config, start: performance.now(), error: null };
    req.tokengate = state;
    const raw = req.raw;
    try {
      // A reload that removes the `decision` block cannot stop the listener: keep the list it started with.
      const trusted = config.decisionTrusted ?? started.decisionTrusted;
      if (!trusted || !trusted(raw.socket.remoteAddress)) throw new GatewayError('untrusted_peer');
      const described = describedRequest(raw.method as string, raw.headers.host, raw.rawHeaders);
      // DPoP htu (RFC 9449 §4.3) is the described request's URI: its scheme from
      // X-Forwarded-Proto (the peer is trusted), its host as described; the peer is the
      // front proxy, which is also who may carry the client certificate.
      await decide(config, {
        ...described,
        rawHeaders: raw.rawHeaders,
        scheme: clientScheme(true, raw.headers['x-forwarded-proto']),
        peer: raw.socket.remoteAddress,
      }, core.verifiers, ctx);
    } catch (e) {
      state.error = toGatewayError(e);
      core.metrics.authDuration.observe((performance.now() - state.start) / 1000);
      return sendError(reply, state.error);
    }
    core.metrics.authDuration.observe((performance.now() - state.start) / 1000);
    reply.header('cache-control', 'no-store');
    for (const [name, value] of ctx.headers) reply.header(name, value);
    if (ctx.dpopNonce) reply.header('dpop-nonce', ctx.dpopNonce); // RFC 9449 §8.2, for the front proxy to relay
    return reply.code(200).send();
  };
  mountCatchAll(app, core, handler);
  return app;
}
