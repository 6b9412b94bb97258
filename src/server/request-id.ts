/**
 * Request ids (`X-Request-Id`): every request has one, the client's when it is a short
 * token of safe characters, else a new UUID. It is forwarded upstream, returned on the
 * response (refusals included), written on the access line and given to the decision
 * listener's and ext_authz's callers, so that one id follows a call through the client,
 * the front proxy, tokengate and the upstream.
 */
import { randomUUID } from 'node:crypto';
import { findHeader } from '../http/headers.js';

/** The header the id travels in (lower case, as Node and HTTP/2 spell it). */
export const REQUEST_ID_HEADER = 'x-request-id';

/** The longest client id kept; a longer one is replaced. */
const MAX_REQUEST_ID_LENGTH = 128;

/**
 * What a kept client id may be made of: letters, digits and `.` `_` `:` `-` (UUIDs, ULIDs,
 * hex, base64url, Envoy's and nginx's ids, `host:seq` forms). Nothing that could break a
 * header, a log line or a query in a log store: no spaces, quotes, commas or control
 * characters.
 */
const SAFE_ID = new RegExp(`^[A-Za-z0-9._:-]{1,${MAX_REQUEST_ID_LENGTH}}$`);

/** A new request id (a random UUID: ~60 ns, from Node's buffered entropy). */
export function newRequestId(): string {
  return randomUUID();
}

/**
 * The id of a request with raw headers `raw`: its `X-Request-Id` when sent once and safe,
 * else a new one (two of them, or an unsafe one, is replaced: neither can be trusted to be
 * the one the client's other hops logged).
 */
export function requestIdOf(raw: readonly string[]): string {
  const i = findHeader(raw, REQUEST_ID_HEADER);
  if (i !== -1 && findHeader(raw, REQUEST_ID_HEADER, i + 2) === -1 && SAFE_ID.test(raw[i + 1])) return raw[i + 1];
  return newRequestId();
}
