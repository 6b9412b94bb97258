/**
 * The only writer of error responses: status, `WWW-Authenticate` (RFC 6750 §3), JSON
 * body `{error, error_description}` and `Retry-After`. Descriptions come from the
 * catalogue; nothing request-derived is echoed. On a route with `cors`, every writer also
 * sets the CORS headers the decision picked (src/pipeline/cors.ts), so that a page can
 * read the refusal; it also writes the gateway's answer to a CORS preflight.
 */
import type { FastifyReply } from 'fastify';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import { isGrpcContentType } from '../http/headers.js';
import type { Duplex } from 'node:stream';
import { ERRORS, GatewayError } from '../errors.js';
import { decorateOwn, type CorsHeaders } from '../pipeline/cors.js';

/** The realm in every Bearer challenge. */
export const REALM = 'tokengate';

/** The `WWW-Authenticate` value for `err`, or null when the status carries none. */
export function challengeFor(err: GatewayError): string | null {
  if (!ERRORS[err.reason].challenge) return null;
  if (err.dpop) {
    // RFC 9449 §7.1: `DPoP error="...", algs="..."` (the attributes the contract names come first).
    const c = `DPoP error="${err.error}", algs="${err.dpop.algs}", error_description="${err.message}"`;
    return err.scope ? `${c}, scope="${err.scope}"` : c;
  }
  if (err.error === 'missing_token') return `Bearer realm="${REALM}"`; // RFC 6750 §3.1: no error code without credentials
  let c = `Bearer realm="${REALM}", error="${err.error}", error_description="${err.message}"`;
  if (err.scope) c += `, scope="${err.scope}"`;
  return c;
}

/** The JSON body for `err`. */
export function bodyFor(err: GatewayError): string {
  return JSON.stringify({ error: err.error, error_description: err.message });
}

/**
 * Status, headers and body for `err`: what every writer of an error response sends.
 * `cors`: the request's CORS headers (DecisionContext `cors`), null off `cors` routes.
 * `extra`: headers the gateway adds to every answer of this request (its request id).
 */
export function errorParts(err: GatewayError, cors: CorsHeaders | null = null, extra: Readonly<Record<string, string>> | null = null): { status: number; headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...extra };
  const challenge = challengeFor(err);
  if (challenge) headers['www-authenticate'] = challenge;
  if (err.status === 503) headers['retry-after'] = String(err.retryAfterSec ?? 5);
  if (err.dpop?.nonce) headers['dpop-nonce'] = err.dpop.nonce; // RFC 9449 §8.1
  if (cors !== null) decorateOwn(headers, cors);
  return { status: err.status, headers, body: bodyFor(err) };
}

/**
 * The gRPC status code (grpc/grpc `doc/statuscodes.md`) for a refusal with HTTP status
 * `status`: 401 UNAUTHENTICATED (16), 403 PERMISSION_DENIED (7), 404 UNIMPLEMENTED (12),
 * 400 INVALID_ARGUMENT (3), 429/502/503/504 UNAVAILABLE (14, the codes a client may
 * retry), anything else INTERNAL (13).
 */
export function grpcStatusFor(status: number): number {
  switch (status) {
    case 401: return 16;
    case 403: return 7;
    case 404: return 12;
    case 400: return 3;
    case 429: case 502: case 503: case 504: return 14;
    default: return 13;
  }
}

/** The HTTP/2 stream of a client response, when the client speaks HTTP/2 (Node's compatibility API). */
export function clientStream(res: ServerResponse): ServerHttp2Stream | null {
  return (res as unknown as { stream?: ServerHttp2Stream }).stream ?? null;
}

/**
 * Whether the client is gone: its HTTP/1.1 connection closed, or its HTTP/2 stream reset
 * (RST_STREAM) or its session ended. Node's HTTP/2 response has no `destroyed`, reports
 * `writableFinished` once its stream is reset, and its `write` then returns false with no
 * `drain` to follow: read the stream itself.
 */
export function clientGone(res: ServerResponse): boolean {
  if (res.destroyed === true) return true;
  const h2 = clientStream(res);
  return h2 !== null && h2.destroyed;
}

/**
 * `grpc-message` as gRPC carries it (PROTOCOL-HTTP2.md): percent-encoded outside printable
 * ASCII, and `%` itself.
 */
export function grpcMessage(text: string): string {
  return text.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));
}

/**
 * Answers a gRPC call with only a status: HTTP 200, `content-type: application/grpc`,
 * `grpc-status`, `grpc-message` and `headers`, no message. To an HTTP/2 client this is
 * one HEADERS frame that ends the stream ("Trailers-Only"), which is how gRPC clients read
 * a status without a response.
 */
