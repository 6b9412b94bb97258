/**
 * A loopback port that was free a moment ago, for processes that bind the port their
 * config names (the CLI child process, nginx). Tests that start listeners themselves use port 0
 * ({@link listenLoopback}).
 */
import * as net from 'node:net';

/** Resolves with a port on 127.0.0.1 that nothing listened on when it was asked. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Starts `server` on 127.0.0.1 (an ephemeral port unless `port`); resolves with the port (rejects if it cannot listen). */
export function listenLoopback(server: net.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
