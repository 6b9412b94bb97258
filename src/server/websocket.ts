/**
 * Upgrade requests on the proxy listener. A WebSocket upgrade is judged like any request
 * ({@link Exchange.judge}: path rules, route, token, policy) before anything is sent
 * upstream; only a `websocket: true` route may upgrade, and only with GET. Any other
 * upgrade (`h2c`, which the JDK's HttpClient offers on every cleartext call) is ignored,
 * as RFC 9110 §7.8 allows: the request is served as the HTTP/1.1 request it also is.
 * The upstream receives the upgrade with the same scrubbed headers plus the identity
 * headers; once it answers 101 the two sockets are piped byte for byte (frames are not
 * parsed, so extensions and subprotocols pass through and backpressure is TCP's).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { CompiledConfig } from '../config/compile.js';
import { GatewayError } from '../errors.js';
import { connectionTokens, HOP_BY_HOP } from '../http/headers.js';
import { certSourceOf, clientFacts, clientUpstreamHeaders } from './forwarded.js';
import type { GatewayCore } from './core.js';
import { writeRawError } from './error-response.js';
import { upstreamError } from './forward.js';
import { Exchange } from './exchange.js';
import { afterResponses } from './listener.js';
import { REQUEST_ID_HEADER } from './request-id.js';

/** Open upgraded connections, so shutdown can end them at the grace deadline. */
export class UpgradeTracker {
  private readonly open = new Set<Duplex>();

  /** Tracks `socket` until it closes. */
  add(socket: Duplex): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
  }

  /** Ends every open socket (FIN), destroying those that do not close within `ms`. */
  endAll(ms = 1000): void {
    for (const s of this.open) {
      s.end();
      const t = setTimeout(() => s.destroy(), ms);
      t.unref();
      s.once('close', () => clearTimeout(t));
    }
  }
}

/** Serializes raw header pairs into header lines (the upstream's 101 answer, verbatim). */
function headerLines(raw: readonly string[]): string {
  let s = '';
  for (let i = 0; i < raw.length; i += 2) s += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return s;
}

/** Whether an `Upgrade` header offers the WebSocket protocol (RFC 6455 §4.1). */
function offersWebSocket(upgrade: string | undefined): boolean {
  return upgrade !== undefined && upgrade.split(',').some((p) => p.trim().toLowerCase() === 'websocket');
}

/** `Connection` tokens that belong to an upgrade offer the gateway ignores. */
const UPGRADE_TOKENS = new Set(['upgrade', 'http2-settings']);

/**
 * The request head again, without its upgrade offer (`Upgrade`, `HTTP2-Settings`, and
 * those two in `Connection`), byte for byte otherwise (Node reads header bytes as latin1).
 */
function headWithoutUpgrade(req: http.IncomingMessage): Buffer {
  let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (name === 'upgrade' || name === 'http2-settings') continue;
    let value = raw[i + 1];
    if (name === 'connection') {
      value = value.split(',').map((t) => t.trim()).filter((t) => t && !UPGRADE_TOKENS.has(t.toLowerCase())).join(', ');
      if (!value) continue;
    }
    text += `${raw[i]}: ${value}\r\n`;
  }
  return Buffer.from(`${text}\r\n`, 'latin1');
}

/**
 * Serves an upgrade request the gateway does not take as a plain HTTP/1.1 request
 * (RFC 9110 §7.8: a server may ignore `Upgrade`). Node has already handed the connection
 * over as upgraded, so its head goes back in front of the unread bytes (the body, any
 * pipelined request) and the connection is given to the server again, as Node documents
 * for injected connections: it is parsed afresh and keeps its keep-alive.
 */
function serveWithoutUpgrade(server: http.Server, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  // Answers to earlier requests on this connection are still Node's to finish (and to
  // order): the connection starts afresh only once they are written.
  afterResponses(socket as Socket, () => {
    if (socket.destroyed) return;
    if (head.length) socket.unshift(head);
    socket.unshift(headWithoutUpgrade(req));
    // A TLS connection re-enters past its handshake (`secureConnection`); `connection`
    // would start a TLS handshake on it again.
    server.emit((socket as { encrypted?: boolean }).encrypted === true ? 'secureConnection' : 'connection', socket);
  });
}

/**
 * Returns the server `upgrade` listener. Each WebSocket upgrade is recorded once, with
 * its final status (101 when piped), like any request.
 */
