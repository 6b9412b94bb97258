/**
 * What a client request says about itself, read the same way by every listener that
 * serves clients (the proxy and WebSocket upgrades): the pipeline's {@link RequestFacts},
 * the client-facing scheme and host a trusted front proxy reports (`X-Forwarded-Proto`,
 * `X-Forwarded-Host`, for DPoP `htu`, RFC 9449 §4.3), and the `X-Forwarded-*` values sent
 * upstream.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { CompiledConfig, CompiledRoute } from '../config/compile.js';
import { GatewayError } from '../errors.js';
import type { CredentialMemo } from '../pipeline/extract.js';
import { upstreamHeaders } from '../pipeline/mutate.js';
import type { RequestFacts } from '../pipeline/run.js';
import { countHeader, headerListSize } from '../http/headers.js';
import { certThumbprint } from '../pipeline/client-cert.js';

/**
 * Where a client listener learns the client certificate (RFC 8705 binding): from its own
 * TLS handshakes (`server.tls.clientCaFile`), or from `clientCert.header` set by trusted
 * front proxies. Fixed when the listener is built, from the config it is built with
 * (`server.tls` is restart-only: a reloaded config does not change what the socket did).
 */
export type CertSource = 'handshake' | 'header';

/** The {@link CertSource} of a listener built with `config`. */
export function certSourceOf(config: CompiledConfig): CertSource {
  return config.server.tls?.clientCaFile !== undefined ? 'handshake' : 'header';
}

/**
 * The connection a request came on: on HTTP/2 the session's socket (the request's
 * `socket` is a proxy of it), else the request's own; null once an HTTP/2 session is gone.
 */
function connectionOf(req: IncomingMessage): TLSSocket | null {
  if (req.httpVersionMajor !== 2) return req.socket as TLSSocket;
  return ((req as unknown as { stream: { session?: { socket?: TLSSocket } } }).stream.session?.socket) ?? null;
}

/**
 * The thumbprint (`x5t#S256`, RFC 8705 §3.1) of the certificate the client presented in
 * this connection's TLS handshake, when the CA verified it (`authorized`); null when it
 * sent none, or one the CA did not verify (`clientCertificate: request` lets such a
 * client connect: it must never bind), or when the connection is not TLS.
 */
export function handshakeCertThumbprint(req: IncomingMessage): string | null {
  const socket = connectionOf(req);
  if (socket === null || socket.encrypted !== true || socket.authorized !== true) return null;
  const raw = socket.getPeerCertificate().raw;
  return raw && raw.length > 0 ? certThumbprint(raw) : null;
}

/** The first entry of a (possibly comma-joined) forwarded header, trimmed: the client-facing value. */
export function firstValue(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const c = s.indexOf(',');
  return (c === -1 ? s : s.slice(0, c)).trim() || undefined;
}

/**
 * The scheme the client used: the first `X-Forwarded-Proto` value when the peer is
 * trusted to say it, else the listener's own (`https` with `server.tls`).
 */
export function clientScheme(trusted: boolean, xfp: string | string[] | undefined, own = 'http'): string {
  return (trusted && firstValue(xfp)?.toLowerCase()) || own;
}

