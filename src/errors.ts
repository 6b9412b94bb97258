/**
 * The catalogue of every request failure tokengate can answer with.
 *
 * Each entry fixes the HTTP status, the RFC 6750 §3 error code (if any) and a stable
 * `reason` id used in logs and metrics. Only `server/error-response.ts` turns a
 * {@link GatewayError} into a response. Descriptions are fixed strings chosen here:
 * they never contain a token, a secret, a claim value or an upstream message.
 */

/** RFC 6750 §3.1 error codes plus our `missing_token` body code (no challenge code). */
export type OAuthErrorCode =
  | 'missing_token'
  | 'invalid_request'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'not_found'
  | 'bad_request'
  | 'forbidden'
  | 'temporarily_unavailable'
  | 'bad_gateway'
  | 'gateway_timeout'
  | 'payload_too_large'
  | 'server_error';

/** One catalogue entry. */
export interface ErrorKind {
  status: number;
  error: OAuthErrorCode;
  /** Fixed, public description: safe to put in a body and a challenge. */
  description: string;
  /** Whether a `WWW-Authenticate` challenge goes with it (401/403 token errors). */
  challenge: boolean;
}

/**
 * Every failure, keyed by its `reason` (the metric/log label). Keep in sync with the
 * README's error table (a test checks that every reason is documented there).
 */
