/**
 * The decision pipeline, shared by the proxy, the decision listener and `explain`:
 * normalize path → match route → CORS (answer a preflight, or pick the CORS headers of
 * the answer) → extract credential (none on an optional route: anonymous) → verify →
 * authorize → build identity headers. It imports no Fastify and does no I/O of its own: verifiers are
 * injected. Stages fill a {@link DecisionContext} so that a failure still reports which
 * route it was on (for logs and metrics).
 */
import type { CompiledConfig, CompiledRoute } from '../config/compile.js';
import { GatewayError, isGatewayError } from '../errors.js';
import { checkBinding } from './binding.js';
import type { ProofChecker } from './dpop.js';
import { authorize } from './authorize.js';
import { extractCredential, hasAccessTokenParam, type Credential, type CredentialMemo } from './extract.js';
import { corsRouteAt, hostOnly, matchRoute, upstreamPath } from './match.js';
import { identityHeaders, type ClaimsHeaderEncoder } from './mutate.js';
import { normalizeTarget } from './path.js';
import type { Principal } from './principal.js';
import { looksLikeJwt } from './verify-jwt.js';
import type { CompiledAuth } from '../config/compile.js';
import { findHeader } from '../http/headers.js';
import { actualHeaders, judgePreflight, NO_CORS_HEADERS, preflightRequest, type CorsHeaders } from './cors.js';

/** What the pipeline needs to know about a request (from the proxy or the decision listener). */
export interface RequestFacts {
  method: string;
  /** The raw request target (path and query) as received. */
  target: string;
  host: string | undefined;
  /** Raw header name/value list (to see duplicates Node would hide). */
  rawHeaders: readonly string[];
  /** A form-encoded body, read only to refuse an `access_token` in it (RFC 6750 §2.2). */
  formBody?: string;
  /** Scheme the client used, for DPoP `htu` (default `http`; a trusted front proxy's X-Forwarded-Proto). */
  scheme?: string;
  /** Host the client addressed, for DPoP `htu` (default `host`; a trusted front proxy's X-Forwarded-Host). */
  authority?: string;
  /** Peer address of the connection: the client-certificate header is believed only from `clientCert.trustedProxies`. */
  peer?: string;
  /**
   * The client's address as far as the door can tell (access line, traces): the peer, or the
   * address a trusted front proxy reports for the client. Absent: the peer.
   */
  client?: string;
  /** HTTP version of the client's request (`1.1`, `2`), when the door knows it. */
  httpVersion?: string;
  /**
   * On a listener that verifies client certificates in its own TLS handshakes
   * (`server.tls.clientCaFile`): the thumbprint of the certificate the client presented and
   * the CA verified, or null (none, or not verified). Then `clientCert.header` is not read.
   * Absent: the header of `clientCert.trustedProxies` is the client certificate.
   */
  clientCert?: () => string | null;
  /** The connection's last parsed `Authorization` value ({@link CredentialMemo}); absent: parse every time. */
  credentialMemo?: CredentialMemo;
  /**
   * The door answers CORS preflights itself (the proxy; `explain`, which shows what the proxy
   * does). Absent: a preflight is judged as an ordinary request — the decision listener's
   * 2xx would only let the front proxy forward it, so it must need a token like any other.
   */
  answersPreflight?: boolean;
}

/** Something that turns a token into a verified principal for a route. */
export interface TokenVerifier {
  verify(token: string, auth: CompiledAuth): Promise<Principal>;
}

/** The verifiers the pipeline calls. `introspection` is absent when no issuer has one. */
export interface Verifiers {
  jwt: TokenVerifier;
  introspection?: TokenVerifier;
  /** DPoP proof checking (RFC 9449); absent: DPoP-bound tokens fail closed. */
  proofs?: ProofChecker;
  /** Remembers `claimsHeader` values per verified claim set; absent: encoded every time. */
  claimsHeader?: ClaimsHeaderEncoder;
}

/** A step's outcome, for `explain` and debugging. */
export interface TraceStep {
  step: string;
  ok: boolean;
  detail: string;
}

/** Why an allowed request passed: the `reason` of its access line and metric. */
export type AllowReason = 'ok' | 'anonymous' | 'cors_preflight';

