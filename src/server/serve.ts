/**
 * The proxy port's server, handed to Fastify through `serverFactory`: one Node HTTP/1.1
 * server (`https` with `server.tls`) that owns the port, the timeouts and the parser
 * limits, and, with `server.http2`, an HTTP/2 server that never listens. Each connection
 * is given to one of them once, at its start:
 *
 * - cleartext: by its first bytes — the HTTP/2 connection preface (RFC 9113 §3.4, "prior
 *   knowledge") goes to HTTP/2, anything else to HTTP/1.1, as Envoy's codec sniffs;
 * - TLS: by the protocol ALPN chose (`h2` or `http/1.1`).
 *
 * Both servers' requests enter the same Fastify handler, so HTTP/2 requests go through the
 * one request path (src/server/proxy.ts). Shutdown reaches HTTP/2 sessions through the
 * same calls as HTTP/1.1 connections: closing idle connections sends GOAWAY (streams in
 * flight finish), closing all of them destroys the sessions.
 */
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { CompiledConfig } from '../config/compile.js';
import { guardSession, type H2Abuse } from './h2-guard.js';

/** RFC 9113 §3.4: what an HTTP/2 client sends first on a connection it knows speaks HTTP/2. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
type ConnectionListener = (socket: Socket) => void;

/** What the server needs besides the config: the TLS options of the moment (src/server/tls.ts). */
export interface ServeOptions {
  /** https options (key, cert, ca, requestCert, ...) when `server.tls` is set; null for cleartext. */
  tls: https.ServerOptions | null;
  /** Hears an HTTP/2 session closed for abuse (src/server/h2-guard.ts), with the peer's address. */
  onH2Abuse?: (why: H2Abuse, peer: string | undefined) => void;
  /**
   * Answers an HTTP/2 CONNECT (RFC 9113 §8.5: no `:path`, so it never reaches the router).
   * Absent: Node's bare 405.
   */
  onH2Connect?: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;
}

/**
 * HTTP/2 settings and limits. The header list is bounded by the same `maxHeaderBytes` as
 * HTTP/1.1 (decoded size: Node answers 431 beyond it, however small the HPACK encoding),
 * concurrent streams by `maxConcurrentStreams`. nghttp2 (≥ 1.61) refuses malformed
 * requests (connection-specific headers, uppercase names, pseudo-header faults) with a
 * stream reset and caps CONTINUATION frames per header block (CVE-2024-27316); what it
 * leaves open — rapid reset, SETTINGS and PING floods, a SETTINGS never acknowledged — is
 * bounded per session in src/server/h2-guard.ts.
 */
function http2Options(config: CompiledConfig): http2.ServerOptions {
  const s = config.server;
  return {
    settings: {
      maxConcurrentStreams: s.maxConcurrentStreams,
      maxHeaderListSize: s.maxHeaderBytes,
      enablePush: false,
    },
    // Entries are bounded by maxHeaderListSize: never cut a header list short by count
    // (a duplicate Authorization must be seen, as on HTTP/1.1).
    maxHeaderListPairs: 4096,
    // Node's defaults, spelled out. Rejected streams: those Node itself refuses (session
    // memory), consecutively; invalid frames: per session; outstanding pings: those the
    // gateway sends; maxSettings: entries in one SETTINGS frame.
    maxSessionRejectedStreams: 100,
    maxSessionInvalidFrames: 1000,
    maxOutstandingPings: 10,
    maxSettings: 32,
    // Per session, in MB: what a peer can make the gateway hold in frames and header tables.
    maxSessionMemory: 10,
  } as http2.ServerOptions;
}

/**
 * Calls `then(isHttp2)` once the connection's first bytes tell: the HTTP/2 preface, or
 * anything that differs from it (an HTTP/1.1 request line differs at its first byte). The
 * bytes read go back in front of the stream for whichever server takes it.
 */
