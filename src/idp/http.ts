/**
 * Outbound HTTP to identity providers (discovery, JWKS, introspection): a timeout that
 * covers the whole exchange, no redirects (a redirect could point anywhere), a size cap
 * on the body, and errors that say what failed without echoing what was sent.
 */

/** An outbound call failed; `kind` is a fixed label for logs and metrics. */
export class FetchError extends Error {
  readonly kind: 'timeout' | 'network' | 'status' | 'redirect' | 'too_large' | 'not_json';
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
}

/** Fetches `url` and parses its JSON body under the limits of `opts`. */
export async function fetchJson(url: string, opts: FetchOptions): Promise<JsonResponse> {
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
