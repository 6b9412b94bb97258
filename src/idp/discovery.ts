/**
 * OIDC Discovery / RFC 8414 metadata: where an issuer publishes its keys and its
 * introspection endpoint. The document's `issuer` must equal the configured issuer
 * exactly (OIDC Discovery §4.3), or the metadata is rejected (mix-up defence), and the
 * URLs it names must be on the issuer's origin (or a configured `discoveryOrigins`
 * entry): a tampered or confused document cannot send tokengate anywhere else.
 */
import { checkDiscoveredUrl, fetchJson, FetchError, LOOPBACK_HOSTS } from './http.js';
import type { OutboundTracer } from '../tracing/outbound.js';

/** The part of the metadata tokengate uses. */
export interface IssuerMetadata {
  jwksUri: string | null;
  introspectionEndpoint: string | null;
}

/** Outbound policy for discovery (see `idp/http.ts`). */
export interface DiscoveryPolicy {
  /** Origins besides the issuer's own that the document's URLs may use. */
  discoveryOrigins?: readonly string[];
  allowInsecureHttpHosts?: readonly string[];
  /** The fetch runs as a `tokengate.discovery.fetch` span of the request that needed it. */
  tracer?: OutboundTracer;
  /** The issuer's id, on that span. */
  issuerId?: string;
}

/** Fetches and checks `${issuer}/.well-known/openid-configuration`. */
export async function discover(issuer: string, timeoutMs: number, maxBytes: number, policy: DiscoveryPolicy = {}): Promise<IssuerMetadata> {
  const insecure = policy.allowInsecureHttpHosts ?? LOOPBACK_HOSTS;
  const url = issuer.replace(/\/$/, '') + '/.well-known/openid-configuration';
  const trace = policy.tracer ? { tracer: policy.tracer, span: 'tokengate.discovery.fetch', attributes: { 'tokengate.issuer': policy.issuerId } } : undefined;
  const { body } = await fetchJson(url, { timeoutMs, maxBytes, allowInsecureHttpHosts: insecure, trace });
  if (!body || typeof body !== 'object') throw new FetchError('not_json', 'discovery document is not an object');
  const doc = body as Record<string, unknown>;
  if (doc.issuer !== issuer) throw new FetchError('status', 'discovery document names another issuer');
  const url_ = (v: unknown): string | null =>
    typeof v === 'string' ? checkDiscoveredUrl(v, issuer, policy.discoveryOrigins ?? [], insecure) : null;
  return { jwksUri: url_(doc.jwks_uri), introspectionEndpoint: url_(doc.introspection_endpoint) };
}
