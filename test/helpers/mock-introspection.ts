/**
 * A programmable RFC 7662 introspection endpoint for failure-mode tests: you decide each
 * answer (status, body, content type, delay), and it records what the gateway sent
 * (form fields, decoded client credentials) and counts calls.
 *
 * @module
 */
import * as http from 'node:http';
import { listenLoopback } from './ports.js';

/** One introspection request as received. */
export interface IntrospectionRequest {
  /** Form fields of the body (`token`, `token_type_hint`, `client_id`, ...). */
  form: Record<string, string>;
  /** The raw `Authorization` header, if any. */
  authorization: string | undefined;
  /** Client id and secret decoded from `Authorization: Basic` per RFC 6749 §2.3.1 (form-decoding), if any. */
  basic: { clientId: string; clientSecret: string } | null;
  contentType: string | undefined;
}

/** What the endpoint answers; `body` objects are sent as JSON. `hang`: never answer. */
export interface MockAnswer {
  status?: number;
  body?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
  delayMs?: number;
  hang?: boolean;
}

/** A running mock introspection endpoint. */
export interface MockIntrospection {
  /** `http://127.0.0.1:PORT`; the endpoint is `url + '/introspect'`. */
  url: string;
  endpoint: string;
  /** Every request received, oldest first. */
  requests: IntrospectionRequest[];
  /** Decides the answer; default: `{ active: false }`. */
  answer: (req: IntrospectionRequest) => MockAnswer;
  close(): Promise<void>;
}

const formDecode = (s: string): string => decodeURIComponent(s.replace(/\+/g, '%20'));

/** Starts the endpoint on 127.0.0.1 (ephemeral port). */
export async function startMockIntrospection(): Promise<MockIntrospection> {
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
      const authorization = req.headers.authorization;
      let basic: IntrospectionRequest['basic'] = null;
      if (authorization?.startsWith('Basic ')) {
        const raw = Buffer.from(authorization.slice(6), 'base64').toString('utf8');
        const i = raw.indexOf(':');
        basic = { clientId: formDecode(raw.slice(0, i)), clientSecret: formDecode(raw.slice(i + 1)) };
      }
      const r: IntrospectionRequest = { form, authorization, basic, contentType: req.headers['content-type'] };
      mock.requests.push(r);
      const a = mock.answer(r);
      if (a.hang) return; // close() destroys the socket
      const send = () => {
        if (res.destroyed) return;
        const body = typeof a.body === 'string' ? a.body : JSON.stringify(a.body ?? { active: false });
        res.writeHead(a.status ?? 200, { 'content-type': a.contentType ?? 'application/json', ...a.headers });
        res.end(body);
      };
      if (a.delayMs) {
        const t = setTimeout(() => { timers.delete(t); send(); }, a.delayMs);
        timers.add(t);
      } else {
        send();
      }
    });
  });
  const port = await listenLoopback(server);
  const url = `http://127.0.0.1:${port}`;
  const mock: MockIntrospection = {
    url,
    endpoint: `${url}/introspect`,
    requests: [],
    answer: () => ({ body: { active: false } }),
    close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
  return mock;
}