export const ERRORS = {
  // 400: the request itself is malformed (RFC 6750 §3.1 invalid_request)
  bad_path: { status: 400, error: 'bad_request', description: 'The request path is not acceptable', challenge: false },
  bad_request: { status: 400, error: 'bad_request', description: 'The request is malformed', challenge: false },
  body_too_large: { status: 413, error: 'payload_too_large', description: 'The form body is larger than server.bodyLimitBytes', challenge: false },
  multiple_credentials: { status: 400, error: 'invalid_request', description: 'More than one access token was sent', challenge: true },
  token_in_query: { status: 400, error: 'invalid_request', description: 'Access tokens are not accepted in the query string', challenge: true },
  token_in_body: { status: 400, error: 'invalid_request', description: 'Access tokens are not accepted in the request body', challenge: true },
  bad_scheme: { status: 400, error: 'invalid_request', description: 'The Authorization header is malformed', challenge: true },
  // 401 without an error code (RFC 6750 §3.1: no credentials → no error attribute)
  missing_token: { status: 401, error: 'missing_token', description: 'An access token is required', challenge: true },
  // 401 invalid_token
  token_too_large: { status: 401, error: 'invalid_token', description: 'The access token is too large', challenge: true },
  malformed: { status: 401, error: 'invalid_token', description: 'The access token is malformed', challenge: true },
  unsupported_token: { status: 401, error: 'invalid_token', description: 'The access token is not a JWT and no introspection is configured', challenge: true },
  algorithm: { status: 401, error: 'invalid_token', description: 'The token signing algorithm is not allowed', challenge: true },
  unknown_kid: { status: 401, error: 'invalid_token', description: 'The token signing key is unknown', challenge: true },
  bad_signature: { status: 401, error: 'invalid_token', description: 'The token signature is invalid', challenge: true },
  issuer: { status: 401, error: 'invalid_token', description: 'The token issuer is not accepted', challenge: true },
  audience: { status: 401, error: 'invalid_token', description: 'The token audience is not accepted', challenge: true },
  expired: { status: 401, error: 'invalid_token', description: 'The access token expired', challenge: true },
  missing_exp: { status: 401, error: 'invalid_token', description: 'The access token has no valid expiry', challenge: true },
  not_yet_valid: { status: 401, error: 'invalid_token', description: 'The access token is not yet valid', challenge: true },
  issued_in_future: { status: 401, error: 'invalid_token', description: 'The access token was issued in the future', challenge: true },
  token_type: { status: 401, error: 'invalid_token', description: 'The token type is not accepted', challenge: true },
  claims_invalid: { status: 401, error: 'invalid_token', description: 'The access token claims are invalid', challenge: true },
  unsafe_claim: { status: 401, error: 'invalid_token', description: 'A forwarded claim contains characters not allowed in a header', challenge: true },
  inactive: { status: 401, error: 'invalid_token', description: 'The access token is not active', challenge: true },
  // 401 invalid_token: sender-constrained tokens (RFC 9449 §7, RFC 8705 §3)
  dpop_bound_bearer: { status: 401, error: 'invalid_token', description: 'A DPoP-bound access token must be sent with the DPoP scheme', challenge: true },
  dpop_unbound_token: { status: 401, error: 'invalid_token', description: 'The access token is not bound to a DPoP key', challenge: true },
  dpop_required: { status: 401, error: 'invalid_token', description: 'This resource requires a DPoP-bound access token', challenge: true },
  mtls_required: { status: 401, error: 'invalid_token', description: 'This resource requires a certificate-bound access token', challenge: true },
  binding_required: { status: 401, error: 'invalid_token', description: 'This resource requires a sender-constrained access token', challenge: true },
  client_cert_missing: { status: 401, error: 'invalid_token', description: 'The access token is bound to a client certificate that was not presented', challenge: true },
  client_cert_mismatch: { status: 401, error: 'invalid_token', description: 'The access token is bound to another client certificate', challenge: true },
  // 401 invalid_dpop_proof (RFC 9449 §4.3, §7.1): one reason per failed check
  dpop_proof_missing: { status: 401, error: 'invalid_dpop_proof', description: 'A DPoP proof is required', challenge: true },
  dpop_proof_multiple: { status: 401, error: 'invalid_dpop_proof', description: 'Exactly one DPoP header is allowed', challenge: true },
  dpop_proof_malformed: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof is malformed', challenge: true },
  dpop_proof_typ: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof typ must be dpop+jwt', challenge: true },
  dpop_proof_alg: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof algorithm is not allowed', challenge: true },
  dpop_proof_jwk: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof jwk must be a public key', challenge: true },
  dpop_proof_signature: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof signature is invalid', challenge: true },
  dpop_proof_htm: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof is for another HTTP method', challenge: true },
  dpop_proof_htu: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof is for another URI', challenge: true },
  dpop_proof_iat: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof is too old or issued in the future', challenge: true },
  dpop_proof_ath: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof ath does not match the access token', challenge: true },
  dpop_proof_replay: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof was already used', challenge: true },
  dpop_key_mismatch: { status: 401, error: 'invalid_dpop_proof', description: 'The DPoP proof key is not the key the access token is bound to', challenge: true },
  // 401 use_dpop_nonce (RFC 9449 §8): missing, unknown or expired server nonce
  dpop_nonce: { status: 401, error: 'use_dpop_nonce', description: 'Resource server requires nonce in DPoP proof', challenge: true },
  // 403 insufficient_scope
  scope: { status: 403, error: 'insufficient_scope', description: 'The access token lacks a required scope', challenge: true },
  claim: { status: 403, error: 'insufficient_scope', description: 'The access token lacks a required claim', challenge: true },
  // 403: a CORS preflight the route's `cors` policy does not allow (Fetch §3.2.3: a
  // non-ok status, and no Access-Control-Allow-* headers, so the browser sends nothing)
  cors_origin: { status: 403, error: 'forbidden', description: 'This origin may not call this resource', challenge: false },
  cors_method: { status: 403, error: 'forbidden', description: 'This method may not be used from another origin', challenge: false },
  cors_headers: { status: 403, error: 'forbidden', description: 'A requested header may not be sent from another origin', challenge: false },
  // routing / plumbing
  no_route: { status: 404, error: 'not_found', description: 'No route matches this request', challenge: false },
  untrusted_peer: { status: 403, error: 'forbidden', description: 'This peer may not use the decision endpoint', challenge: false },
  upgrade_refused: { status: 400, error: 'bad_request', description: 'This route does not accept a WebSocket upgrade', challenge: false },
  missing_forwarded_uri: { status: 400, error: 'bad_request', description: 'X-Forwarded-Uri or X-Original-URI is required', challenge: false },
  jwks_unavailable: { status: 503, error: 'temporarily_unavailable', description: 'Token keys cannot be obtained now', challenge: false },
  introspection_unavailable: { status: 503, error: 'temporarily_unavailable', description: 'Token introspection is unavailable now', challenge: false },
  replay_store_unavailable: { status: 503, error: 'temporarily_unavailable', description: 'DPoP proofs cannot be checked now', challenge: false },
  shutting_down: { status: 503, error: 'temporarily_unavailable', description: 'The gateway is shutting down', challenge: false },
  upstream_unavailable: { status: 502, error: 'bad_gateway', description: 'The upstream service is unavailable', challenge: false },
  upstream_timeout: { status: 504, error: 'gateway_timeout', description: 'The upstream service did not answer in time', challenge: false },
  // Refused by the HTTP/1.1 parser before any route is known: too large, too slow
  header_too_large: { status: 431, error: 'bad_request', description: 'The request header section is too large', challenge: false },
  request_timeout: { status: 408, error: 'bad_request', description: 'The request was not received in time', challenge: false },
  internal: { status: 500, error: 'server_error', description: 'Internal error', challenge: false },
} as const satisfies Record<string, ErrorKind>;

