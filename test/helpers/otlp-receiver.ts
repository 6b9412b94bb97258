/**
 * An OTLP/HTTP trace receiver on 127.0.0.1, standing in for an OpenTelemetry collector:
 * it accepts `POST /v1/traces` in both encodings the gateway can send — `http/protobuf`,
 * decoded by protobufjs with the code generated from the official opentelemetry-proto
 * files (shipped in `@opentelemetry/otlp-transformer` 0.210, installed as the dev
 * dependency `otlp-transformer-protobufjs`; later versions encode by hand and ship no
 * decoder), and `http/json` — and keeps every span, plus the raw bytes of every export (to
 * look for what must never be in them).
 *
 * @module
 */
import * as http from 'node:http';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { listenLoopback } from './ports.js';

interface ProtoAnyValue { stringValue?: string | null; boolValue?: boolean | null; intValue?: number | string | { toString(): string } | null; doubleValue?: number | null }
interface ProtoKeyValue { key: string; value?: ProtoAnyValue | null }
interface ProtoSpan {
  traceId: Uint8Array | string; spanId: Uint8Array | string; parentSpanId?: Uint8Array | string | null;
  name: string; kind: number; attributes?: ProtoKeyValue[] | null; status?: { code?: number | null } | null;
}
interface ProtoRequest {
  resourceSpans?: Array<{ resource?: { attributes?: ProtoKeyValue[] | null } | null; scopeSpans?: Array<{ spans?: ProtoSpan[] | null }> | null }> | null;
}

/** `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest` as protobufjs generated it. */
const ExportTraceServiceRequest = (createRequire(import.meta.url)('otlp-transformer-protobufjs/build/src/generated/root.js') as {
  opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceRequest: { decode(buf: Uint8Array): unknown; toObject(m: unknown, o: object): ProtoRequest } } } } } };
}).opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

/** OTLP `Span.SpanKind`. */
export const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;

/** One received span, ids in lower-case hex, attributes as plain values. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  status: number;
  /** The attributes of the resource the span came with (`service.name`, `process.pid`). */
  resource: Record<string, string | number | boolean>;
  /** `application/x-protobuf` or `application/json`. */
  contentType: string;
}

/** A running receiver. */
export interface OtlpReceiver {
  /** `http://127.0.0.1:PORT/v1/traces`. */
  url: string;
  spans: ReceivedSpan[];
  /** Every export body as received. */
  bodies: Buffer[];
  /** Answer exports with this status (200 by default). */
  status: number;
  /** Resolves with the spans once `pred` holds for the spans received, or rejects after `ms`. */
  waitFor(pred: (spans: ReceivedSpan[]) => boolean, ms?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

function hex(id: Uint8Array | string | null | undefined): string {
  if (id === null || id === undefined) return '';
  return typeof id === 'string' ? id.toLowerCase() : Buffer.from(id).toString('hex');
}

function attrs(list: ProtoKeyValue[] | null | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) {
    if (!value) continue;
    if (value.stringValue !== undefined && value.stringValue !== null) out[key] = value.stringValue;
    else if (value.boolValue !== undefined && value.boolValue !== null) out[key] = value.boolValue;
    else if (value.intValue !== undefined && value.intValue !== null) out[key] = Number(String(value.intValue));
    else if (value.doubleValue !== undefined && value.doubleValue !== null) out[key] = value.doubleValue;
  }
  return out;
}

/** Decodes one export body of `contentType` into an ExportTraceServiceRequest object. */
function decode(contentType: string, body: Buffer): ProtoRequest {
  if (contentType.startsWith('application/x-protobuf')) {
    return ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), { longs: String, enums: Number, bytes: Buffer, defaults: false });
  }
  if (contentType.startsWith('application/json')) return JSON.parse(body.toString('utf8')) as ProtoRequest;
  throw new Error(`unexpected content-type ${contentType}`);
}

/** Starts a receiver on 127.0.0.1 (ephemeral port). */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const bodies: Buffer[] = [];
  const state = { status: 200 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const contentType = req.headers['content-type'] ?? '';
      if (req.method !== 'POST' || req.url !== '/v1/traces') return void res.writeHead(404).end();
      if (state.status !== 200) return void res.writeHead(state.status).end();
      bodies.push(body);
      let decoded: ProtoRequest;
      try {
        decoded = decode(contentType, body);
      } catch (e) {
        res.writeHead(400).end(String(e));
        return;
      }
      for (const rs of decoded.resourceSpans ?? []) {
        const resource = attrs(rs.resource?.attributes);
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId), name: s.name, kind: s.kind,
              attributes: attrs(s.attributes), status: s.status?.code ?? 0, resource, contentType,
            });
          }
        }
      }
      res.writeHead(200, { 'content-type': contentType.startsWith('application/json') ? 'application/json' : 'application/x-protobuf' });
      res.end(contentType.startsWith('application/json') ? '{}' : '');
    });
  });
  const port = await listenLoopback(server);
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    bodies,
    get status() { return state.status; },
    set status(s: number) { state.status = s; },
    async waitFor(pred, ms = 10_000) {
      const until = Date.now() + ms;
      while (!pred(spans)) {
        if (Date.now() > until) throw new Error(`spans not received in time; have: ${spans.map((s) => s.name).join(', ')}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      return spans;
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** A fresh W3C trace id and parent span id, and the `traceparent` a client would send with them. */
export function clientParent(sampled = true): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-${sampled ? '01' : '00'}` };
}

/** The spans of trace `traceId` that `r` received, once `n` have arrived. */
export async function traceOf(r: OtlpReceiver, traceId: string, n: number): Promise<ReceivedSpan[]> {
  const spans = await r.waitFor((all) => all.filter((s) => s.traceId === traceId).length >= n);
  return spans.filter((s) => s.traceId === traceId);
}
