/**
 * Raw HTTP/1.1 over a TCP socket, for requests that fetch() and http.request() refuse
 * to send (arbitrary request targets, conflicting framing headers, pipelining, slow
 * writers), and a lenient parser for what comes back.
 *
 * @module
 */
import * as net from 'node:net';

/** One parsed response. */
export interface RawResponse {
  status: number;
  /** Lower-cased header names; duplicates joined with ', '. */
  headers: Record<string, string>;
  body: string;
}

/** What a raw exchange produced. */
export interface RawExchange {
  /** Every byte received, as latin1 text. */
  raw: string;
  /** The responses parsed from `raw`, in order. */
  responses: RawResponse[];
  /** True when the server closed the connection (FIN or reset) before `timeoutMs`. */
  closed: boolean;
  /** Socket error code, if any (e.g. ECONNRESET). */
  error?: string;
}

/**
 * Parses as many complete HTTP/1.1 responses as `raw` holds (Content-Length or chunked
 * framing; a response without either runs to the end of the data).
 */
export function parseResponses(raw: string): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = raw;
  while (rest.startsWith('HTTP/')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const lines = rest.slice(0, end).split('\r\n');
    const status = Number(lines[0].split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      if (c <= 0) continue;
      const name = l.slice(0, c).trim().toLowerCase();
      const value = l.slice(c + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    let body = '';
    let after = rest.slice(end + 4);
    if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = after.slice(0, n);
      after = after.slice(n);
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      for (;;) {
        const le = after.indexOf('\r\n');
        if (le === -1) break;
        const size = parseInt(after.slice(0, le), 16);
        after = after.slice(le + 2);
        if (!size) {
          after = after.slice(after.indexOf('\r\n') + 2);
          break;
        }
        body += after.slice(0, size);
        after = after.slice(size + 2);
      }
    } else if (status >= 200 && status !== 204 && status !== 304) {
      body = after;
      after = '';
    }
    out.push({ status, headers, body });
    rest = after;
  }
  return out;
}

/**
 * Opens a connection to 127.0.0.1:`port`, writes each chunk of `writes` (a string is
 * sent as latin1, so `\xNN` escapes are single bytes; a number pauses that many ms),
 * then reads until the server closes or `timeoutMs` passes, and destroys the socket.
 */
export function rawExchange(port: number, writes: Array<string | Buffer | number>, timeoutMs = 10_000): Promise<RawExchange> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const raw = Buffer.concat(chunks).toString('latin1');
      resolve({ raw, responses: parseResponses(raw), closed, error });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code;
    });
    sock.on('close', () => finish(true));
    sock.on('connect', async () => {
      for (const w of writes) {
        if (done || sock.destroyed) return;
        if (typeof w === 'number') await new Promise((r) => setTimeout(r, w));
        else sock.write(typeof w === 'string' ? Buffer.from(w, 'latin1') : w);
      }
    });
  });
}

/** A GET for `target` with `Connection: close` and optional extra header lines. */
export function rawGet(target: string, extra: string[] = []): string {
  return [`GET ${target} HTTP/1.1`, 'Host: 127.0.0.1', ...extra, 'Connection: close', '', ''].join('\r\n');
}

/** A request head from its lines: CRLF-joined, with the blank line that ends it. */
export function head(...lines: string[]): string {
  return lines.join('\r\n') + '\r\n\r\n';
}