/** The scheme of the connection itself: `https` when TLS ended here (never the client's `:scheme`). */
function ownScheme(req: IncomingMessage): string {
  return (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http';
}

/**
 * The host a request names: `Host`, or on HTTP/2 `:authority` (RFC 9113 §8.3.1), which
 * {@link clientFacts} has checked agree when both are sent.
 */
export function requestHost(req: IncomingMessage): string | undefined {
  return req.headers.host ?? (req.headers[':authority'] as string | undefined);
}

/**
 * Whether a request's host is unambiguous. HTTP/1.1 (RFC 9112 §3.2): exactly one Host
 * (a front proxy may have routed on another). HTTP/2 (RFC 9113 §8.3.1): `:authority` or
 * `Host`, and a `Host` beside `:authority` must name the same (case-insensitive).
 */
function hostIsSound(req: IncomingMessage): boolean {
  const hosts = countHeader(req.rawHeaders, 'host');
  if (hosts > 1) return false;
  if (req.httpVersionMajor !== 2) return hosts === 1 || req.httpVersion !== '1.1';
  const authority = req.headers[':authority'] as string | undefined;
  if (authority === undefined) return hosts === 1;
  return hosts === 0 || (req.headers.host as string).toLowerCase() === authority.toLowerCase();
}

/**
 * The pipeline's view of a client request, HTTP/1.1 or HTTP/2 alike (on HTTP/2 the target
 * is `:path`). A request whose host is ambiguous ({@link hostIsSound}) is a 400, and so
 * is an HTTP/2 CONNECT (RFC 9113 §8.5; nothing here is tunnelled). An HTTP/2 header list
 * past `maxHeaderBytes` is a 431, as on HTTP/1.1: Node enforces the advertised
 * SETTINGS_MAX_HEADER_LIST_SIZE only once the client has acknowledged it, so the first
 * requests of a connection would otherwise pass with any size.
 */
export function clientFacts(config: CompiledConfig, req: IncomingMessage, formBody: string | undefined, credentialMemo: CredentialMemo | undefined, certs: CertSource): RequestFacts {
  if (!hostIsSound(req) || req.method === 'CONNECT') throw new GatewayError('bad_request');
  if (req.httpVersionMajor === 2 && headerListSize(req.rawHeaders) > config.server.maxHeaderBytes) throw new GatewayError('header_too_large');
  const trust = config.server.trustProxy;
  const host = requestHost(req);
  return {
    method: req.method as string,
    target: req.url as string,
    host,
    rawHeaders: req.rawHeaders,
    scheme: clientScheme(trust, req.headers['x-forwarded-proto'], ownScheme(req)),
    authority: (trust && firstValue(req.headers['x-forwarded-host'])) || host,
    peer: req.socket.remoteAddress,
    client: (trust && firstValue(req.headers['x-forwarded-for'])) || req.socket.remoteAddress,
    httpVersion: req.httpVersion,
    formBody,
    credentialMemo,
    answersPreflight: true, // WebSocket upgrades are GETs: never a preflight
    // Read only for a certificate-bound token: the header is then never consulted.
    clientCert: certs === 'handshake' ? () => handshakeCertThumbprint(req) : undefined,
  };
}

/**
 * The `X-Forwarded-For/-Proto/-Host` values sent upstream: the peer's own, or (with
 * `server.trustProxy`) the front proxy's, appended to for `-For`.
 */
function forwardedValues(config: CompiledConfig, req: IncomingMessage): { for: string; proto: string; host: string | undefined } {
  const addr = req.socket.remoteAddress ?? '';
  if (!config.server.trustProxy) return { for: addr, proto: ownScheme(req), host: requestHost(req) };
  const xff = req.headers['x-forwarded-for'];
  const xfp = req.headers['x-forwarded-proto'];
  const xfh = req.headers['x-forwarded-host'];
  return {
    for: typeof xff === 'string' ? `${xff}, ${addr}` : addr,
    proto: typeof xfp === 'string' ? xfp : ownScheme(req),
    host: typeof xfh === 'string' ? xfh : requestHost(req),
  };
}

/**
 * The headers a client request goes upstream with, the same for proxied requests and
 * WebSocket upgrades: {@link upstreamHeaders} with this request's `X-Forwarded-*` values,
 * the client-certificate header dropped unless the peer is trusted to set it (and always
 * on a listener that reads certificates from its handshakes: there nobody sets it), and
 * `Host` the upstream's.
 */
export function clientUpstreamHeaders(
  config: CompiledConfig, route: CompiledRoute, req: IncomingMessage, own: ReadonlyArray<[string, string]>, certs: CertSource,
): Record<string, string | string[]> {
  const certHeader = certs === 'header' && config.clientCert.trusted(req.socket.remoteAddress) ? undefined : config.clientCert.header;
  const headers = upstreamHeaders(config, route, req.headers, own, forwardedValues(config, req), req.headers.connection, certHeader);
  headers.host = route.upstreamHost;
  return headers;
}