export function upgradeHandler(core: GatewayCore, server: http.Server, tracker: UpgradeTracker) {
  const certs = certSourceOf(core.config); // the listener's, as built (server.tls is restart-only)
  const factsOf = (config: CompiledConfig, req: http.IncomingMessage) => clientFacts(config, req, undefined, undefined, certs);
  return (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!offersWebSocket(req.headers.upgrade)) return serveWithoutUpgrade(server, req, socket, head);
    const ex = new Exchange(core.config, core); // the upgrade finishes on the config it started with
    socket.on('error', () => socket.destroy());
    const fail = (err: GatewayError) => {
      ex.error = err;
      writeRawError(socket, err, ex.idHeader());
      ex.done(err.status);
    };
    void (async () => {
      const refused = await ex.judge(factsOf, req);
      if (refused !== null) return fail(refused);
      const { config, ctx } = ex;
      const route = ctx.route!;
      // Only `websocket: true` routes upgrade, and only with GET (RFC 6455 §4.1).
      if (!route.websocket || req.method !== 'GET') return fail(new GatewayError('upgrade_refused'));
      const headers = clientUpstreamHeaders(config, route, req, ctx.headers, certs); // exactly as the proxy sends them
      // RFC 9110 §7.8: hop-by-hop Upgrade/Connection were stripped; set them for this hop.
      headers.connection = 'Upgrade';
      headers.upgrade = 'websocket';
      ex.forwarding(headers);
      // The origin from config, the path and query as the proxy forwards them: a URL string
      // would be re-encoded by WHATWG URL parsing (`'` in a query becomes `%27`). An https
      // upstream is verified against the trust store, like every forwarded request.
      const target = route.upstreamTarget;
      const upReq = (target.protocol === 'https:' ? https : http).request({ ...target, path: ctx.upstreamPath + ctx.search, method: 'GET', headers, agent: false });
      const timer = setTimeout(() => upReq.destroy(Object.assign(new Error('no answer to the upgrade in time'), { code: 'ETIMEDOUT' })), config.server.upstreamTimeoutMs);
      let upgraded = false;
      socket.once('close', () => {
        if (!upgraded) upReq.destroy();
      });
      upReq.on('error', (e) => {
        clearTimeout(timer);
        if (socket.destroyed) return;
        fail(upstreamError(e, route.upstreamOrigin, core.logger));
      });
      upReq.on('response', (res) => {
        // The upstream refused the upgrade: relay its answer and close.
        clearTimeout(timer);
        ex.onUpstreamResponse();
        if ((res.statusCode ?? 0) < 200) {
          // A 101 without `Upgrade` (or another 1xx) is neither a switch nor a refusal: 502, no tunnel.
          res.resume();
          fail(new GatewayError('upstream_unavailable'));
          return;
        }
        // Name/value pairs as the upstream sent them, minus hop-by-hop ones, those its
        // Connection lists (RFC 9110 §7.6.1) and Content-Length (the gateway frames the body).
        const listed = connectionTokens(res.headers.connection);
        const raw: string[] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          const n = res.rawHeaders[i].toLowerCase();
          if (HOP_BY_HOP.has(n) || listed?.has(n) || n === 'content-length' || n === REQUEST_ID_HEADER) continue;
          raw.push(res.rawHeaders[i], res.rawHeaders[i + 1]);
        }
        raw.push(REQUEST_ID_HEADER, ex.requestId);
        const chunks: Buffer[] = [];
        res.on('error', () => socket.destroy());
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const lines = headerLines(raw);
          socket.end(Buffer.concat([
            Buffer.from(`HTTP/1.1 ${res.statusCode} ${res.statusMessage ?? ''}\r\n${lines}content-length: ${body.length}\r\nconnection: close\r\n\r\n`, 'latin1'),
            body,
          ]));
          ex.done(res.statusCode ?? 502);
        });
      });
      upReq.on('upgrade', (res, upSocket, upHead) => {
        clearTimeout(timer);
        upgraded = true;
        ex.onUpstreamResponse();
        if (socket.destroyed) {
          upSocket.destroy();
          return;
        }
        tracker.add(socket);
        tracker.add(upSocket);
        upSocket.on('error', () => socket.destroy());
        socket.on('error', () => upSocket.destroy());
        upSocket.once('close', () => socket.end());
        socket.once('close', () => upSocket.end());
        socket.write(`HTTP/1.1 101 ${res.statusMessage ?? 'Switching Protocols'}\r\n${headerLines(res.rawHeaders)}\r\n`);
        if (upHead.length) socket.write(upHead);
        if (head.length) upSocket.write(head);
        upSocket.pipe(socket);
        socket.pipe(upSocket);
        ex.done(101);
      });
      upReq.end();
    })().catch((e: unknown) => fail(ex.bug(e)));
  };
}
