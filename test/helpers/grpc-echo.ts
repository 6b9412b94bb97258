/**
 * A real gRPC upstream for the HTTP/2 tests: `tokengate.test.Echo` (test/fixtures/echo.proto)
 * served by @grpc/grpc-js on 127.0.0.1, recording each call's metadata, and clients for it
 * made by the same library. Behaviour the tests steer through the message:
 *
 * - `text: 'fail'`: status NOT_FOUND with a message, and trailers `x-trailer` and `x-trailer-bin`;
 * - `delay_ms`: the unary answer waits that long (a cancel or deadline arrives first);
 * - `count` on ServerStream: that many messages of `blob`'s size, as fast as flow control lets.
 */
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const PROTO = fileURLToPath(new URL('../fixtures/echo.proto', import.meta.url));

/** The message of echo.proto. */
export interface Msg {
  text?: string;
  blob?: Buffer;
  count?: number;
  delay_ms?: number;
}

/** A client of the Echo service (grpc-js generic client methods). */
export type EchoClient = grpc.Client & {
  Unary(m: Msg, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, r?: Msg) => void): grpc.ClientUnaryCall;
  ClientStream(md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, r?: Msg) => void): grpc.ClientWritableStream<Msg>;
  ServerStream(m: Msg, md: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientReadableStream<Msg>;
  Bidi(md: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientDuplexStream<Msg, Msg>;
};

/** One call as the upstream saw it. */
export interface SeenCall {
  method: string;
  metadata: Record<string, unknown>;
  /** Resolves when the server learns the call was cancelled (client cancel or deadline). */
  cancelled: Promise<void>;
}

const echoDefinition = (): grpc.GrpcObject => grpc.loadPackageDefinition(loadSync(PROTO, { keepCase: true, longs: Number, defaults: true }));

function service(): grpc.ServiceClientConstructor {
  return ((echoDefinition().tokengate as grpc.GrpcObject).test as grpc.GrpcObject).Echo as grpc.ServiceClientConstructor;
}

/** A running Echo upstream. */
export interface EchoServer {
  address: string;
  calls: SeenCall[];
  /** Messages ServerStream has handed to grpc-js so far (what flow control lets through). */
  streamed: number;
  close(): Promise<void>;
}

function seen(calls: SeenCall[], method: string, call: { metadata: grpc.Metadata; on(event: 'cancelled', listener: () => void): unknown }): void {
  calls.push({ method, metadata: call.metadata.getMap(), cancelled: new Promise((resolve) => call.on('cancelled', () => resolve())) });
}

function failure(): Partial<grpc.StatusObject> {
  const md = new grpc.Metadata();
  md.set('x-trailer', 'kept');
  md.set('x-trailer-bin', Buffer.from([0, 1, 2, 255]));
  return { code: grpc.status.NOT_FOUND, details: 'no such thing: ünïcode %', metadata: md };
}

/** Starts the Echo service on 127.0.0.1 (cleartext h2, or TLS with `creds`). */
export async function startEchoServer(creds = grpc.ServerCredentials.createInsecure()): Promise<EchoServer> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024 });
  const calls: SeenCall[] = [];
  const state = { streamed: 0 };
  server.addService(service().service, {
    Unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      seen(calls, 'Unary', call);
      if (call.request.text === 'fail') return cb(failure());
      const md = new grpc.Metadata();
      md.set('x-answer-bin', Buffer.from('héllo'));
      call.sendMetadata(md);
      const answer = () => cb(null, { text: `echo:${call.request.text}`, blob: call.request.blob, count: call.request.blob?.length ?? 0 });
      if (call.request.delay_ms) setTimeout(answer, call.request.delay_ms);
      else answer();
    },
    ClientStream(call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      seen(calls, 'ClientStream', call);
      const texts: string[] = [];
      let bytes = 0;
      call.on('data', (m: Msg) => { texts.push(m.text ?? ''); bytes += m.blob?.length ?? 0; });
      call.on('end', () => cb(null, { text: texts.join(','), count: bytes }));
    },
    ServerStream(call: grpc.ServerWritableStream<Msg, Msg>) {
      seen(calls, 'ServerStream', call);
      const n = call.request.count ?? 0;
      const blob = call.request.blob ?? Buffer.alloc(0);
      let i = 0;
      const more = () => {
        while (i < n) {
          i++;
          state.streamed++;
          if (!call.write({ text: String(i), blob })) return void call.once('drain', more);
        }
        call.end();
      };
      call.on('cancelled', () => { i = n; });
      more();
    },
    Bidi(call: grpc.ServerDuplexStream<Msg, Msg>) {
      seen(calls, 'Bidi', call);
      call.on('data', (m: Msg) => call.write({ text: `echo:${m.text}` }));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  return {
    address: `127.0.0.1:${port}`,
    calls,
    get streamed() { return state.streamed; },
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())).then(() => server.forceShutdown()),
  };
}

/** A grpc-js Echo client for `address` (host:port). */
export function echoClient(address: string, creds = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}): EchoClient {
  const Ctor = service();
  return new Ctor(address, creds, { 'grpc.max_receive_message_length': 64 * 1024 * 1024, ...options }) as unknown as EchoClient;
}

/** Metadata with `authorization: Bearer <token>` (or none). */
export function bearerMetadata(token?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** A unary call as a promise: the answer, or the ServiceError. */
export function unary(client: EchoClient, m: Msg, md: grpc.Metadata, opts: grpc.CallOptions = {}): Promise<{ err: grpc.ServiceError | null; res?: Msg; headers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const call = client.Unary(m, md, opts, (err, res) => resolve({ err, res, headers }));
    call.on('metadata', (h) => { headers = h; });
  });
}
