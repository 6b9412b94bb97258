/**
 * The `extAuthz:` listener: Envoy's external authorization service over gRPC (h2c),
 * `envoy.service.auth.v3.Authorization/Check`, for the Envoy `ext_authz` HTTP filter,
 * Istio's `envoyExtAuthzGrpc` provider (CUSTOM AuthorizationPolicy), Envoy Gateway and
 * Contour; and `grpc.health.v1.Health/Check` on the same port.
 *
 * Like the decision listener, it is one more door to the same {@link decide}: the request
 * Envoy describes in `attributes.request.http` (method, host, path with query, headers,
 * scheme) becomes the pipeline's request facts, is decided once, and the result is
 * rendered as a CheckResponse: on success the identity headers to set and the client's
 * identity-namespace headers to remove; on refusal the gRPC code of the refusal and the
 * HTTP answer (status, `WWW-Authenticate`, JSON body) from the one error renderer.
 *
 * Usage (what src/gateway.ts does):
 *
 *     const x = await ExtAuthzListener.start(core, logger, { host: '0.0.0.0', port: 9191 });
 *     // ... x.address; later:
 *     await x.close(graceSec);
 */
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { AddressMatcher } from '../config/address-matcher.js';
import { canonicalHeader, type CompiledConfig } from '../config/compile.js';
import { GatewayError } from '../errors.js';
import type { GatewayCore } from './core.js';
import { Exchange } from './exchange.js';
import { isIdentityHeader } from '../pipeline/mutate.js';
import type { DecisionContext, RequestFacts } from '../pipeline/run.js';
import { errorParts, grpcStatusFor } from './error-response.js';
import { clientScheme, firstValue } from './forwarded.js';
import { findHeader } from '../http/headers.js';
import { REQUEST_ID_HEADER } from './request-id.js';
import {
  AUTHORIZATION_SERVICE, HEALTH_SERVICE, loadExtAuthzProtos, NOT_SERVING, OVERWRITE_IF_EXISTS_OR_ADD, SERVING, serviceOf,
  type CheckRequest, type CheckResponse, type HeaderValueOption, type HttpRequestAttributes,
} from './ext-authz-proto.js';

/** The listener's name on access lines. */
export const EXT_AUTHZ_LISTENER = 'ext_authz';

/**
 * A header Envoy sets on the upstream request, replacing any value of that name: both the
 * deprecated `append: false` (which every Envoy version's ext_authz reads first) and the
 * `append_action` that replaced it say "overwrite" (envoy `base.proto`, HeaderValueOption).
 */
function overwrite(key: string, value: string): HeaderValueOption {
  return { header: { key, value }, append: { value: false }, append_action: OVERWRITE_IF_EXISTS_OR_ADD };
}

/**
 * The peer's IP address from grpc-js `getPeer()` (`address:port`, IPv6 unbracketed);
 * undefined when it is not an IP address (then no `trustedProxies` entry matches).
 */
export function peerAddress(peer: string): string | undefined {
  const i = peer.lastIndexOf(':');
  if (i > 0 && /^\d+$/.test(peer.slice(i + 1)) && isIP(peer.slice(0, i))) return peer.slice(0, i);
  return isIP(peer) ? peer : undefined;
}

/**
 * The described request's headers as a raw name/value list: Envoy's `header_map` when it
 * sends one (`encode_raw_headers: true`: a repeated header stays two entries, so two
 * `Authorization` headers are seen as two), else its `headers` map. Pseudo-headers are
 * left out (their values arrive as `method`, `path`, `host`), and so is the
 * client-certificate header: the client could have written it, and Envoy gives the
 * certificate it verified in `source.certificate` instead.
 */
