/**
 * The demo upstream of `npm run dev`: answers every request with what it received
 * (method, path, headers), so the identity headers tokengate adds can be seen.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Starts the echo upstream; resolves to its origin and a close function. */
export async function startEchoUpstream(opts: { host?: string; port?: number } = {}): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ upstream: 'echo', method: req.method, path: req.url, headers: req.headers }, null, 2) + '\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
