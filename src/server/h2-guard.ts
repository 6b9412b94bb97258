/**
 * Per-session limits on HTTP/2 abuse that nghttp2 and Node leave open, measured on the
 * gateway's Node versions (test/security/h2-*.test.ts pins each):
 *
 * - **Rapid reset** (CVE-2023-44487): nghttp2's own limit (a token bucket of 1000 resets,
 *   33 a second) sends GOAWAY but Node keeps reading the socket, so a client that goes on
 *   opening and cancelling streams is never disconnected, and each stream it opens may
 *   already be on its way upstream. Here, as Envoy does (`premature_reset_*`): once a
 *   session has opened {@link RESET_MIN_STREAMS} streams and more than half of them were
 *   reset within {@link PREMATURE_MS} of opening, it is closed.
 * - **SETTINGS flood** (CVE-2019-9515): every SETTINGS frame is applied and acknowledged;
 *   Node 20 answers them for as long as the client reads. A token bucket bounds them.
 * - **PING flood** (CVE-2019-9512): nghttp2 closes a session whose peer does not read the
 *   acknowledgements, not one that does. A PING that arrives after the gateway has written
 *   data since the previous one is free (gRPC clients measure bandwidth with a PING per
 *   round trip of data they receive); others take from a token bucket.
 * - **SETTINGS never acknowledged** (RFC 9113 §6.5.3): until the client acknowledges the
 *   gateway's SETTINGS, `maxConcurrentStreams` and `maxHeaderBytes` are not yet in force
 *   for it; past `headersTimeoutMs` the session ends with SETTINGS_TIMEOUT.
 *
 * A session over a limit is sent GOAWAY (ENHANCE_YOUR_CALM, or SETTINGS_TIMEOUT) and
 * destroyed at once: streams it still had are reset, its socket is closed.
 */
import http2, { type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_SETTINGS_TIMEOUT, NGHTTP2_NO_ERROR } = http2.constants;

/** Streams a session opens before its share of premature resets is judged (Envoy's default). */
export const RESET_MIN_STREAMS = 100;
/** A stream reset this soon after it opened counts as premature (Envoy: 1 s). */
export const PREMATURE_MS = 1000;
/** SETTINGS frames a client may send at once, and how many more a second. */
export const SETTINGS_BURST = 100;
export const SETTINGS_PER_SEC = 10;
/** PING frames (not following data the gateway wrote) a client may send at once, and how many more a second. */
export const PING_BURST = 100;
export const PING_PER_SEC = 10;
/** Bytes of a PING acknowledgement: written bytes beyond it since the last PING mean data flowed. */
const PING_ACK_BYTES = 17;

/** Why a session was closed, for the log line. */
export type H2Abuse = 'rapid_reset' | 'settings_flood' | 'ping_flood' | 'settings_timeout';

/** A token bucket: `burst` tokens, refilled at `perSec`, on a monotonic clock. */
class Bucket {
  private tokens: number;
  private at = performance.now();
  constructor(private readonly burst: number, private readonly perSec: number) {
    this.tokens = burst;
  }

  /** Takes a token; false when none is left. */
  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perSec);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * Puts the limits above on `session`. `settingsTimeoutMs` bounds the wait for the SETTINGS
 * acknowledgement; `onAbuse` hears why a session was closed (before it is).
 */
export function guardSession(session: ServerHttp2Session, settingsTimeoutMs: number, onAbuse: (why: H2Abuse) => void): void {
  let closed = false;
  const end = (why: H2Abuse, code: number): void => {
    if (closed || session.destroyed) return;
    closed = true;
    onAbuse(why);
    // GOAWAY with the reason's code first: destroy(undefined, code) sends NO_ERROR on Node 20.
    session.goaway(code);
    session.destroy();
  };

  const ackTimer = setTimeout(() => end('settings_timeout', NGHTTP2_SETTINGS_TIMEOUT), settingsTimeoutMs);
  ackTimer.unref();
  session.once('localSettings', () => clearTimeout(ackTimer));
  session.once('close', () => clearTimeout(ackTimer));

  const settings = new Bucket(SETTINGS_BURST, SETTINGS_PER_SEC);
  session.on('remoteSettings', () => {
    if (!settings.take()) end('settings_flood', NGHTTP2_ENHANCE_YOUR_CALM);
  });

  const pings = new Bucket(PING_BURST, PING_PER_SEC);
  let writtenAtPing = 0;
  session.on('ping', () => {
    const written = session.socket?.bytesWritten ?? 0;
    const dataFlowed = written - writtenAtPing > PING_ACK_BYTES;
    writtenAtPing = written;
    if (!dataFlowed && !pings.take()) end('ping_flood', NGHTTP2_ENHANCE_YOUR_CALM);
  });

  let opened = 0;
  let premature = 0;
  session.on('stream', (stream: ServerHttp2Stream) => {
    opened++;
    const since = performance.now();
    stream.once('close', () => {
      if (stream.rstCode === undefined || stream.rstCode === NGHTTP2_NO_ERROR) return;
      if (performance.now() - since > PREMATURE_MS) return;
      premature++;
      if (opened >= RESET_MIN_STREAMS && premature * 2 > opened) end('rapid_reset', NGHTTP2_ENHANCE_YOUR_CALM);
    });
  });
}
