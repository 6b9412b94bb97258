/**
 * A loopback port that was free a moment ago, for processes that bind the port their
 * config names (the CLI child process, nginx). Tests that start listeners themselves use port 0
 * ({@link listenLoopback}).
 */
import { readFileSync } from 'node:fs';
import * as net from 'node:net';

/**
 * The first port of the kernel's ephemeral range: outgoing connections take their local
 * ports from that range, so a port picked inside it can be taken by any test's client
 * connection before the process it was picked for binds it (EADDRINUSE, seen in CI).
 */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 0;
  } catch {
    return 0;
  }
}
const LOW = 10_000;
const HIGH = ephemeralLow();

/** Whether `port` on 127.0.0.1 could be listened on just now. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * Resolves with a port on 127.0.0.1 that nothing listened on when it was asked: a random
 * one below the ephemeral range when there is room (see {@link ephemeralLow}), else one
 * the kernel picks.
 */
export async function freePort(): Promise<number> {
  if (HIGH - LOW >= 1000) {
    for (let i = 0; i < 50; i++) {
      const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
      if (await bindable(port)) return port;
    }
  }
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
