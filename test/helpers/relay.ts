/**
 * A counting HTTP relay in front of another loopback HTTP server: counts the
 * requests it forwards (e.g. introspection calls reaching the IdP) and can
 * simulate the target going down.
 *
 * @module
 */
import * as http from 'node:http';
import { listenLoopback } from './ports.js';

/** A running relay. */
export interface Relay {
  /** `http://127.0.0.1:PORT`; use it in place of the target's origin (paths are forwarded unchanged). */
  url: string;
  /** Number of requests forwarded to the target whose path starts with `pathPrefix` (all when omitted). */
  count(pathPrefix?: string): number;
  /** Number of requests received, forwarded or not (includes those dropped while `down`). */
  attempts(pathPrefix?: string): number;
  /** When true, answer by destroying the socket (connection reset, no HTTP response). */
  down: boolean;
  /** Stops listening and destroys all client and target connections. */
  close(): Promise<void>;
}

const countPrefix = (paths: string[], prefix?: string): number =>
  prefix === undefined ? paths.length : paths.filter((p) => p.startsWith(prefix)).length;

/**
 * Starts a relay on 127.0.0.1 (ephemeral port) forwarding to `target` (an `http://host:port` origin).
 * Method, path, headers (including `Host`, so the target sees the relay's origin) and body are
 * forwarded as-is; the target's status, headers and body are returned as-is. If the target cannot
 * be reached the relay answers 502.
 */
export async function startRelay(target: string): Promise<Relay> {
  const targetUrl = new URL(target);
  if (targetUrl.protocol !== 'http:') throw new TypeError('relay target must be http://');
  const agent = new http.Agent({ keepAlive: true });
  const forwarded: string[] = [];
  const received: string[] = [];

  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    received.push(path);
    if (relay.down) {
      req.socket.destroy();
      return;
    }
    forwarded.push(path);
    const out = http.request(
      {
        protocol: 'http:',
        hostname: targetUrl.hostname,
        port: targetUrl.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.rawHeaders);
        upRes.pipe(res);
      },
    );
    out.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('relay: target unreachable');
      } else {
        res.destroy();
      }
    });
    req.pipe(out);
  });

  const port = await listenLoopback(server);

  const relay: Relay = {
    url: `http://127.0.0.1:${port}`,
    down: false,
    count: (pathPrefix) => countPrefix(forwarded, pathPrefix),
    attempts: (pathPrefix) => countPrefix(received, pathPrefix),
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
        agent.destroy();
      });
    },
  };
  return relay;
}
