/**
 * A mock issuer, a recording upstream and a gateway started together, with the
 * assertions every denial test makes: exact status, exact `WWW-Authenticate`, body
 * `error`, and that the upstream received nothing.
 *
 * @module
 */
import assert from 'node:assert/strict';
import { startMockIssuer, type MockIssuer } from './mock-issuer.js';
import { startUpstream, type EchoUpstream } from './upstream.js';
import { startGateway, type TestGateway } from './gateway.js';

/** A running issuer + upstream + gateway. */
export interface Fixture {
  iss: MockIssuer;
  up: EchoUpstream;
  gw: TestGateway;
  /** fetch() against the gateway's proxy port. */
  get(path: string, init?: RequestInit): Promise<Response>;
  /** GET `path` with `Authorization: Bearer token`. */
  bearer(path: string, token: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

/**
 * Starts the three; `yaml` receives the issuer and upstream (use `${iss.issuer}`,
 * `${iss.jwksUri}`, `${up.url}`) and returns the gateway config. Waits for readiness
 * unless `ready: false`.
 */
export async function startFixture(
  yaml: (iss: MockIssuer, up: EchoUpstream) => string,
  opts: { algs?: Array<'RS256' | 'ES256' | 'EdDSA'>; ready?: boolean; env?: NodeJS.ProcessEnv; now?: () => number; logs?: string[] } = {},
): Promise<Fixture> {
  const iss = await startMockIssuer({ algs: opts.algs });
  let up: EchoUpstream | undefined;
  let gw: TestGateway | undefined;
  // Everything started is closed again, whatever fails: a server left open keeps the test process alive.
  const close = async () => {
    const results = await Promise.allSettled([gw?.close(), up?.close(), iss.close()]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  };
  try {
    up = await startUpstream();
    gw = await startGateway(yaml(iss, up), { env: opts.env, now: opts.now, logs: opts.logs });
    if (opts.ready !== false) await gw.ready(15_000);
  } catch (e) {
    await close().catch(() => undefined);
    throw e;
  }
  const g = gw;
  const get = (path: string, init?: RequestInit) => fetch(g.url + path, init);
  return {
    iss, up, gw, get, close,
    bearer: (path, token, init) => get(path, { ...init, headers: { ...(init?.headers as Record<string, string>), authorization: `Bearer ${token}` } }),
  };
}

/**
 * The `issuers:` block (with its trailing newline) for one mock issuer: id `a`, its JWKS,
 * audience `api`; `extra` is appended as further YAML lines of that issuer.
 */
export function issuerYaml(iss: MockIssuer, extra = ''): string {
  return `issuers:
  - id: a
    issuer: ${iss.issuer}
    jwksUri: ${iss.jwksUri}
    audiences: [api]${extra}
`;
}

/** A minimal config: issuer `a` (mock issuer, audience `api`, 1 s JWKS cooldown unless told) and the given routes YAML. */
export function oneIssuer(iss: MockIssuer, routes: string, issuerExtra = '', cooldownSec = 1): string {
  return `
${issuerYaml(iss, `\n    jwks: { cooldownSec: ${cooldownSec} }${issuerExtra}`)}routes:
${routes}`;
}

/**
 * The attack suites' usual gateway: one mock issuer and one route `api` (`/api`, `mode: jwt`).
 * `issuerExtra` adds YAML lines to the issuer, `server` a `server:` line before it, `routes`
 * more routes after `api` (`UPSTREAM` stands for the echo upstream's URL), `now` the
 * gateway's clock.
 */
export function startApiFixture(opts: {
  issuerExtra?: string; server?: string; cooldownSec?: number; algs?: Array<'RS256' | 'ES256' | 'EdDSA'>; routes?: string; now?: () => number;
} = {}): Promise<Fixture> {
  return startFixture((iss, up) => (opts.server ?? '') + oneIssuer(iss, `
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
${(opts.routes ?? '').replaceAll('UPSTREAM', up.url)}`, opts.issuerExtra, opts.cooldownSec), { algs: opts.algs, now: opts.now });
}

/** The exact challenge of a 401 invalid_token / 400 invalid_request / 403 insufficient_scope. */
export const CHALLENGE = {
  missing: 'Bearer realm="tokengate"',
  invalid: (description: string) => `Bearer realm="tokengate", error="invalid_token", error_description="${description}"`,
  request: (description: string) => `Bearer realm="tokengate", error="invalid_request", error_description="${description}"`,
  scope: (description: string, scope: string) =>
    `Bearer realm="tokengate", error="insufficient_scope", error_description="${description}", scope="${scope}"`,
} as const;

/** Descriptions from src/errors.ts, repeated here so a change there is a visible test change. */
export const DESC = {
  malformed: 'The access token is malformed',
  algorithm: 'The token signing algorithm is not allowed',
  unknown_kid: 'The token signing key is unknown',
  bad_signature: 'The token signature is invalid',
  issuer: 'The token issuer is not accepted',
  audience: 'The token audience is not accepted',
  expired: 'The access token expired',
  missing_exp: 'The access token has no valid expiry',
  not_yet_valid: 'The access token is not yet valid',
  issued_in_future: 'The access token was issued in the future',
  token_type: 'The token type is not accepted',
  claims_invalid: 'The access token claims are invalid',
  unsafe_claim: 'A forwarded claim contains characters not allowed in a header',
  token_too_large: 'The access token is too large',
  multiple_credentials: 'More than one access token was sent',
  token_in_query: 'Access tokens are not accepted in the query string',
  token_in_body: 'Access tokens are not accepted in the request body',
  bad_scheme: 'The Authorization header is malformed',
  scope: 'The access token lacks a required scope',
  claim: 'The access token lacks a required claim',
} as const;

/**
 * Asserts a denial: status, exact `WWW-Authenticate` (null: header absent), body `error`,
 * and that `up` received nothing since it was last reset (then resets it).
 */
export async function assertDenied(
  res: Response | { status: number; headers: Record<string, string>; body: string },
  up: EchoUpstream,
  status: number,
  challenge: string | null,
  error: string,
  what = '',
): Promise<void> {
  let body: string;
  let www: string | null;
  if (res instanceof Response) {
    body = await res.text();
    www = res.headers.get('www-authenticate');
  } else {
    body = res.body;
    www = res.headers['www-authenticate'] ?? null;
  }
  assert.equal(res.status, status, `${what}: status (body ${body})`);
  assert.equal(www, challenge, `${what}: WWW-Authenticate`);
  assert.equal((JSON.parse(body) as { error: string }).error, error, `${what}: body error`);
  assert.equal(up.requests.length, 0, `${what}: upstream must receive nothing, got ${up.requests.map((r) => r.url).join(' ')}`);
  up.reset();
}

/** base64url of a UTF-8 string or of JSON. */
export function b64u(v: unknown): string {
  return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
}

/** A hand-built compact JWS `header.payload.signature` (nothing is signed). */
export function handJwt(header: unknown, payload: unknown, signature = ''): string {
  return `${b64u(header)}.${b64u(payload)}.${signature}`;
}

const SIGN_PARAMS: Record<string, AlgorithmIdentifier | EcdsaParams> = {
  RS256: { name: 'RSASSA-PKCS1-v1_5' },
  PS256: { name: 'RSA-PSS', saltLength: 32 } as AlgorithmIdentifier,
  ES256: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
  EdDSA: { name: 'Ed25519' },
};

/**
 * Signs `header.payload` with `key` through WebCrypto, bypassing jose's own checks (so a
 * header may carry an unknown `crit`, claims may have any type). `header.alg` is taken as
 * given; the signature algorithm is the key's.
 */
export async function signRaw(key: { alg: string; privateKey: CryptoKey }, header: unknown, payload: unknown): Promise<string> {
  const input = `${b64u(header)}.${b64u(payload)}`;
  const sig = await crypto.subtle.sign(SIGN_PARAMS[key.alg], key.privateKey, new TextEncoder().encode(input));
  return `${input}.${Buffer.from(sig).toString('base64url')}`;
}

/** A clock for the gateway that tests move forward: real time plus `offsetMs`. */
export interface TestClock {
  now: () => number;
  advance(ms: number): void;
}

/** A {@link TestClock} starting at real time. */
export function testClock(): TestClock {
  let offset = 0;
  return { now: () => Date.now() + offset, advance: (ms) => { offset += ms; } };
}

/**
 * The YAML of a `mode: none` route `id` on `pathPrefix: /<id>`, to the echo upstream
 * (`UPSTREAM`, as {@link startApiFixture} replaces it) unless `upstream` is given; `h2`
 * speaks HTTP/2 to it, `host` matches on that host only.
 */
export function openRoute(id: string, opts: { upstream?: string; h2?: boolean; host?: string } = {}): string {
  return `
  - id: ${id}
    match: { ${opts.host ? `host: ${opts.host}, ` : ''}pathPrefix: /${id} }
    upstream: ${opts.upstream ?? 'UPSTREAM'}${opts.h2 ? '\n    upstreamProtocol: h2' : ''}
    auth: { mode: none }
`;
}

/**
 * The HTTP/2 attack suites' gateway: {@link startApiFixture} with `server: { http2: true,
 * <server> }` and `routes` (default: one open route `/open`), with its port and the
 * `:authority` that names it.
 */
export async function startH2Fixture(server = '', routes = openRoute('open')): Promise<{ f: Fixture; port: number; authority: string }> {
  const f = await startApiFixture({ server: `server: { http2: true${server ? `, ${server}` : ''} }\n`, routes });
  const port = Number(new URL(f.gw.url).port);
  return { f, port, authority: `127.0.0.1:${port}` };
}
