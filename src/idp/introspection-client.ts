/**
 * The RFC 7662 introspection call for one issuer: POST `token` and
 * `token_type_hint=access_token` (§2.1) with client authentication, read the JSON answer
 * under the limits of {@link fetchJson} (timeout, no redirects, size cap), and insist on a
 * boolean `active` (§2.2). Anything else is an {@link IntrospectionFailure}: the caller
 * fails closed. Nothing this module throws or logs contains the token or the secret.
 */
import type { IntrospectionConfig } from '../config/schema.js';
import { fetchJson, FetchError, type FetchOptions } from './http.js';
import type { OutboundTracer } from '../tracing/outbound.js';

/** The largest introspection answer accepted, in bytes (answers are a few hundred bytes). */
export const INTROSPECTION_MAX_BYTES = 256 * 1024;

/** An introspection answer (RFC 7662 §2.2): a JSON object whose `active` is a boolean. */
export type IntrospectionAnswer = Readonly<Record<string, unknown>> & { readonly active: boolean };

/** Why an introspection call gave no usable answer; `kind` is a fixed label for logs. */
export class IntrospectionFailure extends Error {
  readonly kind: FetchError['kind'] | 'no_endpoint' | 'bad_answer';
  constructor(kind: IntrospectionFailure['kind'], message: string) {
    super(message);
    this.name = 'IntrospectionFailure';
    this.kind = kind;
  }
}

/** Options of an {@link IntrospectionClient}. */
export interface IntrospectionClientOptions {
  policy: Pick<IntrospectionConfig, 'clientId' | 'clientSecret' | 'authMethod' | 'timeoutMs'>;
  /** The endpoint URL: the configured one, or the one from discovery. */
  endpoint: () => Promise<string>;
  /** Outbound policy (`server.allowInsecureHttpHosts`); default loopback only. */
  allowInsecureHttpHosts?: readonly string[];
  /** Calls run as `tokengate.introspection` spans of the request that needed them (never with the token). */
  tracer?: OutboundTracer;
  /** The issuer's id, on those spans. */
  issuerId?: string;
}

/**
 * `application/x-www-form-urlencoded` encoding of one value, as RFC 6749 §2.3.1 demands
 * for the client id and secret before they are joined and base64-encoded
 * (`encodeURIComponent` would leave `!'()*~` and spaces in the wrong form).
 */
export function formEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}

/** The `Authorization` value for `client_secret_basic` (RFC 7662 §2.1, RFC 6749 §2.3.1). */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  return 'Basic ' + Buffer.from(`${formEncode(clientId)}:${formEncode(clientSecret)}`, 'utf8').toString('base64');
}

/** Calls one issuer's introspection endpoint. */
export class IntrospectionClient {
  private readonly policy: IntrospectionClientOptions['policy'];
  private readonly endpoint: () => Promise<string>;
  private readonly basic: string | null;
  private readonly allowInsecureHttpHosts?: readonly string[];
  private readonly trace: FetchOptions['trace'];

  constructor(opts: IntrospectionClientOptions) {
    this.policy = opts.policy;
    this.trace = opts.tracer ? { tracer: opts.tracer, span: 'tokengate.introspection', attributes: { 'tokengate.issuer': opts.issuerId } } : undefined;
    this.allowInsecureHttpHosts = opts.allowInsecureHttpHosts;
    this.endpoint = opts.endpoint;
    this.basic = opts.policy.authMethod === 'client_secret_basic'
      ? basicAuthorization(opts.policy.clientId, opts.policy.clientSecret)
      : null;
  }

  /** Introspects `token`; throws {@link IntrospectionFailure} unless the IdP gave a valid answer. */
  async introspect(token: string): Promise<IntrospectionAnswer> {
    let url: string;
    try {
      url = await this.endpoint();
    } catch (e) {
      if (e instanceof IntrospectionFailure) throw e;
      throw new IntrospectionFailure('no_endpoint', `endpoint unknown (${e instanceof FetchError ? `discovery: ${e.message}` : 'discovery failed'})`);
    }
    // RFC 7662 §2.1: the hint says what we hold; the IdP may ignore it.
    const form = new URLSearchParams({ token, token_type_hint: 'access_token' });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    if (this.basic) {
      headers.authorization = this.basic;
    } else {
      // RFC 6749 §2.3.1: client_secret_post puts the credentials in the form body.
      form.set('client_id', this.policy.clientId);
      form.set('client_secret', this.policy.clientSecret);
    }
    let body: unknown;
    try {
      ({ body } = await fetchJson(url, {
        method: 'POST', headers, body: form.toString(), timeoutMs: this.policy.timeoutMs, maxBytes: INTROSPECTION_MAX_BYTES,
        allowInsecureHttpHosts: this.allowInsecureHttpHosts, trace: this.trace,
      }));
    } catch (e) {
      if (e instanceof FetchError) throw new IntrospectionFailure(e.kind, e.message);
      throw new IntrospectionFailure('network', 'request failed');
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new IntrospectionFailure('bad_answer', 'answer is not a JSON object');
    }
    // RFC 7662 §2.2: `active` is REQUIRED and boolean; "true" or 1 is not an answer.
    if (typeof (body as { active?: unknown }).active !== 'boolean') {
      throw new IntrospectionFailure('bad_answer', 'answer has no boolean `active`');
    }
    return Object.freeze(body) as IntrospectionAnswer;
  }
}

