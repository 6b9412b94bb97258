/**
 * Sender-constrained tokens at the resource server: DPoP-bound (RFC 9449 §6-7, `cnf.jkt`)
 * and certificate-bound (RFC 8705 §3, `cnf["x5t#S256"]`) access tokens, and the route's
 * `binding` policy. A bound token needs its proof on every route, whatever `binding`
 * says; `binding` only adds requirements for unbound tokens.
 */
import type { CompiledAuth, CompiledConfig } from '../config/compile.js';
import { GatewayError } from '../errors.js';
import { thumbprintFromHeader } from './client-cert.js';
import { headerValues } from '../http/headers.js';
import type { Credential } from './extract.js';
import { normalizeOrigin, type ProofChecker } from './dpop.js';
import type { Principal } from './principal.js';

/** What the binding stage reads about the request. */
export interface BindingRequest {
  method: string;
  rawHeaders: readonly string[];
  /** Scheme the client used (`http` unless a trusted front proxy says otherwise). */
  scheme: string;
  /** Host (and port) the client addressed. */
  authority: string | undefined;
  /** Normalized request path (what matched). */
  path: string;
  /** Peer address of the connection; the client-certificate header is believed only from trusted ones. */
  peer: string | undefined;
  /** The connection's own verified client certificate (`RequestFacts.clientCert`, src/pipeline/run.ts); absent: the header's. */
  clientCert?: () => string | null;
}

/**
 * The client certificate thumbprint, if a trusted peer sent exactly one parseable
 * certificate header; null otherwise (from anyone else the header does not exist).
 */
export function clientCertThumbprint(config: CompiledConfig, rawHeaders: readonly string[], peer: string | undefined): string | null {
  if (!config.clientCert.trusted(peer)) return null;
  const values = headerValues(rawHeaders, config.clientCert.header);
  return values.length === 1 ? thumbprintFromHeader(values[0]) : null;
}

/**
 * The token's confirmation (RFC 7800 `cnf`). Only the methods this gateway can verify are
 * understood: `jkt` (RFC 9449 §6) and `x5t#S256` (RFC 8705 §3.1), each a non-empty string.
 * Any other member (`jwk`, `kid`, ...) binds the token in a way that cannot be checked
 * here, so the token is refused rather than treated as unbound; so is an empty `cnf`.
 */
function cnfOf(principal: Principal): { jkt: string | null; x5t: string | null } {
  const cnf = principal.claims.cnf;
  if (cnf === undefined) return { jkt: null, x5t: null };
  if (!cnf || typeof cnf !== 'object' || Array.isArray(cnf)) throw new GatewayError('claims_invalid');
  let jkt: string | null = null;
  let x5t: string | null = null;
  for (const [k, v] of Object.entries(cnf as Record<string, unknown>)) {
    if (typeof v !== 'string' || v === '') throw new GatewayError('claims_invalid');
    if (k === 'jkt') jkt = v;
    else if (k === 'x5t#S256') x5t = v;
    else throw new GatewayError('claims_invalid');
  }
  // An empty `cnf` names no confirmation method (RFC 7800 §3.1): malformed, not unbound.
  if (jkt === null && x5t === null) throw new GatewayError('claims_invalid');
  return { jkt, x5t };
}

/**
 * Checks the token's binding and the route's policy; resolves with a nonce to send back
 * (RFC 9449 §8.2) or null. Without a proof checker, DPoP-bound tokens fail closed.
 */
export async function checkBinding(
  config: CompiledConfig,
  auth: CompiledAuth,
  principal: Principal,
  cred: Credential,
  req: BindingRequest,
  proofs: ProofChecker | undefined,
): Promise<string | null> {
  const { jkt, x5t } = cnfOf(principal);
  let nextNonce: string | null = null;

  if (jkt) {
    // RFC 9449 §7.2: a DPoP-bound token presented as a bearer token is refused.
    if (cred.scheme !== 'dpop') throw new GatewayError('dpop_bound_bearer');
    if (!proofs) throw new GatewayError('replay_store_unavailable');
    const tolerance = config.issuers.get(principal.issuerId)?.clockToleranceSec ?? 0;
    ({ nextNonce } = await proofs.check(config.server.dpop, {
      proofs: headerValues(req.rawHeaders, 'dpop'),
      method: req.method,
      origin: normalizeOrigin(req.scheme, req.authority),
      path: req.path,
      token: cred.token,
      jkt,
      toleranceSec: tolerance,
      maxBytes: config.server.maxTokenBytes,
    }));
  } else if (cred.scheme === 'dpop') {
    // RFC 9449 §7.1: the DPoP scheme asserts a key binding; an unbound token has none to check.
    throw new GatewayError('dpop_unbound_token');
  }

  if (x5t) {
    // RFC 8705 §3: the presented client certificate must be the one the token is bound to:
    // the one this listener's handshake verified, or else a trusted front proxy's header.
    const presented = req.clientCert ? req.clientCert() : clientCertThumbprint(config, req.rawHeaders, req.peer);
    if (!presented) throw new GatewayError('client_cert_missing');
    if (presented !== x5t) throw new GatewayError('client_cert_mismatch');
  }

  switch (auth.binding) {
    case 'require-dpop':
      if (!jkt) throw new GatewayError('dpop_required');
      break;
    case 'require-mtls':
      if (!x5t) throw new GatewayError('mtls_required');
      break;
    case 'require-any':
      if (!jkt && !x5t) throw new GatewayError('binding_required');
      break;
    default:
      break;
  }
  return nextNonce;
}
