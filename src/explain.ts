/**
 * `tokengate explain`: why a request would be allowed or denied, step by step.
 *
 * It runs the proxy's own decision code — {@link decide} with a tracing context and the
 * gateway's real verifiers (so it may fetch the issuer's JWKS or call introspection) —
 * then renders the outcome with the proxy's own error renderer. There is no second
 * implementation to drift. The token is never printed: only its scheme and length (and,
 * when its issuer is refused, its unverified `iss`). When the IdP cannot be used (keys
 * or introspection unavailable), the gateway's own warnings say why.
 *
 * @example
 *   printf %s "$T" | tokengate explain --config gateway.yaml --url https://api.example.com/orders/1 --token -
 */
import { decodeJwt } from 'jose';
import pino from 'pino';
import type { CompiledConfig, CompiledRoute } from './config/compile.js';
import { GatewayError, type Reason } from './errors.js';
import { Gateway } from './gateway.js';
import { loggerOptions } from './logger.js';
import { hasAccessTokenParam } from './pipeline/extract.js';
import { hostOnly, pathMatches } from './pipeline/match.js';
import { decide, newContext, type RequestFacts } from './pipeline/run.js';
import { bodyFor, challengeFor, toGatewayError } from './server/error-response.js';

/** What to explain. */
export interface ExplainRequest {
  method: string;
  /** `https://host/path?query` or an origin-form target `/path?query`. */
  url: string;
  token?: string;
  /** Extra request headers as `Name: value`. */
  headers?: readonly string[];
}

/** The explanation: printable lines and whether the request would pass. */
export interface Explanation {
  allowed: boolean;
  status: number;
  lines: string[];
}

/** Which pipeline step a failure belongs to (the trace records only what succeeded). */
function stepOf(reason: Reason): string {
  switch (reason) {
    case 'bad_path': return 'path';
    case 'no_route': return 'route';
    case 'missing_token': case 'bad_scheme': case 'multiple_credentials': case 'token_in_query':
    case 'token_in_body': case 'token_too_large': return 'credential';
    case 'scope': case 'claim': return 'authorize';
    case 'cors_origin': case 'cors_method': case 'cors_headers': return 'cors';
    case 'unsafe_claim': return 'headers';
    default: return 'verify';
  }
}

/**
 * Splits `url` into host and raw request target WITHOUT normalizing the path (WHATWG
 * URL parsing would resolve `%2e%2e` before the gateway sees it).
 */
export function splitUrl(url: string): { host: string | undefined; target: string } {
  if (url.startsWith('/')) return { host: undefined, target: url };
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)(.*)$/.exec(url);
  if (!m) throw new Error(`--url must be an absolute URL or start with / (got ${JSON.stringify(url)})`);
  const target = m[2] === '' ? '/' : m[2].startsWith('?') ? `/${m[2]}` : m[2];
  return { host: m[1].replace(/^[^@]*@/, ''), target };
}

/** Why each route does not take this request (for the 404 case). */
function whyNot(routes: readonly CompiledRoute[], method: string, host: string, path: string | null): string[] {
  return routes.map((r) => {
    const why: string[] = [];
    if (r.host !== null && r.host !== host) why.push(`host is ${host || '(none)'}, route wants ${r.host}`);
    if (r.methods !== null && !r.methods.has(method)) why.push(`method ${method} not in [${[...r.methods].join(', ')}]`);
    if (path !== null && !pathMatches(r, path)) {
      why.push(r.exactPath !== null ? `path is not exactly ${r.exactPath}` : `path is not under ${r.prefix || '/'}`);
    }
    return `    ${r.id}: ${why.join('; ') || 'matches'}`;
  });
}

/**
 * `target` with the value of every `access_token` query parameter replaced by
 * `[redacted]`. Each name is read as the gateway reads it ({@link hasAccessTokenParam}:
 * `%61ccess_token` counts), in any case.
 */
export function redactQueryToken(target: string): string {
  const q = target.indexOf('?');
  if (q === -1) return target;
  const h = target.indexOf('#', q);
  const query = target.slice(q + 1, h === -1 ? undefined : h);
  const parts = query.split('&').map((part) => {
    const name = part.split('=', 1)[0];
    return hasAccessTokenParam(name.toLowerCase()) ? `${name}=[redacted]` : part;
  });
  return target.slice(0, q + 1) + parts.join('&') + (h === -1 ? '' : target.slice(h));
}

/**
 * The token to explain, from `--token -` (standard input) or `--token-env NAME` (that
 * environment variable), so it need not be on the command line, where shell history and
 * `ps` would show it; otherwise `--token VALUE` as given. Surrounding whitespace (the
 * newline of `echo`) is dropped. Throws on an empty or missing source.
 */
export async function resolveToken(
  opts: { token?: string; tokenEnv?: string },
  io: { stdin: AsyncIterable<Buffer | string> | Iterable<Buffer | string>; env: NodeJS.ProcessEnv } = { stdin: process.stdin, env: process.env },
): Promise<string | undefined> {
  if (opts.token !== undefined && opts.tokenEnv !== undefined) throw new Error('give --token or --token-env, not both');
  if (opts.tokenEnv !== undefined) {
    const value = io.env[opts.tokenEnv]?.trim();
    if (!value) throw new Error(`--token-env: the environment variable ${opts.tokenEnv} is not set or empty`);
    return value;
  }
  if (opts.token !== '-') return opts.token;
  let text = '';
  for await (const chunk of io.stdin) {
    text += chunk.toString();
    // A bearer token is a few kilobytes; anything this large is not one.
    if (text.length > 1 << 20) throw new Error('--token -: standard input is larger than 1 MiB');
  }
  const token = text.trim();
  if (!token) throw new Error('--token -: standard input is empty');
  return token;
}