function rawHeadersOf(http: HttpRequestAttributes, certHeader: string): string[] {
  const out: string[] = [];
  const add = (name: string, value: string) => {
    if (name.startsWith(':') || canonicalHeader(name) === certHeader) return;
    out.push(name.toLowerCase(), value);
  };
  const list = http.header_map?.headers;
  if (list && list.length > 0) {
    // raw_value holds the bytes as received; latin1 keeps them one char per byte, as Node's own parser does.
    for (const h of list) add(h.key ?? '', h.raw_value && h.raw_value.length > 0 ? h.raw_value.toString('latin1') : h.value ?? '');
  } else {
    for (const [name, value] of Object.entries(http.headers ?? {})) add(name, value);
  }
  return out;
}

/**
 * The pipeline's view of a CheckRequest. The path is the request target as Envoy received
 * it (with the query, not decoded: the pipeline normalizes it and refuses the same
 * ambiguous paths as in proxy mode); the scheme is what Envoy puts in `scheme` (its
 * `x-forwarded-proto`), for DPoP `htu` (RFC 9449 §4.3) together with `host`. The client
 * certificate is `source.certificate` (URL-encoded PEM), believed as the
 * client-certificate header would be: only when this peer is in `clientCert.trustedProxies`.
 */
export function checkFacts(config: CompiledConfig, req: CheckRequest, peer: string | undefined): RequestFacts {
  const http = req.attributes?.request?.http;
  if (!http || !http.method || !http.path?.startsWith('/')) throw new GatewayError('bad_request');
  const rawHeaders = rawHeadersOf(http, config.clientCert.header);
  const cert = req.attributes?.source?.certificate;
  if (cert) rawHeaders.push(config.clientCert.header, cert);
  const host = http.host || undefined;
  const xff = findHeader(rawHeaders, 'x-forwarded-for');
  return {
    method: http.method, target: http.path, host, rawHeaders, scheme: clientScheme(true, http.scheme), authority: host, peer,
    // Envoy's X-Forwarded-For names the client it served (the peer is Envoy itself).
    client: xff === -1 ? peer : firstValue(rawHeaders[xff + 1]) ?? peer,
    httpVersion: http.protocol?.startsWith('HTTP/') ? http.protocol.slice(5) : undefined,
  };
}

/** Header values are built as Node writes them (UTF-8 bytes as latin1 text); a proto string is UTF-8 text. */
function utf8(v: string): string {
  // eslint-disable-next-line no-control-regex
  return /[^\x00-\x7f]/.test(v) ? Buffer.from(v, 'latin1').toString('utf8') : v;
}

/**
 * The answer for an allowed request. `headers` set the identity headers and the request id
 * (to the upstream; the id also goes back to the client); Envoy applies
 * `headers_to_remove` after `headers` (envoy `external_auth.proto`, OkHttpResponse), so it
 * lists only what `headers` does not set: every identity-namespace header the client sent
 * (any spelling, `X_Auth_Role` included), and `authorization` (with `dpop`) where the
 * route strips them, as the proxy would.
 */
export function allowedResponse(config: CompiledConfig, ctx: DecisionContext, rawHeaders: readonly string[], requestId: string): CheckResponse {
  const route = ctx.route!;
  const set = new Set<string>([REQUEST_ID_HEADER]);
  const headers: HeaderValueOption[] = [overwrite(REQUEST_ID_HEADER, requestId)];
  for (const [name, value] of ctx.headers) {
    set.add(name);
    headers.push(overwrite(name, utf8(value)));
  }
  const remove: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (set.has(name) || remove.includes(name)) continue;
    const canon = canonicalHeader(name);
    if (isIdentityHeader(config, canon) || (!route.passAuthorization && (canon === 'authorization' || canon === 'dpop'))) remove.push(name);
  }
  if (!route.passAuthorization && !remove.includes('authorization')) remove.push('authorization');
  // RFC 9449 §8.2: a fresh DPoP nonce goes back to the client on the response.
  const responseHeaders = [overwrite(REQUEST_ID_HEADER, requestId)];
  if (ctx.dpopNonce) responseHeaders.push(overwrite('dpop-nonce', ctx.dpopNonce));
  return { status: { code: 0 }, ok_response: { headers, headers_to_remove: remove, response_headers_to_add: responseHeaders } };
}

