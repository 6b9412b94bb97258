/**
 * Outbound HTTP to identity providers (discovery, JWKS, introspection), and the one
 * place its policy lives:
 *
 * - only `https:` URLs, except plain `http:` to the hosts of an explicit allow-list
 *   (`server.allowInsecureHttpHosts`, loopback only by default) — a network attacker
 *   must not be able to swap the keys;
 * - no redirects (a redirect could point anywhere, e.g. a cloud metadata address);
 * - a timeout that covers the whole exchange, and a size cap on the body;
 * - URLs come only from the config, or from a discovery document on the issuer's own
 *   origin (or an origin listed in `issuers[].discoveryOrigins`): see {@link checkDiscoveredUrl};
 *   a token header's `jku`/`x5u` is never fetched;
 * - errors that say what failed without echoing what was sent.
 *
 * With tracing, each call is a child span of the request that needed it (`trace`).
 */
import { httpClientAttributes, type OutboundTracer, type SpanAttributes } from '../tracing/outbound.js';

/** An outbound call failed; `kind` is a fixed label for logs and metrics. */
export class FetchError extends Error {
  readonly kind: 'timeout' | 'network' | 'status' | 'redirect' | 'too_large' | 'not_json' | 'policy';
  readonly status?: number;
  constructor(kind: FetchError['kind'], message: string, status?: number) {
    super(message);
    this.name = 'FetchError';
    this.kind = kind;
    this.status = status;
  }
}

/** What a JSON fetch returns. */
export interface JsonResponse {
  status: number;
  body: unknown;
  cacheControl: string | null;
}

/** Options of one outbound request. */
export interface FetchOptions {
  timeoutMs: number;
  maxBytes: number;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Statuses other than 200 that still return a body instead of failing. */
  acceptStatuses?: readonly number[];
  /** Hosts that may be reached over plain http; default {@link LOOPBACK_HOSTS}. */
  allowInsecureHttpHosts?: readonly string[];
  /** Runs the call as span `span` of `tracer` (with the HTTP client attributes and these); absent: untraced. */
  trace?: { tracer: OutboundTracer; span: string; attributes?: SpanAttributes };
}

/** The default `server.allowInsecureHttpHosts`: loopback only (development, sidecars). */
export const LOOPBACK_HOSTS: readonly string[] = Object.freeze(['127.0.0.1', 'localhost', '::1']);

/** `URL.hostname` without IPv6 brackets, lower-case. */
function bareHost(u: URL): string {
  return u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

/** Whether `host` is a loopback name or address (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Whether `url` parses and names a user or password (`https://user:pass@host/`). */
export function urlCarriesCredentials(url: string): boolean {
  try {
    const u = new URL(url);
    return u.username !== '' || u.password !== '';
  } catch {
    return false;
  }
}

/**
 * Why `url` may not be fetched under the outbound policy, or null when it may:
 * https always; http only to a host in `allowInsecureHttpHosts`; nothing else, and no
 * credentials in the URL.
 */
export function outboundUrlProblem(url: string, allowInsecureHttpHosts: readonly string[] = LOOPBACK_HOSTS): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'is not a valid URL';
  }
  if (urlCarriesCredentials(url)) return 'must not carry credentials';
  if (u.protocol === 'https:') return null;
  if (u.protocol !== 'http:') return `must be https (got ${u.protocol})`;
  const host = bareHost(u);
  const allowed = allowInsecureHttpHosts.some((h) => h.replace(/^\[|\]$/g, '').toLowerCase() === host);
  return allowed ? null : `must be https: plain http is only allowed to server.allowInsecureHttpHosts (${host} is not listed)`;
}

/**
 * Checks a URL read from a discovery document (RFC 8414 §3.3 lets metadata point
 * elsewhere; we do not): it must be on the issuer's own origin or on an origin listed in
 * `extraOrigins`, and pass {@link outboundUrlProblem}. Throws a `policy` {@link FetchError}.
 */
