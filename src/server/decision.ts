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
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import type { CompiledConfig } from '../config/compile.js';
import { GatewayError } from '../errors.js';
import type { RequestFacts } from '../pipeline/run.js';
import type { GatewayCore } from './core.js';
import { sendError } from './error-response.js';
import { Exchange } from './exchange.js';
import { countHeader, singleHeader } from '../http/headers.js';
import { clientScheme, firstValue } from './forwarded.js';
import { hardenListener, listenerOptions } from './listener.js';
import { mountCatchAll } from './proxy.js';
import { REQUEST_ID_HEADER } from './request-id.js';

function bad(): never {
  throw new GatewayError('bad_request');
}

/** The one value of a described-request header; repeated is as bad as absent (400). */
function described(raw: readonly string[], lname: string): string | null {
  return singleHeader(raw, lname, 'missing_forwarded_uri');
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
  const fUri = described(raw, 'x-forwarded-uri');
  const oUri = fUri === null ? described(raw, 'x-original-uri') : null;
  const target = fUri ?? oUri;
  if (target === null || !target.startsWith('/')) throw new GatewayError('missing_forwarded_uri');
  const m = fUri !== null ? described(raw, 'x-forwarded-method') : described(raw, 'x-original-method');
  // RFC 9112 §3.2: a request with two Host headers is ambiguous (the proxy refuses it too).
  const h = described(raw, 'x-forwarded-host') ?? (countHeader(raw, 'host') > 1 ? bad() : host);
  return { method: m === null ? method : m.trim().toUpperCase(), target, host: h };
}

/**
 * The request facts of a decision call. DPoP htu (RFC 9449 §4.3) is the described
 * request's URI: its scheme from X-Forwarded-Proto (the peer is trusted), its host as
 * described; the peer is the front proxy, which is also who may carry the client
 * certificate. A peer outside `decision.trustedProxies` is refused before anything is read.
 */
function decisionFacts(trusted: (config: CompiledConfig) => ((addr: string | undefined) => boolean) | null, config: CompiledConfig, raw: IncomingMessage): RequestFacts {
  const isTrusted = trusted(config);
  if (!isTrusted || !isTrusted(raw.socket.remoteAddress)) throw new GatewayError('untrusted_peer');
  return {
    ...describedRequest(raw.method as string, raw.headers.host, raw.rawHeaders),
    rawHeaders: raw.rawHeaders,
    scheme: clientScheme(true, raw.headers['x-forwarded-proto']),
    peer: raw.socket.remoteAddress,
    // The peer is a trusted front proxy: the client is the one it reports.
    client: firstValue(raw.headers['x-forwarded-for']) ?? raw.socket.remoteAddress,
  };
}

/** Builds (does not start) the decision Fastify instance. */
export function buildDecision(core: GatewayCore): FastifyInstance {
  const started = core.config;
  const app = Fastify(listenerOptions(core));
  hardenListener(app, core);
  // The body of a decision call means nothing: read and discard it.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => {
    payload.on('error', done);
    payload.on('end', () => done(null, undefined));
    payload.resume();
  });
  // A reload that removes the `decision` block cannot stop the listener: keep the list it started with.
  const trusted = (config: CompiledConfig) => config.decisionTrusted ?? started.decisionTrusted;
  const facts = (config: CompiledConfig, raw: IncomingMessage) => decisionFacts(trusted, config, raw);

  const handler = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const ex = new Exchange(core.config, core);
    req.tokengate = ex;
    const refused = await ex.judge(facts, req.raw);
    if (refused !== null) {
      sendError(reply, refused, null, ex.idHeader());
      ex.done(refused.status);
      return;
    }
    const ctx = ex.ctx;
    reply.header('cache-control', 'no-store');
    reply.header(REQUEST_ID_HEADER, ex.requestId);
    for (const [name, value] of ctx.headers) reply.header(name, value);
    if (ctx.dpopNonce) reply.header('dpop-nonce', ctx.dpopNonce); // RFC 9449 §8.2, for the front proxy to relay
    reply.code(200).send();
    ex.done(200);
  };
  mountCatchAll(app, handler);
  return app;
}
