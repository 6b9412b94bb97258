/**
 * HTTP header primitives shared by the config checks, the pipeline and the listeners:
 * the hop-by-hop list, `Connection` tokens, and reading Node's raw header list
 * (`rawHeaders`: name, value, name, value, ...) — the only view that shows a header sent
 * twice (`req.headers` keeps one of them, or joins them). Every duplicate check in the
 * gateway reads headers here.
 */
import { GatewayError, type Reason } from '../errors.js';

/** Index (in `raw`) of the first header named `lower` (lower case) at or after `from`, or -1. */
export function findHeader(raw: readonly string[], lower: string, from = 0): number {
  for (let i = from; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.length === lower.length && name.toLowerCase() === lower) return i;
  }
  return -1;
}

/** Every value of header `lower`, in order. */
export function headerValues(raw: readonly string[], lower: string): string[] {
  const out: string[] = [];
  for (let i = findHeader(raw, lower); i !== -1; i = findHeader(raw, lower, i + 2)) out.push(raw[i + 1]);
  return out;
}

/** How many times header `lower` occurs. */
export function countHeader(raw: readonly string[], lower: string): number {
  let n = 0;
  for (let i = findHeader(raw, lower); i !== -1; i = findHeader(raw, lower, i + 2)) n++;
  return n;
}

/**
 * The size of a header list as HTTP/2 measures it for SETTINGS_MAX_HEADER_LIST_SIZE
 * (RFC 9113 §6.5.2): each field's name and value lengths in octets (decoded, not as
 * HPACK-encoded) plus 32. `raw` is Node's `[name, value, ...]` list (pseudo-headers in it).
 */
export function headerListSize(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) n += Buffer.byteLength(raw[i], 'latin1') + Buffer.byteLength(raw[i + 1], 'latin1') + 32;
  return n;
}

/** The value of a header that may be sent at most once: null when absent; a repeat throws `repeated`. */
export function singleHeader(raw: readonly string[], lower: string, repeated: Reason): string | null {
  const i = findHeader(raw, lower);
  if (i === -1) return null;
  if (findHeader(raw, lower, i + 2) !== -1) throw new GatewayError(repeated);
  return raw[i + 1];
}

/** Hop-by-hop headers (RFC 9110 §7.6.1, RFC 9112 §9.6, RFC 9113 §8.2.2): never forwarded. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'http2-settings',
]);

/**
 * Lower-case names listed in `Connection` (RFC 9110 §7.6.1; repeated headers are one list,
 * RFC 9110 §5.3), for requests and responses alike; null when nothing is listed.
 */
export function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  // `keep-alive` alone (what most clients send) lists only a header that is hop-by-hop anyway.
  if (!value || value === 'keep-alive') return null;
  const set = new Set<string>();
  for (const part of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const t = part.trim().toLowerCase();
    if (t) set.add(t);
  }
  return set;
}

/**
 * A JOSE `typ` value compared as the media type it is (RFC 7515 §4.1.9): case-insensitive,
 * with the `application/` prefix optional.
 */
export function normalizeTyp(typ: string): string {
  return typ.toLowerCase().replace(/^application\//, '');
}

/**
 * Whether a `content-type` makes a request a gRPC call (SPEC: `application/grpc`, or
 * `application/grpc+` a codec, case-insensitive; parameters after `;` allowed).
 */
export function isGrpcContentType(ct: string | undefined): boolean {
  if (ct === undefined || ct.length < 16) return false;
  if (ct.slice(0, 16).toLowerCase() !== 'application/grpc') return false;
  const next = ct.charCodeAt(16);
  return Number.isNaN(next) || next === 0x2b /* + */ || next === 0x3b /* ; */;
}
