/**
 * The only writer of error responses: status, `WWW-Authenticate` (RFC 6750 §3), JSON
 * body `{error, error_description}` and `Retry-After`. Descriptions come from the
 * catalogue; nothing request-derived is echoed.
 */
import type { FastifyReply } from 'fastify';
import { ERRORS, GatewayError } from '../errors.js';

/** The realm in every Bearer challenge. */
export const REALM = 'tokengate';

/** The `WWW-Authenticate` value for `err`, or null when the status carries none. */
export function challengeFor(err: GatewayError): string | null {
  if (!ERRORS[err.reason].challenge) return null;
  if (err.error === 'missing_token') return `Bearer realm="${REALM}"`; // RFC 6750 §3.1: no error code without credentials
  let c = `Bearer realm="${REALM}", error="${err.error}", error_description="${err.message}"`;
  if (err.scope) c += `, scope="${err.scope}"`;
  return c;
}

/** The JSON body for `err`. */
export function bodyFor(err: GatewayError): string {
  return JSON.stringify({ error: err.error, error_description: err.message });
}

/** Writes `err` to `reply` (headers and body), for any Fastify instance. */
export function sendError(reply: FastifyReply, err: GatewayError): FastifyReply {
  const challenge = challengeFor(err);
  if (challenge) reply.header('www-authenticate', challenge);
  if (err.status === 503) reply.header('retry-after', String(err.retryAfterSec ?? 5));
  reply.header('cache-control', 'no-store');
  return reply.code(err.status).type('application/json').send(bodyFor(err));
}

/** Maps anything thrown to a {@link GatewayError} (unknown errors: 500, nothing internal exposed). */
export function toGatewayError(e: unknown): GatewayError {
  if (e instanceof GatewayError) return e;
  const status = (e as { statusCode?: number })?.statusCode;
  if (status === 400) return new GatewayError('bad_path');
  if (status === 413) return new GatewayError('body_too_large'); // Fastify FST_ERR_CTP_BODY_TOO_LARGE (form bodies)
  return new GatewayError('internal');
}
