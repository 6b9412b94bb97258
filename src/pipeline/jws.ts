/**
 * JWS compact serialization (RFC 7515 §7.1) as JWT access tokens use it: the token is
 * split and decoded once ({@link parseJws}), and its signature is checked synchronously
 * with `node:crypto` against a prepared `KeyObject` ({@link verifyJwsSignature}).
 *
 * Why not `jose.jwtVerify` here: it goes through WebCrypto, one promise and two copies
 * per operation, and decodes the token again. jose still imports the keys (JWKS) and
 * computes thumbprints; what this module checks is pinned against `jose.jwtVerify` by a
 * differential test.
 *
 * @example
 *   const jws = parseJws(token);
 *   if (jws && keyFitsAlg(key, 'RS256') && verifyJwsSignature(token, jws.dot2, 'RS256', key)) { ... }
 */
import { isUtf8 } from 'node:buffer';
import { constants, verify as cryptoVerify, type KeyObject } from 'node:crypto';

/** A JWS compact token split once: its header and claims, and where the signing input ends. */
export interface ParsedJws {
  /** The JOSE header (RFC 7515 §4), a JSON object; frozen when it came through a {@link HeaderMemo}. */
  header: Readonly<Record<string, unknown>>;
  /** The payload as a JSON object (RFC 7519 §7.2 step 10: a JWT Claims Set). */
  claims: Record<string, unknown>;
  /** Index of the second `.`: `token.slice(0, dot2)` is the signing input (RFC 7515 §5.2). */
  dot2: number;
}

/**
 * The last protected header a verifier decoded, as text and as parsed: the tokens of one
 * issuer and key share one header text, so the next token's header is a comparison of ~70
 * characters instead of a base64url decode, a UTF-8 check and a JSON parse. The parse is a
 * function of the text alone, and the object is frozen, so handing it out again is exact.
 */
export interface HeaderMemo {
  text: string | null;
  header: Readonly<Record<string, unknown>> | null;
}

/**
 * Splits and decodes `token`, or returns null when it is not a JWS compact serialization
 * of a JWT: three non-empty parts of canonical base64url (RFC 7515 §2: no padding, no
 * `+`/`/`, unused trailing bits zero, so one token text per signature), a header and a
 * payload that are UTF-8 JSON objects (RFC 7515 §5.2 steps 2-3, RFC 7519 §7.2). The
 * signature part is checked for its alphabet only; it is decoded only if a key is looked up.
 * With `memo`, a header text equal to the last one is not decoded again.
 */
export function parseJws(token: string, memo?: HeaderMemo): ParsedJws | null {
  // One native scan for the shape and the alphabet; what is left per part is its length and
  // its last character (a JS loop over the ~700 characters cost twice as much).
  if (!JWS_SHAPE.test(token)) return null;
  const dot1 = token.indexOf('.');
  const dot2 = token.indexOf('.', dot1 + 1);
  if (!canonicalEnd(token, 0, dot1) || !canonicalEnd(token, dot1 + 1, dot2) || !canonicalEnd(token, dot2 + 1, token.length)) return null;
  const headerText = token.slice(0, dot1);
  let header: Readonly<Record<string, unknown>> | null;
  if (memo !== undefined && memo.text === headerText) header = memo.header;
  else {
    header = jsonObject(headerText);
    if (header === null) return null;
    if (memo !== undefined) {
      memo.text = headerText;
      memo.header = Object.freeze(header);
    }
  }
  const claims = jsonObject(token.slice(dot1 + 1, dot2));
  if (claims === null) return null;
  return { header: header as Readonly<Record<string, unknown>>, claims, dot2 };
}