/** Filled in as the pipeline runs; read by the caller after success or failure. */
export interface DecisionContext {
  route: CompiledRoute | null;
  /** Normalized path (what matched). */
  path: string | null;
  search: string;
  /** What the upstream receives as its path (after stripPrefix, under the base path). */
  upstreamPath: string | null;
  credential: Credential | null;
  principal: Principal | null;
  /** Identity headers for the upstream. */
  headers: Array<[string, string]>;
  /** A `DPoP-Nonce` to return with the response (RFC 9449 §8.2), or null. */
  dpopNonce: string | null;
  /**
   * The CORS headers every answer to this request carries, refusals and upstream answers
   * alike (empty for an origin the route does not allow, still with `Vary: Origin`); null
   * when the route has no `cors` (answers are left as they are).
   */
  cors: CorsHeaders | null;
  /** Set when the gateway answers a CORS preflight itself: 204 with these headers, nothing forwarded. */
  preflight: CorsHeaders | null;
  /** Why the request passed, once it has. */
  reason: AllowReason;
  trace: TraceStep[] | null;
}

/** A fresh context; pass `trace: true` to record every step. */
export function newContext(trace = false): DecisionContext {
  return {
    route: null, path: null, search: '', upstreamPath: null, credential: null, principal: null, headers: [], dpopNonce: null,
    cors: null, preflight: null, reason: 'ok', trace: trace ? [] : null,
  };
}


/**
 * Records a step when tracing (`explain`). Call sites whose detail is built from values
 * check `ctx.trace` first: the proxy never traces, and must not build the strings.
 */
function note(ctx: DecisionContext, step: string, ok: boolean, detail: string): void {
  ctx.trace?.push({ step, ok, detail });
}

