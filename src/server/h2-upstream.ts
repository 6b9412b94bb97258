/**
 * Forwarding to `upstreamProtocol: h2` upstreams (gRPC services) over pooled node:http2
 * sessions: h2c with prior knowledge for `http://`, ALPN `h2` with the certificate
 * verified as for HTTP/1.1 for `https://`. Each origin has at most `connections`
 * sessions; a request takes the least busy one, and a new one opens while every session
 * is at its peer's stream limit. A session that says GOAWAY, fails or closes leaves the
 * pool at once: the next request opens a fresh one.
 *
 * Streams flow in both directions with HTTP/2 flow control: the client's body is piped
 * into the upstream stream, the upstream's data is written to the client and reading
 * pauses while the client's side is full, so a slow reader holds the upstream back.
 * Trailers (`grpc-status`, `grpc-message`, `-bin` metadata) are passed on unchanged; an
 * upstream trailers-only answer stays trailers-only for an HTTP/2 client. A client that
 * leaves cancels the upstream stream (RST_STREAM CANCEL); a gRPC call's `grpc-timeout`
 * goes upstream and is enforced here too: past it the upstream stream is cancelled and
 * the client gets DEADLINE_EXCEEDED.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError } from '../errors.js';
import { decorateForwarded } from '../pipeline/cors.js';
import { isGrpcContentType } from '../http/headers.js';
import { clientGone, clientStream, writeErrorRaw, writeGrpcStatus } from './error-response.js';
import { responseHeaders, upstreamError, type ForwardObserver, type ForwardRequest, type UpstreamPoolOptions, CLIENT_CLOSED } from './forward.js';

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM: REFUSED_STREAM, HTTP2_HEADER_STATUS } = http2.constants;
const END_STREAM = http2.constants.NGHTTP2_FLAG_END_STREAM;

/** Streams a session is assumed to take before the peer's SETTINGS say (RFC 9113 §6.5.2 suggests ≥ 100). */
const ASSUMED_STREAMS = 100;
/** An idle session is closed after this long (as undici's keepAliveTimeout). */
const IDLE_MS = 30_000;

/** gRPC `grpc-timeout` (PROTOCOL-HTTP2.md): up to 8 digits and a unit; its value in ms, or null. */
export function grpcTimeoutMs(value: string | string[] | undefined): number | null {
  if (typeof value !== 'string') return null;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (m === null) return null;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'H': return n * 3_600_000;
    case 'M': return n * 60_000;
    case 'S': return n * 1000;
    case 'm': return n;
    case 'u': return n / 1000;
    default: return n / 1_000_000;
  }
}

/** One pooled session and the streams open on it. */
interface Pooled {
  session: ClientHttp2Session;
  active: number;
  /** The peer's first SETTINGS arrived (its stream limit is known), or the session ended. */
  settled: boolean;
  /** Requests waiting for `settled`. */
  waiting: Array<() => void>;
  /** Why the session failed, when it did (the cause logged with the 502). */
  error: Error | null;
}

/** The sessions to one origin. */
class OriginPool {
  private readonly sessions: Pooled[] = [];
  /** `:scheme` of requests to this origin. */
  readonly scheme: 'http' | 'https';

  constructor(private readonly origin: string, private readonly max: number, private readonly connectTimeoutMs: number) {
    this.scheme = origin.startsWith('https:') ? 'https' : 'http';
  }

  /** The least busy session with room, or a new one while under `max`, or the least busy. */
  take(): Pooled {
    let best: Pooled | null = null;
    for (const p of this.sessions) if (best === null || p.active < best.active) best = p;
    const room = best !== null && best.active < (best.session.remoteSettings.maxConcurrentStreams ?? ASSUMED_STREAMS);
    if (best === null || (!room && this.sessions.length < this.max)) best = this.open();
    best.active++;
    if (best.active === 1) best.session.ref();
    return best;
  }

