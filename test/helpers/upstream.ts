/**
 * A recording echo server standing in for the service behind the gateway, and a plain
 * loopback server for upstreams that answer in a way of their own (1xx, resets, streams).
 *
 * @module
 */
import * as http from 'node:http';
import { listenLoopback } from './ports.js';

/** One request as the upstream received it. */
export interface RecordedRequest {
  method: string;
  /** Path and query exactly as received (`req.url`). */
  url: string;
  /** Parsed headers (lower-cased names, duplicates joined by Node's rules). */
  headers: http.IncomingHttpHeaders;
  /** Raw `[name, value, name, value, ...]` list, original case and order, duplicates kept. */
  rawHeaders: string[];
  /** Request body decoded as UTF-8 ('' when empty). */
  body: string;
}

/** A running echo upstream. */
export interface EchoUpstream {
  /** `http://127.0.0.1:PORT` (no trailing slash). */
  url: string;
  port: number;
  /** Every request received, oldest first. */
  requests: RecordedRequest[];
  /** Forgets recorded requests (does not change `delayMs`). */
  reset(): void;
  /** Stops listening and destroys all connections, including idle keep-alive ones. */
  close(): Promise<void>;
  /** Make subsequent responses wait ms before sending headers. */
  delayMs: number;
}

/**
 * Starts an echo upstream on 127.0.0.1 (ephemeral port). Every request is answered
 * `200 application/json` with `{ method, url, headers }` after the whole body has been read.
 */
export async function startUpstream(): Promise<EchoUpstream> {
  const requests: RecordedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const method = req.method ?? '';
      const url = req.url ?? '';
      requests.push({
        method,
        url,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      const send = () => {
        if (res.destroyed) return;
        const payload = JSON.stringify({ method, url, headers: req.headers });
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
        });
        res.end(payload);
      };
      if (upstream.delayMs > 0) {
        const t = setTimeout(() => {
          timers.delete(t);
          send();
        }, upstream.delayMs);
        timers.add(t);
      } else {
        send();
      }
    });
  });

  const port = await listenLoopback(server);

  const upstream: EchoUpstream = {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    delayMs: 0,
    reset() {
      requests.length = 0;
    },
    close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      return closeServer(server);
    },
  };
  return upstream;
}

/** Stops listening and destroys all connections, idle keep-alive ones included. */
function closeServer(server: http.Server): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    server.closeAllConnections();
  });
}

/** A running upstream that answers with a handler of the test's own. */
export interface HandlerUpstream {
  /** `http://127.0.0.1:PORT` (no trailing slash). */
  url: string;
  /** Stops listening and destroys all connections. */
  close(): Promise<void>;
}

/** Starts `handler` as an upstream on 127.0.0.1 (ephemeral port). */
export async function startHandlerUpstream(handler: http.RequestListener): Promise<HandlerUpstream> {
  const server = http.createServer(handler);
  const port = await listenLoopback(server);
  return { url: `http://127.0.0.1:${port}`, close: () => closeServer(server) };
}