/**
 * The answer for a refusal: its gRPC code, and the HTTP answer the proxy would have sent
 * (`extra`: the request id header).
 */
export function deniedResponse(err: GatewayError, extra: Readonly<Record<string, string>> | null = null): CheckResponse {
  const { status, headers, body } = errorParts(err, null, extra);
  return {
    status: { code: grpcStatusFor(status), message: err.message },
    denied_response: { status: { code: status }, headers: Object.entries(headers).map(([k, v]) => overwrite(k, v)), body },
  };
}

/**
 * Decides one CheckRequest from `peer` and records it (metrics, access line). A peer
 * outside `extAuthz.trustedProxies` is refused with PERMISSION_DENIED as a CheckResponse,
 * not as a failed call: Envoy reads a failed call as an error, which `failure_mode_allow`
 * would let through.
 */
export async function answerCheck(core: GatewayCore, startedTrusted: AddressMatcher, req: CheckRequest, peer: string | undefined): Promise<CheckResponse> {
  const ex = new Exchange(core.config, core, EXT_AUTHZ_LISTENER);
  let rawHeaders: readonly string[] = [];
  const refused = await ex.judge((config, check: CheckRequest) => {
    // A reload that removes the `extAuthz` block cannot stop the listener: keep the list it started with.
    const trusted = config.extAuthzTrusted ?? startedTrusted;
    if (!trusted(peer)) throw new GatewayError('untrusted_peer');
    const facts = checkFacts(config, check, peer);
    rawHeaders = facts.rawHeaders;
    return facts;
  }, req);
  const answer = refused === null ? allowedResponse(ex.config, ex.ctx, rawHeaders, ex.requestId) : deniedResponse(refused, ex.idHeader());
  ex.done(refused === null ? 200 : refused.status);
  return answer;
}

/** The running gRPC listener. */
export class ExtAuthzListener {
  private constructor(private readonly server: grpc.Server, readonly address: string) {}

  /** Builds the services and binds `host:port` (h2c); resolves once it accepts calls. */
  static async start(core: GatewayCore, listen: { host: string; port: number }): Promise<ExtAuthzListener> {
    const started = core.config.extAuthzTrusted;
    if (!started) throw new Error('extAuthz listener started without an extAuthz block');
    const def = loadExtAuthzProtos();
    const server = new grpc.Server();
    server.addService(serviceOf(def, AUTHORIZATION_SERVICE), {
      Check: (call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>) => {
        answerCheck(core, started, call.request, peerAddress(call.getPeer())).then(
          (answer) => callback(null, answer),
          // answerCheck turns every failure into a denial; this is its own bug: fail closed, say nothing.
          () => callback({ code: grpc.status.INTERNAL, details: 'Internal error' }),
        );
      },
    });
    server.addService(serviceOf(def, HEALTH_SERVICE), {
      // grpc/grpc doc/health-checking.md: "" is the server as a whole; an unknown service is NOT_FOUND.
      Check: (call: grpc.ServerUnaryCall<{ service?: string }, { status: number }>, callback: grpc.sendUnaryData<{ status: number }>) => {
        const service = call.request.service ?? '';
        if (service !== '' && service !== AUTHORIZATION_SERVICE) return callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
        callback(null, { status: core.readiness().ready ? SERVING : NOT_SERVING });
      },
    });
    const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${host}:${listen.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    return new ExtAuthzListener(server, `${host}:${port}`);
  }

  /** Stops accepting calls; calls in flight get up to `graceSec` to finish, then are cut. */
  close(graceSec: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const forced = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceSec * 1000);
      forced.unref();
      this.server.tryShutdown(() => {
        clearTimeout(forced);
        resolve();
      });
    });
  }
}