/** A JWT's unverified `iss`, printable (JSON-quoted, cut at 200 characters), or null. */
function unverifiedIss(token: string | undefined): string | null {
  if (token === undefined) return null;
  try {
    const iss = decodeJwt(token).iss;
    return typeof iss === 'string' ? JSON.stringify(iss.length > 200 ? `${iss.slice(0, 200)}…` : iss) : null;
  } catch {
    return null;
  }
}

/** Warnings of the gateway's IdP layer, as `issuer: what failed: why` (messages built from status and errno only). */
function idpProblems(logs: readonly string[]): string[] {
  const out: string[] = [];
  for (const l of logs) {
    const e = JSON.parse(l) as { msg?: string; issuer?: string; reason?: string; kind?: string; why?: string };
    if (e.msg !== 'JWKS fetch failed' && e.msg !== 'introspection failed') continue;
    const line = `${e.issuer ?? '?'}: ${e.msg}: ${e.reason ?? (e.kind ? `${e.kind}, ${e.why}` : e.why)}`;
    if (!out.includes(line)) out.push(line);
  }
  return out;
}

/** Runs the decision for `req` against `config` and explains it. */
export async function explain(config: CompiledConfig, req: ExplainRequest): Promise<Explanation> {
  const method = req.method.toUpperCase();
  const { host: urlHost, target } = splitUrl(req.url);
  const rawHeaders: string[] = [];
  let host = urlHost;
  for (const h of req.headers ?? []) {
    const c = h.indexOf(':');
    if (c <= 0) throw new Error(`--header must look like "Name: value" (got ${JSON.stringify(h)})`);
    const name = h.slice(0, c).trim();
    const value = h.slice(c + 1).trim();
    if (name.toLowerCase() === 'host') host = value;
    rawHeaders.push(name, value);
  }
  if (req.token !== undefined) rawHeaders.push('Authorization', `Bearer ${req.token}`);
  // Explains what the proxy does, which answers CORS preflights itself.
  const facts: RequestFacts = { method, target, host, rawHeaders, answersPreflight: true };

  // The IdP layer's warnings (a failed JWKS fetch or introspection call) are kept to say why.
  const logs: string[] = [];
  const gw = new Gateway(config, { logger: pino(loggerOptions('warn'), { write: (line: string) => void logs.push(line) }) });
  const ctx = newContext(true);
  let err: GatewayError | null = null;
  try {
    await decide(config, facts, gw.verifiers, ctx);
  } catch (e) {
    err = toGatewayError(e);
  } finally {
    await gw.close(0);
  }

  // A token put in the query string (refused: token_in_query) is not echoed either.
  const shown = redactQueryToken(target);
  const lines = [`request: ${method} ${shown}${host ? ` (host ${host})` : ''}${req.token !== undefined ? ` with a bearer token of ${req.token.length} bytes` : ''}`];
  for (const s of ctx.trace ?? []) lines.push(`  ${s.ok ? 'ok    ' : 'FAILED'} ${s.step}: ${s.detail}`);
  if (err) {
    const step = stepOf(err.reason);
    if (!(ctx.trace ?? []).some((s) => !s.ok)) lines.push(`  FAILED ${step}: ${err.message}`);
    if (err.reason === 'no_route') lines.push('  routes, in match order:', ...whyNot(config.routes, method, hostOnly(host), ctx.path));
    const iss = err.reason === 'issuer' ? unverifiedIss(req.token) : null;
    if (iss !== null) {
      const accepted = [...(ctx.route?.auth.issuersByIss.keys() ?? [])].map((i) => JSON.stringify(i)).join(', ');
      lines.push(`  the token's iss (unverified) is ${iss}; this route accepts ${accepted || 'no issuer'}`);
    }
    const problems = idpProblems(logs);
    if (problems.length) lines.push('  the IdP could not be used:', ...problems.map((p) => `    ${p}`));
    lines.push(`decision: deny ${err.status} (reason ${err.reason})`);
    const challenge = challengeFor(err);
    if (challenge) lines.push(`  WWW-Authenticate: ${challenge}`);
    if (err.status === 503) lines.push(`  Retry-After: ${err.retryAfterSec ?? 5}`);
    lines.push(`  body: ${bodyFor(err)}`);
    return { allowed: false, status: err.status, lines };
  }
  const route = ctx.route as CompiledRoute;
  if (ctx.preflight !== null) {
    lines.push('decision: answered by the gateway: 204 (CORS preflight), nothing forwarded');
    for (const [name, value] of Object.entries(ctx.preflight)) lines.push(`  ${name}: ${value}`);
    return { allowed: true, status: 204, lines };
  }
  lines.push(`decision: allow${ctx.reason === 'anonymous' ? ' (anonymous)' : ''} -> ${method} ${route.upstreamOrigin}${ctx.upstreamPath}${ctx.search}`);
  for (const [name, value] of ctx.headers) {
    lines.push(`  ${name}: ${name === route.claimsHeader ? `(all verified claims, ${value.length} bytes base64url)` : value}`);
  }
  lines.push(`  Authorization: ${route.passAuthorization ? 'passed to the upstream' : 'stripped'}`);
  return { allowed: true, status: 200, lines };
}
