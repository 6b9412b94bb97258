/**
 * Credential extraction (RFC 6750 §2): exactly one token, from the Authorization header
 * only. A token in the query string or a form body is refused, never used (§2.2-2.3 are
 * optional for resource servers and leak tokens into logs).
 */
import { GatewayError } from '../errors.js';
import { singleHeader } from '../http/headers.js';

/** The presented credential (frozen: one may serve every request of a connection). */
export interface Credential {
  readonly scheme: 'bearer' | 'dpop';
  readonly token: string;
}

/**
 * The last `Authorization` value one client connection sent and the credential it parsed
 * to. A keep-alive client sends the same value on every request; handing back the same
 * token string spares parsing it again and, more, lets the verified-token cache find it
 * without hashing a fresh ~1 KB string (V8 keeps a string's hash): together about half of
 * a cache hit's cost. Only the parse of that exact value is reused; everything about the
 * request (duplicate headers, query tokens, size limit) and the token (expiry, key, policy)
 * is checked every time.
 */
export interface CredentialMemo {
  value: string | null;
  cred: Credential | null;
}

/** An empty {@link CredentialMemo}, one per client connection. */
export function newCredentialMemo(): CredentialMemo {
  return { value: null, cred: null };
}

// RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Reads the credential from the raw header list (duplicate `Authorization` headers are
 * invisible in Node's `req.headers`, which keeps the first). Returns null when there is
 * no bearer credential at all; throws 400 for a malformed one and 401 for an oversized one.
 * With `memo` (the connection's), an `Authorization` value equal to the one it holds is not
 * parsed again.
 */
export function extractCredential(rawHeaders: readonly string[], search: string, maxTokenBytes: number, memo?: CredentialMemo): Credential | null {
  const value = singleHeader(rawHeaders, 'authorization', 'multiple_credentials');
  if (search.length > 1 && hasAccessTokenParam(search.slice(1))) {
    throw new GatewayError(value !== null ? 'multiple_credentials' : 'token_in_query');
  }
  if (value === null) return null;
  if (memo !== undefined && memo.cred !== null && memo.value === value) {
    if (memo.cred.token.length > maxTokenBytes) throw new GatewayError('token_too_large'); // the limit may have been reloaded
    return memo.cred;
  }
  const sp = value.indexOf(' ');
  const scheme = (sp === -1 ? value : value.slice(0, sp)).toLowerCase();
  let kind: Credential['scheme'];
  if (scheme === 'bearer') kind = 'bearer';
  else if (scheme === 'dpop') kind = 'dpop';
  else return null; // another scheme (Basic, ...) carries no bearer token
  const token = sp === -1 ? '' : value.slice(sp + 1).replace(/^ +/, '');
  if (token.length > maxTokenBytes) throw new GatewayError('token_too_large');
  if (!B64TOKEN.test(token)) throw new GatewayError('bad_scheme');
  const cred: Credential = Object.freeze({ scheme: kind, token });
  if (memo !== undefined) {
    memo.value = value;
    memo.cred = cred;
  }
  return cred;
}

/** Whether a query string or form body (without `?`) has an `access_token` parameter. */
export function hasAccessTokenParam(params: string): boolean {
  if (!params.toLowerCase().includes('access') && !params.includes('%')) return false;
  for (const key of new URLSearchParams(params).keys()) {
    if (key === 'access_token') return true;
  }
  return false;
}