function sniffPreface(socket: Socket, timeoutMs: number, then: (isHttp2: boolean) => void): void {
  let seen: Buffer | null = null;
  // Until a server owns the connection, nothing else times it out or hears its errors.
  const gone = (): void => void socket.destroy();
  const timer = setTimeout(gone, timeoutMs);
  const onData = (chunk: Buffer): void => {
    seen = seen === null ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, PREFACE.length);
    if (seen.compare(PREFACE, 0, n, 0, n) !== 0) finish(false);
    else if (seen.length >= PREFACE.length) finish(true);
  };
  const finish = (isHttp2: boolean): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', gone);
    socket.off('error', gone);
    socket.off('close', stop);
    socket.pause();
    socket.unshift(seen!);
    then(isHttp2);
  };
  const stop = (): void => clearTimeout(timer);
  socket.on('data', onData);
  socket.on('end', gone);
  socket.on('error', gone);
  socket.on('close', stop);
}

/** Takes over the server's own listener for `event`, so `route` decides where each socket goes. */
function takeOver(server: http.Server, event: 'connection' | 'secureConnection', route: (socket: Socket, own: ConnectionListener) => void): void {
  const own = server.listeners(event) as ConnectionListener[];
  server.removeAllListeners(event);
  const asServer = (socket: Socket): void => { for (const l of own) l.call(server, socket); };
  server.on(event, (socket: Socket) => route(socket, asServer));
}

/**
 * Adds HTTP/2 to `server`: an inner HTTP/2 server whose requests go to `handler`, the
 * per-connection choice of protocol, and its sessions in the server's shutdown calls.
 */
function addHttp2(server: http.Server, handler: Handler, config: CompiledConfig, secure: boolean, opts: ServeOptions): http2.Http2Server {
  const h2 = http2.createServer(http2Options(config));
  h2.on('request', handler as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
  if (opts.onH2Connect) h2.on('connect', opts.onH2Connect);
  const onAbuse = opts.onH2Abuse;
  const sessions = new Set<http2.ServerHttp2Session>();
  const idleMs = config.server.keepAliveTimeoutMs;
  h2.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    // Idle for keepAliveTimeoutMs (no frame either way): GOAWAY, as an idle HTTP/1.1 connection is closed.
    session.setTimeout(idleMs, () => session.close());
    const peer = session.socket?.remoteAddress;
    guardSession(session, config.server.headersTimeoutMs, (why) => onAbuse?.(why, peer));
  });
  // A session error (a protocol fault, a reset socket) closes that session only.
  h2.on('sessionError', () => {});

  if (secure) {
    takeOver(server, 'secureConnection', (socket, h1) => {
      if ((socket as TLSSocket).alpnProtocol === 'h2') h2.emit('connection', socket);
      else h1(socket);
    });
  } else {
    takeOver(server, 'connection', (socket, h1) => sniffPreface(socket, config.server.headersTimeoutMs, (isHttp2) => {
      if (isHttp2) return void h2.emit('connection', socket);
      h1(socket);
      socket.resume(); // the bytes put back are read through Node's HTTP/1.1 parser
    }));
  }

  const closeIdle = server.closeIdleConnections.bind(server);
  server.closeIdleConnections = () => {
    closeIdle();
    for (const s of sessions) s.close(); // GOAWAY: no new streams, those in flight finish
  };
  const closeAll = server.closeAllConnections.bind(server);
  server.closeAllConnections = () => {
    closeAll();
    for (const s of sessions) s.destroy();
  };
  return h2;
}

/**
 * The `serverFactory` of the proxy's Fastify instance. `fastifyOptions` are the options
 * Fastify was given (src/server/listener.ts): the HTTP/1.1 limits and timeouts.
 */
export function proxyServerFactory(config: CompiledConfig, opts: ServeOptions) {
  return (handler: Handler, fastifyOptions: Record<string, unknown>): http.Server => {
    const h1 = (fastifyOptions.http ?? {}) as http.ServerOptions;
    const secure = opts.tls !== null;
    const server = secure
      ? https.createServer({ ...h1, ...opts.tls, ALPNProtocols: config.server.http2 ? ['h2', 'http/1.1'] : ['http/1.1'] }, handler)
      : http.createServer(h1, handler);
    server.keepAliveTimeout = fastifyOptions.keepAliveTimeout as number;
    server.requestTimeout = fastifyOptions.requestTimeout as number;
    if (config.server.http2) addHttp2(server, handler, config, secure, opts);
    return server;
  };
}