  /** A stream on `p` ended. */
  release(p: Pooled): void {
    p.active--;
    if (p.active === 0 && !p.session.destroyed) p.session.unref(); // an idle pool keeps no process alive
  }

  private open(): Pooled {
    const session = http2.connect(this.origin, { settings: { enablePush: false } });
    const p: Pooled = { session, active: 0, settled: false, waiting: [], error: null };
    this.sessions.push(p);
    // Streams opened before the peer's SETTINGS could exceed its limit and be refused:
    // requests wait for them (nghttp2 then queues streams beyond the limit itself).
    const settle = (): void => {
      if (p.settled) return;
      p.settled = true;
      for (const go of p.waiting.splice(0)) go();
    };
    session.once('remoteSettings', settle);
    session.once('close', settle);
    const leave = (): void => {
      const i = this.sessions.indexOf(p);
      if (i !== -1) this.sessions.splice(i, 1);
    };
    // A session that will take no new streams, or is gone, leaves the pool; its streams
    // in flight end on their own (those past the GOAWAY's last id fail with REFUSED_STREAM).
    session.once('goaway', leave);
    session.once('close', leave);
    session.on('error', (err) => { // each stream on it reports the error too
      p.error = err;
      leave();
    });
    const connectTimer = setTimeout(() => session.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), this.connectTimeoutMs);
    session.once('connect', () => clearTimeout(connectTimer));
    session.once('close', () => clearTimeout(connectTimer));
    session.setTimeout(IDLE_MS, () => { if (p.active === 0) session.close(); });
    return p;
  }

  close(): void {
    for (const p of this.sessions.splice(0)) p.session.close();
  }
}

/**
 * Request headers as HTTP/2 sends them: pseudo-headers first, the upstream's `Host` as
 * `:authority` (RFC 9113 §8.3.1) and no `host`.
 */
function requestHeaders(fwd: ForwardRequest, scheme: string, trailers: boolean): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': fwd.method, ':path': fwd.path, ':scheme': scheme, ':authority': fwd.headers.host };
  for (const name in fwd.headers) if (name !== 'host') out[name] = fwd.headers[name];
  // `te: trailers` is the one TE value HTTP/2 carries (RFC 9113 §8.2.2); gRPC servers look for it.
  if (trailers) out.te = 'trailers';
  return out;
}

/** Whether the client's `TE` asks for trailers (gRPC clients send `te: trailers`). */
function wantsTrailers(te: string | string[] | undefined): boolean {
  return typeof te === 'string' && te.split(',').some((t) => t.trim().toLowerCase() === 'trailers');
}

/** Response or trailer headers minus pseudo-headers and hop-by-hop ones. */
function withoutPseudo(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const plain: IncomingHttpHeaders = {};
  for (const name in headers) if (name.charCodeAt(0) !== 0x3a /* : */) plain[name] = headers[name];
  return responseHeaders(plain);
}

