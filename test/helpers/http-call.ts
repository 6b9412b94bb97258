/**
 * One HTTP/1.1 request with exactly the headers given (fetch() drops or rewrites some:
 * `Origin`, an empty `Authorization`, `Access-Control-Request-*`), on a fresh connection.
 *
 * @module
 */
import * as http from 'node:http';

/** A whole answer: status, parsed headers (lower-case names) and body text. */
export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Sends `method` `url` with `headers` (and `body`); resolves with the answer. */
export function httpCall(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}
