/**
 * The HTTP/2 upstream of the h2 and gRPC scenarios: a raw node:http2 server (h2c, prior
 * knowledge) that answers every gRPC call with one fixed message and `grpc-status: 0`,
 * and every other request with a 2-byte body. No grpc-js and no protobuf decoding: the
 * upstream should cost as little and vary as little as it can, so the figures are the
 * gateway's. It counts the gRPC calls it answered, which is what a refused call never
 * reaches.
 */
import http2, { type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';

/** A gRPC message frame (PROTOCOL-HTTP2.md: 1-byte compressed flag, 4-byte length, the message). */
function grpcFrame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/** What the gRPC scenarios send: `Msg { text: "hello" }` of test/fixtures/echo.proto (field 1, wire type 2). */
export const GRPC_REQUEST = grpcFrame(Buffer.from([0x0a, 0x05, ...Buffer.from('hello')]));
/** What the upstream answers every gRPC call with: `Msg { text: "ok" }`. */
export const GRPC_RESPONSE = grpcFrame(Buffer.from([0x0a, 0x02, ...Buffer.from('ok')]));

/** A running h2 upstream. */
export interface GrpcUpstream {
  url: string;
  port: number;
  /** gRPC calls answered so far. */
  grpcCalls: number;
  close(): Promise<void>;
}

/** Starts the upstream on 127.0.0.1 (a free port). */
export async function startGrpcUpstream(): Promise<GrpcUpstream> {
  const server = http2.createServer({ settings: { enablePush: false } });
  const state = { grpcCalls: 0 };
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {}); // a client reset: nothing to answer
    const grpc = headers['content-type'] === 'application/grpc';
    stream.resume();
    // Answered once the request is complete, as a unary gRPC server does.
    stream.once('end', () => {
      if (stream.destroyed) return;
      if (!grpc) {
        stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': '2' });
        stream.end('ok');
        return;
      }
      state.grpcCalls++;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(GRPC_RESPONSE);
    });
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get grpcCalls() { return state.grpcCalls; },
    async close() {
      for (const s of sessions) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** What one probe request saw. */
export interface ProbeResult {
  status: number;
  /** `grpc-status` from the trailers (or from the headers of a trailers-only answer); null if none. */
  grpcStatus: string | null;
  body: Buffer;
}

/**
 * One HTTP/2 request (h2c prior knowledge) and its whole answer, trailers included: what
 * the load generator does not check (h2load counts HTTP statuses, and a refused gRPC call
 * is HTTP 200 with a `grpc-status` in its headers).
 */
export async function h2Probe(url: string, headers: Record<string, string>, body?: Buffer): Promise<ProbeResult> {
  const u = new URL(url);
  const session = http2.connect(u.origin);
  try {
    return await new Promise<ProbeResult>((resolve, reject) => {
      session.once('error', reject);
      const req = session.request({ ':method': body ? 'POST' : 'GET', ':path': u.pathname, ...headers }, { endStream: !body });
      let status = 0;
      let grpcStatus: string | null = null;
      const chunks: Buffer[] = [];
      const grpcOf = (h: IncomingHttpHeaders) => (typeof h['grpc-status'] === 'string' ? h['grpc-status'] : grpcStatus);
      req.on('response', (h) => {
        status = Number(h[':status']);
        grpcStatus = grpcOf(h);
      });
      req.on('trailers', (h) => { grpcStatus = grpcOf(h); });
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve({ status, grpcStatus, body: Buffer.concat(chunks) }));
      req.on('error', reject);
      req.on('close', () => reject(new Error(`stream closed (${req.rstCode}) before its end`))); // no-op once resolved
      req.setTimeout(10_000, () => req.close(http2.constants.NGHTTP2_CANCEL));
      if (body) req.end(body);
    });
  } finally {
    session.close();
  }
}