/** One request on its way to an h2 upstream. */
class H2Exchange {
  private stream: ClientHttp2Stream | null = null;
  private pooled: Pooled | null = null;
  private started = false;
  private finished = false;
  private headersTimer: NodeJS.Timeout | null = null;
  private deadlineTimer: NodeJS.Timeout | null = null;
  private readonly grpc: boolean;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly fwd: ForwardRequest,
    private readonly observer: ForwardObserver,
    private readonly opts: UpstreamPoolOptions,
    private readonly pool: OriginPool,
  ) {
    this.grpc = isGrpcContentType(req.headers['content-type']);
  }

  start(): void {
    const { req, res } = this;
    res.on('close', this.onClientClose);
    // Gone already (an HTTP/2 stream reset while the request was decided): nothing to open.
    if (clientGone(res)) return this.onClientClose();
    this.headersTimer = setTimeout(() => this.timeout(new GatewayError('upstream_timeout')), this.opts.timeoutMs);
    const deadline = this.grpc ? grpcTimeoutMs(req.headers['grpc-timeout']) : null;
    if (deadline !== null) this.deadlineTimer = setTimeout(() => this.deadlineExceeded(), Math.max(deadline, 1));
    this.send(true);
  }

  /** Opens the upstream stream on a pooled session (once its SETTINGS are known). */
  private send(mayRetry: boolean): void {
    const p = this.pool.take();
    this.pooled = p;
    if (p.settled) this.open(p, mayRetry);
    else p.waiting.push(() => this.open(p, mayRetry));
  }

  private open(p: Pooled, mayRetry: boolean): void {
    if (this.finished) return;
    const { req, res, fwd } = this;
    let stream: ClientHttp2Stream;
    try {
      const headers = requestHeaders(fwd, this.pool.scheme, this.grpc || wantsTrailers(req.headers.te));
      stream = p.session.request(headers, { endStream: fwd.body === null });
    } catch (e) {
      // The session failed before the request could go (its cause is logged), or a header
      // node:http2 refuses to send.
      return this.fail(upstreamError(p.error ?? (e as Error), fwd.origin, this.opts.log));
    }
    this.stream = stream;
    const mine = (): boolean => this.stream === stream;
    stream.on('response', (headers, flags) => { if (mine()) this.onResponse(headers, flags); });
    stream.on('data', (chunk: Buffer) => {
      if (!res.write(chunk)) {
        if (clientGone(res)) return this.onClientClose();
        stream.pause();
        res.once('drain', () => stream.resume());
      }
    });
    stream.on('trailers', (trailers) => {
      const t = withoutPseudo(trailers);
      if (clientStream(res) !== null || res.getHeader('transfer-encoding') === 'chunked' || !res.hasHeader('content-length')) res.addTrailers(t);
    });
    stream.on('end', () => { if (mine()) this.end(); });
    const broken = (err: Error): void => {
      if (!mine() || this.finished) return;
      // RFC 9113 §8.7: REFUSED_STREAM means the upstream did not process the request (a
      // GOAWAY race, a stream limit): one more try on another session when the body can be sent again.
      if (mayRetry && !this.started && stream.rstCode === REFUSED_STREAM && (fwd.body === null || typeof fwd.body === 'string')) {
        this.stream = null;
        this.pool.release(p);
        this.pooled = null;
        return this.send(false);
      }
      this.onError(err);
    };
    stream.on('error', broken);
    // Closed without an end: RST_STREAM from the upstream, or the session gone. (The error,
    // with its stack, is made only then: every stream closes.)
    stream.on('close', () => {
      if (mine() && !this.finished) broken(Object.assign(new Error(`stream reset (${stream.rstCode})`), { code: 'ECONNRESET' }));
    });
    if (typeof fwd.body === 'string') stream.end(fwd.body);
    else if (fwd.body !== null) fwd.body.pipe(stream);
  }

  private readonly onClientClose = (): void => {
    if (this.finished) return;
    // The client left (or cancelled its stream) before the answer was complete.
    this.stream?.close(NGHTTP2_CANCEL);
    this.settle(this.started ? this.res.statusCode : CLIENT_CLOSED);
  };

  private onResponse(headers: IncomingHttpHeaders, flags: number): void {
    if (this.finished) return;
    this.clearHeadersTimer();
    this.started = true;
    this.observer.onUpstreamResponse();
    const status = Number(headers[HTTP2_HEADER_STATUS]);
    const out = withoutPseudo(headers);
    if (this.fwd.responseHeaders) for (const name in this.fwd.responseHeaders) out[name] = this.fwd.responseHeaders[name];
    if (this.fwd.cors) decorateForwarded(out, this.fwd.cors);
    const h2 = clientStream(this.res);
    try {
      if (h2 !== null && (flags & END_STREAM) !== 0) {
        // Trailers-only (a gRPC status with no message): the same single HEADERS frame.
        h2.respond({ ...out, ':status': status }, { endStream: true });
        this.res.statusCode = status;
        return;
      }
      if (h2 === null && !this.req.complete) out.connection = 'close';
      this.res.writeHead(status, out);
    } catch {
      // An invalid status or header value from the upstream: 502, and stop reading it.
      this.stream?.close(NGHTTP2_CANCEL);
      this.started = false;
      this.fail(new GatewayError('upstream_unavailable'));
    }
  }

  private end(): void {
    if (this.finished) return;
    if (!this.started) return this.onError(new Error('upstream ended without a response'));
    if (!this.res.writableEnded) this.res.end();
    this.settle(this.res.statusCode);
  }

  private onError(err: Error): void {
    if (this.finished) return;
    if (this.started || this.res.headersSent) {
      // Mid-answer: the client must see it cut, not complete.
      this.res.destroy();
      return this.settle(this.res.statusCode);
    }
    if (clientGone(this.res)) return this.settle(CLIENT_CLOSED);
    this.fail(upstreamError(err, this.fwd.origin, this.opts.log));
  }

  private timeout(err: GatewayError): void {
    if (this.finished || this.started) return;
    this.stream?.close(NGHTTP2_CANCEL);
    this.opts.log?.warn({ upstream: this.fwd.origin, status: err.status, cause: 'timeout' }, 'upstream failed');
    this.fail(err);
  }

  /** The gRPC deadline passed: cancel upstream, and the client gets DEADLINE_EXCEEDED (4). */
  private deadlineExceeded(): void {
    if (this.finished) return;
    this.stream?.close(NGHTTP2_CANCEL);
    const res = this.res;
    if (!res.headersSent && !clientGone(res)) {
      writeGrpcStatus(res, 4, 'Deadline Exceeded', this.fwd.responseHeaders ?? {});
    } else if (!res.writableEnded && !clientGone(res)) {
      res.addTrailers({ 'grpc-status': '4', 'grpc-message': 'Deadline%20Exceeded' });
      res.end();
    }
    this.settle(res.statusCode);
  }

  private fail(err: GatewayError): void {
    this.observer.onUpstreamError(err);
    if (!this.res.headersSent && !clientGone(this.res)) writeErrorRaw(this.res, err, this.fwd.cors ?? null, this.fwd.responseHeaders);
    else this.res.destroy();
    this.settle(this.res.headersSent ? this.res.statusCode : err.status);
  }

  private clearHeadersTimer(): void {
    if (this.headersTimer !== null) clearTimeout(this.headersTimer);
    this.headersTimer = null;
  }

  /** Recorded once; timers and the pooled stream slot released. */
  private settle(status: number): void {
    if (this.finished) return;
    this.finished = true;
    this.clearHeadersTimer();
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.res.off('close', this.onClientClose);
    if (this.pooled !== null) this.pool.release(this.pooled);
    this.observer.onResponseDone(status);
  }
}

/** The pools to every h2 upstream origin. */
export class H2UpstreamPool {
  private readonly origins = new Map<string, OriginPool>();

  constructor(private readonly opts: UpstreamPoolOptions) {}

  /** Sends `fwd` to its h2 upstream and streams the answer into `res`. */
  forward(req: IncomingMessage, res: ServerResponse, fwd: ForwardRequest, observer: ForwardObserver): void {
    let pool = this.origins.get(fwd.origin);
    if (pool === undefined) {
      pool = new OriginPool(fwd.origin, this.opts.connections, Math.min(this.opts.timeoutMs, 10_000));
      this.origins.set(fwd.origin, pool);
    }
    new H2Exchange(req, res, fwd, observer, this.opts, pool).start();
  }

  /** Closes every session (GOAWAY; streams in flight finish). */
  close(): void {
    for (const pool of this.origins.values()) pool.close();
    this.origins.clear();
  }
}
