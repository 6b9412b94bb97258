/**
 * One raw HTTP/1.1 request over a TCP socket, for requests that fetch() cannot send:
 * duplicate headers, absolute-form or `*` targets, invalid escapes, odd header spellings.
 * A thin wrapper over {@link rawExchange} (raw-http.ts), which also does pipelining and
 * slow writes.
 *
 * @module
 */
import { parseResponses, rawExchange, type RawResponse as ParsedResponse } from './raw-http.js';

/** A parsed raw response, with the whole answer as received. */
export interface RawResponse extends ParsedResponse {
  text: string;
}

/**
 * Sends `head` (request line and headers, `\n` or `\r\n` separated, without the final blank
 * line) and `body` (UTF-8) to `url`'s port on 127.0.0.1, waits for the server to close,
 * and parses the first answer. Rejects when the server has not closed within `timeoutMs`.
 */
export async function rawRequest(url: string, head: string, body = '', timeoutMs = 5000): Promise<RawResponse> {
  const request = head.replace(/\r?\n/g, '\r\n').replace(/(\r\n)*$/, '') + '\r\n\r\n' + body;
  const ex = await rawExchange(Number(new URL(url).port), [Buffer.from(request, 'utf8')], timeoutMs);
  if (!ex.closed) throw new Error('raw request timed out');
  const first = parseResponses(ex.raw)[0] ?? { status: 0, headers: {}, body: '' };
  return { ...first, text: ex.raw };
}
