/**
 * pino options: JSON lines, batched writes (src/log-sink.ts), and redaction of every place
 * a token or secret could sit. Access lines are written by the proxy (one per request) with
 * fixed fields: request id, method, route, status, latency, sub, issuer, reason, client
 * address and user-agent ({@link AccessLog}); never the query string. Tokens
 * never reach a log call; redaction is the second line of defence.
 */
import pino, { type LoggerOptions } from 'pino';
import { BatchedLineWriter } from './log-sink.js';

/** Paths pino replaces with "[redacted]". */
export const REDACT_PATHS = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers.dpop', 'req.headers["proxy-authorization"]',
  'headers.authorization', 'headers.cookie', 'headers.dpop', 'token', 'access_token', 'clientSecret', 'client_secret',
  'config.issuers[*].introspection.clientSecret',
];

/** Logger options for a level. */
export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: { service: 'tokengate' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: isoTimeCached(),
    formatters: { level: (label) => ({ level: label }) },
  };
}

/** A pino logger writing to stdout in batches of whole lines, each line out within 100 ms (src/log-sink.ts). */
export function createLogger(level: string, destination?: pino.DestinationStream): pino.Logger {
  return pino(loggerOptions(level), destination ?? new BatchedLineWriter());
}

/**
 * pino's `isoTime`, formatted once per millisecond (access lines ask for it thousands of
 * times a second); each logger gets its own.
 */
export function isoTimeCached(): () => string {
  let lastMs = -1;
  let lastTime = '';
  return () => {
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      lastTime = `,"time":"${new Date(now).toISOString()}"`;
    }
    return lastTime;
  };
}

/**
 * The fields of one access line: request id, method, route, status, latency, `sub`, issuer,
 * decision outcome and reason, client address and user-agent. No URL: a query string may
 * carry secrets (the route id says where the request went).
 */
export interface AccessEntry {
  /** The listener that answered, when it is not the proxy (`ext_authz`). */
  listener?: string;
  /** `request_id`: the request's id (src/server/request-id.ts). */
  requestId: string;
  /** The request's method (the described request's, at the decision listener and ext_authz); absent when it was not read. */
  method?: string;
  route: string;
  status: number;
  /** Latency in milliseconds. */
  ms: number;
  sub: string | undefined;
  issuer: string | undefined;
  outcome: string;
  reason: string;
  /** `client`: the client's address (the peer, or what a trusted front proxy reports). */
  client?: string;
  /** `user_agent`: the request's `User-Agent`, cut to 256 characters. */
  userAgent?: string;
  /** `trace_id`: the W3C trace id of a sampled request (with `tracing:`), to find its trace. */
  traceId?: string;
}

const INFO = 30;

/**
 * Writes access lines, one per request, as exactly the line `logger.info(entry, 'access')`
 * would write (test/unit/logger checks it byte for byte), without pino's generic
 * serializer: the shape is fixed and no field can hold a secret, so the line is built from
 * a template. Values from outside (`sub`, ids) are JSON-escaped.
 */
export class AccessLog {
  private readonly stream: { write(line: string): unknown };
  private readonly time: () => string;
  private readonly head: string;
  private readonly chindings: string;

  constructor(private readonly logger: pino.Logger) {
    const l = logger as unknown as Record<symbol, unknown>;
    this.stream = l[pino.symbols.streamSym] as { write(line: string): unknown };
    this.time = l[pino.symbols.timeSym] as () => string;
    const formatters = l[pino.symbols.formattersSym] as { level(label: string, n: number): object };
    this.head = JSON.stringify(formatters.level('info', INFO)).slice(0, -1);
    this.chindings = l[pino.symbols.chindingsSym] as string;
  }

  /** Writes one access line (nothing when the level is above info). */
  write(e: AccessEntry): void {
    if (this.logger.levelVal > INFO) return;
    let line = `${this.head}${this.time()}${this.chindings}`;
    if (e.listener !== undefined) line += `,"listener":${JSON.stringify(e.listener)}`;
    // The id is a safe token (request-id.ts) or a UUID: nothing in it needs escaping.
    line += `,"request_id":"${e.requestId}"`;
    if (e.method !== undefined) line += `,"method":${JSON.stringify(e.method)}`;
    line += `,"route":${JSON.stringify(e.route)},"status":${e.status},"ms":${e.ms}`;
    if (e.sub !== undefined) line += `,"sub":${JSON.stringify(e.sub)}`;
    if (e.issuer !== undefined) line += `,"issuer":${JSON.stringify(e.issuer)}`;
    line += `,"outcome":"${e.outcome}","reason":"${e.reason}"`;
    if (e.client !== undefined) line += `,"client":${JSON.stringify(e.client)}`;
    if (e.userAgent !== undefined) line += `,"user_agent":${JSON.stringify(e.userAgent)}`;
    if (e.traceId !== undefined) line += `,"trace_id":"${e.traceId}"`; // 32 hex digits
    this.stream.write(`${line},"msg":"access"}\n`);
  }
}