/** Decodes one canonical base64url part into a JSON object, or null. */
function jsonObject(part: string): Record<string, unknown> | null {
  const bytes = Buffer.from(part, 'base64url');
  // Invalid UTF-8 is refused rather than replaced, as jose's strict decoder does; a leading
  // byte order mark is skipped, as a WHATWG decoder does (RFC 8259 §8.1 allows either).
  if (!isUtf8(bytes)) return null;
  const bom = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8', bom ? 3 : 0));
  } catch {
    return null;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/** Three non-empty parts of the base64url alphabet (RFC 4648 §5), no padding, separated by `.`. */
const JWS_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const B64URL_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64URL_VALUE['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.charCodeAt(i)] = i;

/**
 * Whether `s[start, end)`, already known to be of the base64url alphabet, is canonical
 * unpadded base64url (RFC 4648 §3.5): a length that is not 1 mod 4, and zero unused bits in
 * the last character (4 of them when the length is 2 mod 4, 2 when it is 3 mod 4).
 */
function canonicalEnd(s: string, start: number, end: number): boolean {
  const rem = (end - start) % 4;
  if (rem === 0) return true;
  if (rem === 1) return false;
  return (B64URL_VALUE[s.charCodeAt(end - 1)] & (rem === 2 ? 0x0f : 0x03)) === 0;
}

/** What one JWS `alg` needs of a key and a signature (RFC 7518 §3, RFC 8037 §3.1). */
interface AlgSpec {
  /** `node:crypto` digest name; null for EdDSA, which hashes internally. */
  hash: string | null;
  kind: 'pkcs1' | 'pss' | 'ecdsa' | 'eddsa';
  /** PSS salt length in bytes: the hash output length (RFC 7518 §3.5). */
  saltLength?: number;
  /** ECDSA curve as `KeyObject` names it, and the byte length of r and of s (RFC 7518 §3.4). */
  curve?: string;
  half?: number;
}

const ALGS: Readonly<Record<string, AlgSpec>> = Object.freeze({
  RS256: { hash: 'sha256', kind: 'pkcs1' },
  RS384: { hash: 'sha384', kind: 'pkcs1' },
  RS512: { hash: 'sha512', kind: 'pkcs1' },
  PS256: { hash: 'sha256', kind: 'pss', saltLength: 32 },
  PS384: { hash: 'sha384', kind: 'pss', saltLength: 48 },
  PS512: { hash: 'sha512', kind: 'pss', saltLength: 64 },
  ES256: { hash: 'sha256', kind: 'ecdsa', curve: 'prime256v1', half: 32 },
  ES384: { hash: 'sha384', kind: 'ecdsa', curve: 'secp384r1', half: 48 },
  ES512: { hash: 'sha512', kind: 'ecdsa', curve: 'secp521r1', half: 66 },
  EdDSA: { hash: null, kind: 'eddsa' },
  Ed25519: { hash: null, kind: 'eddsa', curve: 'ed25519' },
});

/** The spec of `alg`; own members only, so `constructor` or `__proto__` is no algorithm. */
function specOf(alg: string): AlgSpec | undefined {
  return Object.hasOwn(ALGS, alg) ? ALGS[alg] : undefined;
}

/**
 * Whether `key` is a public key that `alg` may use: RSA of 2048 bits or more for RS and PS
 * (RFC 7518 §3.3, §3.5), EC on the algorithm's own curve (§3.4), Ed25519 or Ed448 for
 * EdDSA (RFC 8037 §3.1) and Ed25519 alone for `Ed25519`.
 */
export function keyFitsAlg(key: KeyObject, alg: string): boolean {
  const spec = specOf(alg);
  if (spec === undefined || key.type !== 'public') return false;
  const type = key.asymmetricKeyType;
  switch (spec.kind) {
    case 'pkcs1': case 'pss':
      return type === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048;
    case 'ecdsa':
      return type === 'ec' && key.asymmetricKeyDetails?.namedCurve === spec.curve;
    case 'eddsa':
      return spec.curve === undefined ? type === 'ed25519' || type === 'ed448' : type === spec.curve;
  }
}

/**
 * Checks the signature of the JWS `token` (already parsed: `dot2` from {@link parseJws})
 * with `alg` and `key`, which {@link keyFitsAlg} has accepted. Synchronous. False for any
 * signature that is not exactly the algorithm's own form: an RSA signature not of the
 * modulus length (RFC 8017 §8.1.2, §8.2.2 step 1), an ECDSA signature not the fixed-width
 * `r || s` of RFC 7518 §3.4 (so no DER form) or with r or s zero (CVE-2022-21449; OpenSSL
 * also refuses r or s outside [1, n-1]).
 */
export function verifyJwsSignature(token: string, dot2: number, alg: string, key: KeyObject): boolean {
  const spec = specOf(alg);
  if (spec === undefined) return false;
  const signature = Buffer.from(token.slice(dot2 + 1), 'base64url');
  // The token is canonical base64url, hence ASCII: latin1 gives its exact bytes.
  const data = Buffer.from(token.slice(0, dot2), 'latin1');
  try {
    switch (spec.kind) {
      case 'pkcs1':
      case 'pss': {
        if (signature.length !== ((key.asymmetricKeyDetails?.modulusLength ?? 0) + 7) >> 3) return false;
        if (spec.kind === 'pkcs1') return cryptoVerify(spec.hash, data, key, signature);
        return cryptoVerify(spec.hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: spec.saltLength }, signature);
      }
      case 'ecdsa': {
        const half = spec.half as number;
        if (signature.length !== 2 * half || isZero(signature, 0, half) || isZero(signature, half, 2 * half)) return false;
        return cryptoVerify(spec.hash, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
      }
      case 'eddsa':
        // RFC 8032 §5.1.6 / §5.2.6: 64 bytes for Ed25519, 114 for Ed448.
        if (signature.length !== (key.asymmetricKeyType === 'ed448' ? 114 : 64)) return false;
        return cryptoVerify(null, data, key, signature);
    }
  } catch {
    return false; // a key OpenSSL cannot use for this operation: not a valid signature
  }
}

/** Whether `b[start, end)` is all zero bytes. */
function isZero(b: Buffer, start: number, end: number): boolean {
  let acc = 0;
  for (let i = start; i < end; i++) acc |= b[i];
  return acc === 0;
}
