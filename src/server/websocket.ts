/**
 * WebSocket upgrades on the proxy listener. An upgrade request runs the same
 * {@link decide} as any request (path rules, route, token, policy) before anything is
 * sent upstream; only a `websocket: true` route may upgrade, and only to `websocket`.
 * The upstream receives the upgrade with the same scrubbed headers plus the identity
 * headers; once it answers 101 the two sockets are piped byte for byte (frames are not
 * parsed, so extensions and subprotocols pass through and backpressure is TCP's).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { Duplex } from 'node:stream';
import { GatewayError } from '../errors.js';
import { connectionTokens, HOP_BY_HOP } from '../pipeline/mutate.js';
import { clientFacts, clientUpstreamHeaders } from './forwarded.js';
import { decide, newContext } from '../pipeline/run.js';
import type { GatewayCore } from '../gateway.js';
import type { RequestState } from './proxy.js';
import { toGatewayError, writeRawError } from './error-response.js';

/** Open upgraded connections, so shutdown can end them at the grace deadline. */
export class UpgradeTracker {
  private readonly open = new Set<Duplex>();

  /** Tracks `socket` until it closes. */
  add(socket: Duplex): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
  }

  /** Number of open upgraded sockets (both legs counted). */
  get size(): number {
    return this.open.size;
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

/**
 * Returns the server `upgrade` listener. `done(state, status)` is called once per upgrade
 * request, with the final status (101 when piped), for the access log and metrics.
 */
export function upgradeHandler(core: GatewayCore, tracker: UpgradeTracker, done: (state: RequestState, status: number) => void) {
  return (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    const config = core.config; // the upgrade finishes on the config it started with
    const ctx = newContext();
    const state: RequestState = { ctx, config, start: performance.now(), error: null };
    socket.on('error', () => socket.destroy());
    const fail = (e: unknown) => {
      state.error = toGatewayError(e);
      writeRawError(socket, state.error);
      done(state, state.error.status);
    };
    void (async () => {
      await decide(config, clientFacts(config, req), core.verifiers, ctx);
      core.metrics.authDuration.observe((performance.now() - state.start) / 1000);
      const route = ctx.route!;
      // Only `websocket: true` routes upgrade, and only to the WebSocket protocol (RFC 6455 §4.1).
      if (!route.websocket || String(req.headers.upgrade).toLowerCase() !== 'websocket' || req.method !== 'GET') {
        throw new GatewayError('upgrade_refused');
      }
      const headers = clientUpstreamHeaders(config, route, req, ctx.headers); // exactly as the proxy sends them
      // RFC 9110 §7.8: hop-by-hop Upgrade/Connection were stripped; set them for this hop.
      headers.connection = 'Upgrade';
      headers.upgrade = 'websocket';
      const upstart = performance.now();
      // The origin from config, the path and query as the proxy forwards them: a URL string
      // would be re-encoded by WHATWG URL parsing (`'` in a query becomes `%27`). An https
      // upstream is verified against the trust store, like every forwarded request.
      const target = route.upstreamTarget;
      const upReq = (target.protocol === 'https:' ? https : http).request({ ...target, path: ctx.upstreamPath + ctx.search, method: 'GET', headers, agent: false });
      const timer = setTimeout(() => upReq.destroy(new GatewayError('upstream_timeout')), config.server.upstreamTimeoutMs);
      let upgraded = false;
      socket.once('close', () => {
        if (!upgraded) upReq.destroy();
      });
      upReq.on('error', (e) => {
        clearTimeout(timer);
        if (socket.destroyed) return;
        fail(e instanceof GatewayError ? e : new GatewayError('upstream_unavailable'));
      });
      upReq.on('response', (res) => {
        // The upstream refused the upgrade: relay its answer and close.
        clearTimeout(timer);
        core.metrics.upstreamDuration.labels(route.id).observe((performance.now() - upstart) / 1000);
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
          if (HOP_BY_HOP.has(n) || listed?.has(n) || n === 'content-length') continue;
          raw.push(res.rawHeaders[i], res.rawHeaders[i + 1]);
        }
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
          done(state, res.statusCode ?? 502);
        });
      });
      upReq.on('upgrade', (res, upSocket, upHead) => {
        clearTimeout(timer);
        upgraded = true;
        core.metrics.upstreamDuration.labels(route.id).observe((performance.now() - upstart) / 1000);
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
        done(state, 101);
      });
      upReq.end();
    })().catch(fail);
  };
}
