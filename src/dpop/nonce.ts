/**
 * Stateless DPoP server nonces (RFC 9449 §8): a nonce is HMAC-SHA256(secret, window
 * number), base64url, where windows are `windowSec` long. The nonce of the current and of
 * the previous window are accepted, so a nonce lives between one and two windows.
 *
 * Why stateless: every replica that shares the secret derives the same nonce for the same
 * window, so a nonce handed out by one replica is accepted by all of them without a
 * shared store, and nonce checks cost one HMAC, never a network round trip. The price is
 * that nonces rotate on a fixed schedule rather than per client, which RFC 9449 §8 allows
 * (the nonce only has to be unpredictable and fresh).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Result of checking a proof's `nonce` claim. */
export type NonceCheck = 'current' | 'previous' | 'invalid';

/** Derives and checks server nonces. */
export class NonceSource {
  private readonly secret: Buffer;
  private readonly windowMs: number;
  private readonly now: () => number;
  private cachedWindow = -1;
  private cachedNonce = '';

  /** `secret` is shared by every replica; `windowSec` is the rotation period. */
  constructor(secret: string, windowSec: number, now: () => number = Date.now) {
    this.secret = Buffer.from(secret, 'utf8');
    this.windowMs = windowSec * 1000;
    this.now = now;
  }

  private derive(window: number): string {
    return createHmac('sha256', this.secret).update(`tokengate-dpop-nonce:${window}`).digest('base64url');
  }

  /** The nonce of the current window (what a `DPoP-Nonce` header carries). */
  current(): string {
    const w = Math.floor(this.now() / this.windowMs);
    if (w !== this.cachedWindow) {
      this.cachedWindow = w;
      this.cachedNonce = this.derive(w);
    }
    return this.cachedNonce;
  }

  /** Whether `nonce` is the current window's, the previous window's, or neither. */
  check(nonce: unknown): NonceCheck {
    if (typeof nonce !== 'string' || nonce.length !== 43) return 'invalid';
    const cur = this.current();
    if (safeEqual(nonce, cur)) return 'current';
    if (safeEqual(nonce, this.derive(this.cachedWindow - 1))) return 'previous';
    return 'invalid';
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