export function checkDiscoveredUrl(
  url: string, issuer: string, extraOrigins: readonly string[], allowInsecureHttpHosts: readonly string[] = LOOPBACK_HOSTS,
): string {
  const problem = outboundUrlProblem(url, allowInsecureHttpHosts);
  if (problem) throw new FetchError('policy', `discovered URL ${problem}`);
  const origin = new URL(url).origin;
  const allowed = [new URL(issuer).origin, ...extraOrigins.map((o) => new URL(o).origin)];
  if (!allowed.includes(origin)) throw new FetchError('policy', `discovered URL origin ${origin} is neither the issuer's nor in discoveryOrigins`);
  return url;
}

/** Fetches `url` and parses its JSON body under the policy and limits of `opts`. */
export function fetchJson(url: string, opts: FetchOptions): Promise<JsonResponse> {
  const t = opts.trace;
  if (t === undefined) return fetchUntraced(url, opts);
  const attrs = { ...httpClientAttributes(opts.method ?? 'GET', url), ...t.attributes };
  return t.tracer.run(t.span, attrs, async (notes) => {
    const res = await fetchUntraced(url, opts);
    notes.set('http.response.status_code', res.status);
    return res;
  });
}

async function fetchUntraced(url: string, opts: FetchOptions): Promise<JsonResponse> {
  const problem = outboundUrlProblem(url, opts.allowInsecureHttpHosts);
  if (problem) throw new FetchError('policy', `URL ${problem}`);
  const signal = AbortSignal.timeout(opts.timeoutMs);
  let res: Response;
  try {
    res = await fetch(url, {
      method: opts.method ?? 'GET',
      headers: { accept: 'application/json', ...opts.headers },
      body: opts.body,
      redirect: 'manual',
      signal,
    });
  } catch (e) {
    if (signal.aborted) throw new FetchError('timeout', `no answer within ${opts.timeoutMs} ms`);
    throw new FetchError('network', `connection failed (${causeCode(e)})`);
  }
  try {
    if (res.status >= 300 && res.status < 400) throw new FetchError('redirect', `redirect (${res.status}) refused`, res.status);
    if (res.status !== 200 && !opts.acceptStatuses?.includes(res.status)) {
      throw new FetchError('status', `HTTP ${res.status}`, res.status);
    }
    const text = await readCapped(res, opts.maxBytes, signal);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new FetchError('not_json', 'body is not JSON', res.status);
    }
    return { status: res.status, body, cacheControl: res.headers.get('cache-control') };
  } catch (e) {
    await res.body?.cancel().catch(() => undefined);
    if (e instanceof FetchError) throw e;
    if (signal.aborted) throw new FetchError('timeout', `no answer within ${opts.timeoutMs} ms`);
    throw new FetchError('network', `read failed (${causeCode(e)})`);
  }
}

async function readCapped(res: Response, maxBytes: number, signal: AbortSignal): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (declared > maxBytes) throw new FetchError('too_large', `body larger than ${maxBytes} bytes`);
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new FetchError('too_large', `body larger than ${maxBytes} bytes`);
    chunks.push(chunk);
    if (signal.aborted) break;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function causeCode(e: unknown): string {
  const cause = (e as { cause?: { code?: string } })?.cause;
  return cause?.code ?? (e as { code?: string })?.code ?? 'error';
}

/** `max-age` of a Cache-Control header, in seconds; null when absent. `no-store`/`no-cache` count as 0. */
export function maxAgeOf(cacheControl: string | null): number | null {
  if (!cacheControl) return null;
  const cc = cacheControl.toLowerCase();
  if (/(^|[\s,])(no-store|no-cache)($|[\s,])/.test(cc)) return 0;
  const m = /(^|[\s,])max-age\s*=\s*"?(\d+)"?/.exec(cc);
  return m ? Number(m[2]) : null;
}
