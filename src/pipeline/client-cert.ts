/**
 * The client certificate's thumbprint (RFC 8705 §3.1: base64url SHA-256 of the DER
 * certificate), read from the header a TLS-terminating front proxy sets:
 *
 * - Envoy's `x-forwarded-client-cert` (XFCC): `Hash=<hex SHA-256 of the DER>` and/or
 *   `Cert="<URL-encoded PEM>"`; exactly one element is accepted (several elements mean
 *   several proxy hops, and which one saw the real client is ambiguous);
 * - a URL-encoded PEM (nginx `$ssl_client_escaped_cert`), or a plain PEM;
 * - a bare base64 DER (Traefik's `X-Forwarded-Tls-Client-Cert`).
 *
 * The caller decides whether the header is believed (the peer is in
 * `clientCert.trustedProxies`); this module only parses. Anything unparseable is null.
 */
import { createHash, X509Certificate } from 'node:crypto';

/** Thumbprint of a DER certificate: base64url SHA-256 (the `x5t#S256` form). */
export function certThumbprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('base64url');
}

function fromPem(pem: string): string | null {
  try {
    return certThumbprint(new X509Certificate(pem).raw);
  } catch {
    return null;
  }
}

function fromDerBase64(b64: string): string | null {
  try {
    return certThumbprint(new X509Certificate(Buffer.from(b64, 'base64')).raw);
  } catch {
    return null;
  }
}

function decode(v: string): string | null {
  try {
    return decodeURIComponent(v);
  } catch {
    return null;
  }
}

/** Splits `s` on `sep` outside double quotes. */
function splitUnquoted(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && quoted && i + 1 < s.length) {
      cur += c + s[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === sep && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

function unquote(v: string): string {
  const t = v.trim();
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1).replace(/\\(.)/g, '$1') : t;
}

/** Parses one XFCC element (`Key=value;Key="value"`); null when it has neither Hash nor Cert or they disagree. */
function fromXfcc(value: string): string | null {
  const elements = splitUnquoted(value, ',');
  if (elements.length !== 1) return null;
  let hash: string | null = null;
  let cert: string | null = null;
  for (const pair of splitUnquoted(elements[0], ';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const key = pair.slice(0, eq).trim().toLowerCase();
    const v = unquote(pair.slice(eq + 1));
    if (key === 'hash') {
      if (!/^[0-9a-fA-F]{64}$/.test(v)) return null;
      hash = Buffer.from(v, 'hex').toString('base64url');
    } else if (key === 'cert') {
      const pem = decode(v);
      cert = pem === null ? null : fromPem(pem);
      if (cert === null) return null;
    }
  }
  if (hash && cert && hash !== cert) return null;
  return cert ?? hash;
}

/** The thumbprint carried by a client-certificate header value, or null. */
export function thumbprintFromHeader(value: string): string | null {
  const v = value.trim();
  if (v === '') return null;
  if (v.startsWith('-----BEGIN') || /^(%2D){5}BEGIN/i.test(v)) {
    if (!v.includes('%')) return fromPem(v);
    const pem = decode(v);
    return pem === null ? null : fromPem(pem);
  }
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(v) && v.length > 100) return fromDerBase64(v);
  return fromXfcc(v);
}
