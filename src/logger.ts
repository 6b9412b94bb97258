/**
 * pino options: JSON lines, asynchronous writes, and redaction of every place a token or
 * secret could sit. Access lines are written by the proxy (one per request) with fixed
 * fields: route, status, latency, sub, issuer, reason. Tokens never reach a log call;
 * redaction is the second line of defence.
 */
import pino, { type LoggerOptions } from 'pino';

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
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
}

/** A pino logger writing asynchronously to stdout: lines batch only while a write is in flight, so a quiet pod still shows them at once. */
export function createLogger(level: string, destination?: pino.DestinationStream): pino.Logger {
  return pino(loggerOptions(level), destination ?? pino.destination({ dest: 1, sync: false }));
}
