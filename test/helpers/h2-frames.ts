/**
 * Raw HTTP/2 frames over a TCP socket, for the attacks node:http2's client refuses to
 * send (connection-specific headers, uppercase names, pseudo-headers out of order,
 * endless CONTINUATION, floods): a frame builder (RFC 9113 §4.1), an HPACK encoder that
 * writes literals without Huffman (RFC 7541 §6.2) and indexed references (§6.1), and a
 * connection that records every frame the server sends back. Response header blocks
 * are not decoded: tests read stream resets, GOAWAY codes and whether HEADERS came back,
 * and use node:http2's client where they need a status.
 *
 * @module
 */
import http2 from 'node:http2';
import * as net from 'node:net';

/** Frame types (RFC 9113 §6). */
export const FRAME = {
  DATA: 0x0, HEADERS: 0x1, PRIORITY: 0x2, RST_STREAM: 0x3, SETTINGS: 0x4,
  PUSH_PROMISE: 0x5, PING: 0x6, GOAWAY: 0x7, WINDOW_UPDATE: 0x8, CONTINUATION: 0x9,
} as const;

/** Frame flags. */
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

/** Error codes (RFC 9113 §7). */
export const ERR = {
  NO_ERROR: 0x0, PROTOCOL_ERROR: 0x1, INTERNAL_ERROR: 0x2, FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4, STREAM_CLOSED: 0x5, FRAME_SIZE_ERROR: 0x6, REFUSED_STREAM: 0x7,
  CANCEL: 0x8, COMPRESSION_ERROR: 0x9, CONNECT_ERROR: 0xa, ENHANCE_YOUR_CALM: 0xb,
} as const;

/** SETTINGS identifiers (RFC 9113 §6.5.2). */
export const SETTING = {
  HEADER_TABLE_SIZE: 0x1, ENABLE_PUSH: 0x2, MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4, MAX_FRAME_SIZE: 0x5, MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** The client connection preface (RFC 9113 §3.4). */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** One frame: the 9-byte header and `payload`. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** A SETTINGS frame with `entries` ([id, value] pairs). */
export function settings(entries: Array<[number, number]> = []): Buffer {
  const p = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, p);
}

/** The SETTINGS acknowledgement. */
export const SETTINGS_ACK = frame(FRAME.SETTINGS, FLAG.ACK, 0);

/** A PING with 8 bytes of opaque data taken from `n`. */
export function ping(n = 0): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(n >>> 0, 4);
  return frame(FRAME.PING, 0, 0, p);
}

/** RST_STREAM on `streamId` with `code`. */
export function rstStream(streamId: number, code: number = ERR.CANCEL): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, p);
}

/** HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 §5.1). */
export function hpackInt(value: number, n: number, first = 0): Buffer {
  const max = (1 << n) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** An HPACK string literal, not Huffman-coded (RFC 7541 §5.2). */
function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7), b]);
}

/**
 * An HPACK header field with a literal name: without indexing (RFC 7541 §6.2.2), or with
 * incremental indexing (§6.2.1: the field enters the dynamic table at index 62).
 */
export function hpackLiteral(name: string, value: string, index = false): Buffer {
  return Buffer.concat([Buffer.from([index ? 0x40 : 0x00]), hpackString(name), hpackString(value)]);
}

/** An HPACK indexed header field (RFC 7541 §6.1): 1–3 bytes that stand for a whole table entry. */
export function hpackIndexed(index: number): Buffer {
  return hpackInt(index, 7, 0x80);
}

/** A header block of literal fields without indexing, names and values exactly as given. */
export function headerBlock(fields: Array<[string, string]>): Buffer {
  return Buffer.concat(fields.map(([n, v]) => hpackLiteral(n, v)));
}

/** The pseudo-headers of a GET to `path` on `authority`, as a field list. */
export function get(path: string, authority: string, extra: Array<[string, string]> = []): Array<[string, string]> {
  return [[':method', 'GET'], [':scheme', 'http'], [':path', path], [':authority', authority], ...extra];
}

/** A HEADERS frame carrying `block`; END_HEADERS unless `endHeaders: false`, END_STREAM unless `endStream: false`. */
export function headers(streamId: number, block: Buffer, opts: { endStream?: boolean; endHeaders?: boolean } = {}): Buffer {
  const flags = (opts.endStream === false ? 0 : FLAG.END_STREAM) | (opts.endHeaders === false ? 0 : FLAG.END_HEADERS);
  return frame(FRAME.HEADERS, flags, streamId, block);
}

/** A CONTINUATION frame. */
export function continuation(streamId: number, block: Buffer, endHeaders = false): Buffer {
  return frame(FRAME.CONTINUATION, endHeaders ? FLAG.END_HEADERS : 0, streamId, block);
}