export function writeGrpcStatus(res: ServerResponse, code: number, message: string, headers: Record<string, string>): void {
  const h2 = clientStream(res);
  const all: Record<string, string> = { ...headers, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': grpcMessage(message) };
  res.statusCode = 200;
  if (h2 !== null) {
    if (!h2.destroyed) h2.respond({ ...all, ':status': 200 }, { endStream: true });
    return;
  }
  all['content-length'] = '0';
  res.writeHead(200, all);
  res.end();
}

/**
 * A refusal of a gRPC call in gRPC form (SPEC): status from {@link grpcStatusFor},
 * `grpc-message` the error description, and the refusal's other headers
 * (`WWW-Authenticate`, `Retry-After`, `DPoP-Nonce`, CORS).
 */
function writeGrpcError(res: ServerResponse, err: GatewayError, cors: CorsHeaders | null, extra: Readonly<Record<string, string>> | null): void {
  const { headers } = errorParts(err, cors, extra);
  delete headers['content-type'];
  delete headers['cache-control'];
  writeGrpcStatus(res, grpcStatusFor(err.status), err.message, headers);
}

/** Whether the request `res` answers is a gRPC call. */
function answersGrpc(res: ServerResponse): boolean {
  return isGrpcContentType(res.req?.headers['content-type']);
}

/**
 * Writes `err` to `reply` (headers and body), for any Fastify instance; `cors` and `extra`
 * as for {@link errorParts}. On a listener that answers gRPC clients itself (the proxy:
 * `grpcRefusals` decorated by src/server/proxy.ts), a gRPC call gets the refusal in gRPC
 * form. Never on the decision listener: its caller is a front proxy reading the HTTP
 * status, to which a 200 carrying `grpc-status` would mean "allow".
 */
export function sendError(reply: FastifyReply, err: GatewayError, cors: CorsHeaders | null = null, extra: Readonly<Record<string, string>> | null = null): FastifyReply {
  if ((reply.server as { grpcRefusals?: boolean }).grpcRefusals === true && answersGrpc(reply.raw)) {
    reply.hijack();
    writeGrpcError(reply.raw, err, cors, extra);
    return reply;
  }
  const { status, headers, body } = errorParts(err, cors, extra);
  return reply.code(status).headers(headers).send(body);
}

/**
 * Answers a CORS preflight on a raw Node response: 204 with the route's headers for the
 * origin (Fetch §3.2.3), no body. A preflight has no body (Fetch §4.8); one that declares
 * one is answered without reading it and the connection is closed after the answer, so
 * no byte of it can be taken for a next request.
 */
export function writePreflightRaw(res: ServerResponse, cors: CorsHeaders, extra: Readonly<Record<string, string>> | null = null): void {
  // No Content-Length on a 204 (RFC 9110 §8.6).
  const headers: Record<string, string> = { ...extra, ...cors };
  const h = res.req.headers;
  if (h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0')) headers.connection = 'close';
  res.writeHead(204, headers);
  res.end();
}

/**
 * Writes `err` as a complete HTTP/1.1 response on a raw socket and ends it: for requests
 * that never reach Fastify's reply (WebSocket upgrades).
 */
export function writeRawError(socket: Duplex, err: GatewayError, extra: Readonly<Record<string, string>> | null = null): void {
  const { status, headers, body } = errorParts(err, null, extra);
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  head += `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`;
  if (socket.writable) socket.end(head + body);
  else socket.destroy();
}

/**
 * Writes `err` to a raw Node response, with the same status, headers and body as
 * {@link sendError}: for replies the proxy has taken over from Fastify (it streams
 * upstream answers itself, so an upstream failure is written here). Proxy answers only:
 * a gRPC call gets the gRPC form.
 */
export function writeErrorRaw(res: ServerResponse, err: GatewayError, cors: CorsHeaders | null = null, extra: Readonly<Record<string, string>> | null = null): void {
  if (answersGrpc(res)) return writeGrpcError(res, err, cors, extra);
  const { status, headers, body } = errorParts(err, cors, extra);
  headers['content-length'] = String(Buffer.byteLength(body));
  res.writeHead(status, headers);
  res.end(body);
}

/** Maps anything thrown to a {@link GatewayError} (unknown errors: 500, nothing internal exposed). */
export function toGatewayError(e: unknown): GatewayError {
  if (e instanceof GatewayError) return e;
  const status = (e as { statusCode?: number })?.statusCode;
  // Fastify's body errors: a form body beyond bodyLimit (413); bad framing or content-length (400),
  // a Content-Type it cannot parse (415), or any other client error: 400, never a 500.
  if (status === 413) return new GatewayError('body_too_large');
  if (status !== undefined && status >= 400 && status < 500) return new GatewayError('bad_request');
  return new GatewayError('internal');
}