/** Runs the pipeline; resolves when the request may pass, throws {@link GatewayError} otherwise. */
export async function decide(config: CompiledConfig, facts: RequestFacts, verifiers: Verifiers, ctx: DecisionContext): Promise<void> {
  const target = normalizeTarget(facts.target);
  if (!target) {
    note(ctx, 'path', false, 'refused: encoded / or \\, raw \\ ; or NUL, invalid escape, or climbs above /');
    throw new GatewayError('bad_path');
  }
  ctx.path = target.path;
  ctx.search = target.search;
  if (ctx.trace) note(ctx, 'path', true, `normalized to ${target.path}`);

  const host = hostOnly(facts.host);
  // Fetch §3.2.2: a preflight asks on behalf of the request that would follow, so it is
  // matched by the method it names (a GET-only route takes the preflight for its GETs),
  // but only a route with `cors` answers it; otherwise it is an ordinary OPTIONS request.
  const pf = facts.answersPreflight === true ? preflightRequest(facts.method, facts.rawHeaders) : null;
  let route: CompiledRoute | null = null;
  if (pf !== null) {
    route = matchRoute(config.routeIndex, pf.method, host, target.path);
    if (route === null || route.cors === null) route = corsRouteAt(config.corsRoutes, host, target.path);
  }
  route ??= matchRoute(config.routeIndex, facts.method, host, target.path);
  if (!route) {
    note(ctx, 'route', false, 'no route matches method, host and path');
    const near = corsRouteAt(config.corsRoutes, host, target.path);
    if (near !== null) ctx.cors = actualHeaders(near.cors!, facts.rawHeaders);
    throw new GatewayError('no_route');
  }
  ctx.route = route;
  ctx.upstreamPath = upstreamPath(route, target.path);
  if (ctx.trace) note(ctx, 'route', true, `route ${route.id} (auth.mode ${route.auth.mode}) → ${route.upstreamOrigin}${ctx.upstreamPath}`);

  if (route.cors !== null) {
    if (pf !== null) {
      // Answered here, before any credential is looked at: a preflight never carries one
      // (Fetch §4.8 step 1 sends it without credentials), and it is never forwarded.
      ctx.cors = NO_CORS_HEADERS;
      // A method the route itself does not take would be a 404: not one to invite.
      const verdict = route.methods !== null && !route.methods.has(pf.method) ? 'cors_method' : judgePreflight(route.cors, pf);
      if (typeof verdict === 'string') {
        note(ctx, 'cors', false, `preflight refused (${verdict})`);
        throw new GatewayError(verdict);
      }
      ctx.preflight = verdict;
      ctx.reason = 'cors_preflight';
      if (ctx.trace) note(ctx, 'cors', true, `preflight for ${pf.method} from ${pf.origin ?? '?'} answered by the gateway: 204`);
      return;
    }
    ctx.cors = actualHeaders(route.cors, facts.rawHeaders);
    if (ctx.trace) note(ctx, 'cors', true, ctx.cors === NO_CORS_HEADERS ? 'no allowed Origin: answers carry no CORS headers' : `origin allowed: answers carry ${Object.keys(ctx.cors).join(', ')}`);
  }

  const auth = route.auth;
  if (auth.mode === 'none') {
    // RFC 6750 §2.2-2.3 forms are refused on every route, public ones included: a token in a
    // URL or a form is never used, and is not carried on to the upstream (or its logs) either.
    if (target.search.length > 1 && hasAccessTokenParam(target.search.slice(1))) throw new GatewayError('token_in_query');
    if (facts.formBody && hasAccessTokenParam(facts.formBody)) throw new GatewayError('token_in_body');
    note(ctx, 'auth', true, 'mode: none, no token required');
    return;
  }

  const cred = extractCredential(facts.rawHeaders, target.search, config.server.maxTokenBytes, facts.credentialMemo);
  if (facts.formBody && hasAccessTokenParam(facts.formBody)) {
    throw new GatewayError(cred ? 'multiple_credentials' : 'token_in_body');
  }
  if (!cred) {
    // Optional: only a request with no Authorization header at all is anonymous. Any value
    // there (another scheme, an empty one) is a credential the caller meant, judged as on
    // any route (401), so that a broken token never quietly turns into no token.
    if (auth.optional === true && findHeader(facts.rawHeaders, 'authorization') === -1) {
      ctx.reason = 'anonymous';
      note(ctx, 'credential', true, 'none: auth.optional, passes as anonymous with no identity headers');
      return;
    }
    note(ctx, 'credential', false, 'no bearer token in the Authorization header');
    throw new GatewayError('missing_token');
  }
  ctx.credential = cred;
  if (ctx.trace) note(ctx, 'credential', true, `${cred.scheme} token, ${cred.token.length} bytes`);

  try {
    const useJwt = auth.mode === 'jwt' || (auth.mode === 'jwt_or_introspection' && looksLikeJwt(cred.token));
    const verifier = useJwt ? verifiers.jwt : verifiers.introspection;
    if (!verifier) throw new GatewayError('unsupported_token');
    const principal = await verifier.verify(cred.token, auth);
    ctx.principal = principal;
    if (ctx.trace) note(ctx, 'verify', true, `${principal.source} from issuer ${principal.issuerId}, sub ${String(principal.claims.sub ?? '-')}`);

    ctx.dpopNonce = await checkBinding(config, auth, principal, cred, {
      method: facts.method,
      rawHeaders: facts.rawHeaders,
      scheme: facts.scheme ?? 'http',
      authority: facts.authority ?? facts.host,
      path: target.path,
      peer: facts.peer,
      clientCert: facts.clientCert,
    }, verifiers.proofs);
    if (ctx.trace) note(ctx, 'binding', true, `binding ${auth.binding}, token ${principal.claims.cnf ? 'sender-constrained' : 'unbound'}`);

    authorize(principal, auth);
    note(ctx, 'authorize', true, 'scopes and claims satisfied');

    ctx.headers = identityHeaders(route, principal, verifiers.claimsHeader);
    if (ctx.trace) note(ctx, 'headers', true, ctx.headers.map(([n]) => n).join(', ') || 'none');
  } catch (e) {
    throw dpopChallenge(config, cred, e);
  }
}

/**
 * RFC 9449 §7.1: a failure on a request that used the DPoP scheme, a proof failure and a
 * `require-dpop` refusal are challenged with the DPoP scheme and its `algs`.
 */
function dpopChallenge(config: CompiledConfig, cred: Credential, e: unknown): unknown {
  if (!isGatewayError(e) || e.dpop || e.status !== 401 && e.status !== 403) return e;
  if (cred.scheme === 'dpop' || e.error === 'invalid_dpop_proof' || e.error === 'use_dpop_nonce' || e.reason === 'dpop_required') {
    return e.withDpop({ algs: config.dpopAlgs });
  }
  return e;
}