/** A stable failure id: the key of {@link ERRORS}, used as the `reason` label. */
export type Reason = keyof typeof ERRORS;

/**
 * A request failure. Thrown (or returned) by pipeline stages and rendered in exactly one
 * place. `message` is the catalogue description: never interpolate request data into it.
 */
export class GatewayError extends Error {
  readonly reason: Reason;
  readonly status: number;
  readonly error: OAuthErrorCode;
  /** Required scopes, for the 403 challenge's `scope=` attribute (RFC 6750 §3). */
  readonly scope?: string;
  /** Seconds for `Retry-After` on 503. */
  readonly retryAfterSec?: number;
  /**
   * Set when the challenge uses the DPoP scheme (RFC 9449 §7.1): a proof failure, or a
   * token presented with `Authorization: DPoP`. `algs` is the accepted proof algorithms.
   */
  readonly dpop?: DpopChallenge;

  constructor(reason: Reason, extra?: { scope?: string; retryAfterSec?: number; dpop?: DpopChallenge }) {
    const kind: ErrorKind = ERRORS[reason];
    // A refusal (4xx) is an answer, not a fault: nothing reads its stack, and capturing one
    // costs more than parsing the token it refuses, on every forged or expired token. A 5xx
    // keeps its stack. The limit is restored before any other code can run.
    const limit = Error.stackTraceLimit;
    if (kind.status < 500) Error.stackTraceLimit = 0;
    try {
      super(kind.description);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.name = 'GatewayError';
    this.reason = reason;
    this.status = kind.status;
    this.error = kind.error;
    this.scope = extra?.scope;
    this.retryAfterSec = extra?.retryAfterSec;
    this.dpop = extra?.dpop;
  }

  /** The same failure, challenged with the DPoP scheme (RFC 9449 §7.1). */
  withDpop(dpop: DpopChallenge): GatewayError {
    return new GatewayError(this.reason, { scope: this.scope, retryAfterSec: this.retryAfterSec, dpop });
  }
}

/** What a DPoP challenge carries besides the error code. */
export interface DpopChallenge {
  /** Space-separated accepted proof algorithms (the `algs` attribute). */
  algs: string;
  /** A fresh server nonce for the `DPoP-Nonce` response header (RFC 9449 §8). */
  nonce?: string;
}

/** True when `e` is a {@link GatewayError}. */
export function isGatewayError(e: unknown): e is GatewayError {
  return e instanceof GatewayError;
}
