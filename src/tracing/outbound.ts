/**
 * The one piece of tracing the IdP clients and the replay store know: run this call as a
 * child span of the request that needed it. It imports nothing, so the lowest layers
 * (src/idp/, src/pipeline/dpop.ts) can take it without reaching up to the request path.
 */

/** Attribute values a span may carry (undefined: not set). */
export type SpanAttributes = Record<string, string | number | boolean | undefined>;

/** Lets the code inside a child span note what it learnt (a status code). */
export interface SpanNotes {
  set(key: string, value: string | number | boolean): void;
}

/**
 * Runs outbound work (JWKS, discovery and introspection fetches, replay-store calls) as a
 * child span of the request being decided; outside a sampled request (a scheduled key
 * refresh) it just runs it.
 */
export interface OutboundTracer {
  run<T>(name: string, attributes: SpanAttributes, fn: (notes: SpanNotes) => Promise<T>): Promise<T>;
}

/** Runs the work, traces nothing: the IdP clients' default. */
export const UNTRACED: OutboundTracer = Object.freeze({
  run: <T>(_name: string, _attributes: SpanAttributes, fn: (notes: SpanNotes) => Promise<T>): Promise<T> => fn(NO_NOTES),
});

const NO_NOTES: SpanNotes = Object.freeze({ set: () => undefined });

/**
 * The OTel HTTP client attributes of a call to `url`: `http.request.method`, `url.full`
 * (scheme, host and path: never a query, which may carry a secret, nor user info),
 * `server.address` and `server.port`.
 */
export function httpClientAttributes(method: string, url: string): SpanAttributes {
  try {
    const u = new URL(url);
    return {
      'http.request.method': method,
      'url.full': `${u.origin}${u.pathname}`,
      'server.address': u.hostname.replace(/^\[|\]$/g, ''),
      'server.port': Number(u.port) || (u.protocol === 'https:' ? 443 : 80),
    };
  } catch {
    return { 'http.request.method': method };
  }
}