/** A frame as received. */
export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** A raw HTTP/2 client connection (prior knowledge, cleartext) that records what the server sends. */
export class RawH2 {
  readonly frames: Frame[] = [];
  /** True once the server closed (FIN or reset) or the socket failed. */
  closed = false;
  /** Bytes written so far (what the attack cost the client). */
  sent = 0;
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      while (this.buf.length >= 9) {
        const len = this.buf.readUIntBE(0, 3);
        if (this.buf.length < 9 + len) break;
        this.frames.push({ type: this.buf[3], flags: this.buf[4], streamId: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) });
        this.buf = this.buf.subarray(9 + len);
      }
      this.wake();
    });
    const gone = (): void => {
      this.closed = true;
      this.wake();
    };
    socket.on('close', gone);
    socket.on('error', gone);
  }

  /**
   * Connects to 127.0.0.1:`port` and sends the preface and `clientSettings` (an empty
   * SETTINGS unless told); the server's SETTINGS is acknowledged when it arrives, unless
   * `ack: false` (the server's own limits then stay unacknowledged).
   */
  static connect(port: number, clientSettings: Buffer = settings(), ack = true): Promise<RawH2> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        const c = new RawH2(socket);
        c.send(Buffer.concat([PREFACE, clientSettings]));
        if (ack) void c.waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0, 5000).then(() => c.send(SETTINGS_ACK), () => undefined);
        resolve(c);
      });
      socket.once('error', reject);
    });
  }

  /** Writes `data` unless the connection is gone; false when it could not. */
  send(data: Buffer): boolean {
    if (this.closed || this.socket.destroyed) return false;
    this.sent += data.length;
    return this.socket.write(data);
  }

  /** Resolves with the first frame (received so far or later) matching `pred`; rejects after `ms` or when the connection closes first. */
  waitFor(pred: (f: Frame) => boolean, ms: number): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error('no such frame within ' + ms + ' ms')), ms);
      const check = (): boolean => {
        const f = this.frames.find(pred);
        if (f) done(null, f);
        else if (this.closed) done(new Error('connection closed without such a frame'));
        return f !== undefined || this.closed;
      };
      const done = (err: Error | null, f?: Frame): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== onWake);
        if (err) reject(err);
        else resolve(f!);
      };
      const onWake = (): void => void check();
      if (!check()) this.waiters.push(onWake);
    });
  }

  /** Resolves true when the server closes the connection within `ms`, false otherwise. */
  waitClosed(ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== onWake);
        resolve(false);
      }, ms);
      const onWake = (): void => {
        if (!this.closed) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== onWake);
        resolve(true);
      };
      this.waiters.push(onWake);
    });
  }

  /** The GOAWAY the server sent, if any: last stream id and error code. */
  goaway(): { lastStreamId: number; code: number } | undefined {
    const f = this.frames.find((x) => x.type === FRAME.GOAWAY);
    return f && { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) };
  }

  /** The error code of the server's RST_STREAM on `streamId`, if any. */
  reset(streamId: number): number | undefined {
    const f = this.frames.find((x) => x.type === FRAME.RST_STREAM && x.streamId === streamId);
    return f?.payload.readUInt32BE(0);
  }

  /** Whether the server answered `streamId` with HEADERS. */
  answered(streamId: number): boolean {
    return this.frames.some((x) => x.type === FRAME.HEADERS && x.streamId === streamId);
  }

  /** The SETTINGS the server sent first, as id → value. */
  serverSettings(): Map<number, number> {
    const f = this.frames.find((x) => x.type === FRAME.SETTINGS && (x.flags & FLAG.ACK) === 0);
    const m = new Map<number, number>();
    for (let i = 0; f && i + 6 <= f.payload.length; i += 6) m.set(f.payload.readUInt16BE(i), f.payload.readUInt32BE(i + 2));
    return m;
  }

  /** Destroys the socket. */
  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** An answer read by node:http2's client. */
export interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
  /** The stream's reset code when the server reset it (0 after a normal end). */
  rstCode: number;
  ms: number;
}

/**
 * One request with node:http2's client over `session` (or a fresh session to `url`,
 * closed after): status 0 when the stream was reset before an answer. Rejects after `timeoutMs`.
 */
export function h2Request(target: string | http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, timeoutMs = 5000, body?: string): Promise<H2Answer> {
  const own = typeof target === 'string' ? http2.connect(target) : null;
  const session = own ?? (target as http2.ClientHttp2Session);
  own?.on('error', () => undefined);
  const t0 = performance.now();
  return new Promise<H2Answer>((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined });
    const timer = setTimeout(() => {
      req.close();
      reject(new Error(`no answer to ${String(headers[':path'])} within ${timeoutMs} ms`));
    }, timeoutMs);
    let status = 0;
    let got: http2.IncomingHttpHeaders = {};
    let text = '';
    req.on('response', (h) => {
      got = h;
      status = Number(h[':status']);
    });
    req.setEncoding('utf8');
    req.on('data', (d: string) => (text += d));
    req.on('error', () => undefined);
    req.on('close', () => {
      clearTimeout(timer);
      resolve({ status, headers: got, body: text, rstCode: req.rstCode ?? 0, ms: performance.now() - t0 });
    });
    if (body !== undefined) req.end(body);
  }).finally(() => own?.close());
}
