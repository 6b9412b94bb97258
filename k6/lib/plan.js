// @ts-check
/**
 * The pure parts of the k6 scripts (no k6 module imported), so that Node tests can run
 * them: reading a k6 duration, the dropped-iterations budget of an arrival-rate run, and
 * one VU's share of the all-distinct tokens.
 */

/**
 * Seconds in a k6 duration as the scripts take it from the environment (Go's
 * time.ParseDuration units h, m, s, ms, in any combination: "90s", "5m", "1h30m", "1.5h").
 * Throws on anything else, so that a threshold is never computed from a misread duration.
 * @param {string} text
 * @returns {number}
 */
export function durationSec(text) {
  const unit = /** @type {Record<string, number>} */ ({ h: 3600, m: 60, s: 1, ms: 0.001 });
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/y;
  let total = 0;
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m) throw new Error(`not a duration: "${text}"`);
    total += Number(m[1]) * unit[m[2]];
    at = re.lastIndex;
  }
  if (!text.length) throw new Error('empty duration');
  return total;
}

/**
 * The most dropped iterations a constant-arrival-rate run may have: `fraction` of what it
 * offers, `rate` per second in each of `scenarios` scenarios for `duration`.
 * @param {number} rate
 * @param {string} duration
 * @param {number} scenarios
 * @param {number} fraction
 * @returns {number}
 */
export function droppedIterationsBudget(rate, duration, scenarios, fraction) {
  return Math.floor(rate * durationSec(duration) * scenarios * fraction);
}

/**
 * One VU's share of the all-distinct tokens. The share is fetched one token per call on
 * first use (so setup() fetches none, and no VU receives every token), then cycled; a
 * token with less than `renewBelowSec` left is replaced by a new one, so a run may outlast
 * the tokens' lifetime. k6 gives every VU its own instance of the module that holds one.
 */
export class DistinctTokens {
  /**
   * @param {number} perVu tokens this VU cycles through
   * @param {() => string} fetch one new token (a grant at the token endpoint)
   * @param {(token: string) => number} secondsLeft seconds until the token's `exp`
   * @param {number} [renewBelowSec]
   */
  constructor(perVu, fetch, secondsLeft, renewBelowSec = 60) {
    this.perVu = Math.max(1, perVu);
    this.fetch = fetch;
    this.secondsLeft = secondsLeft;
    this.renewBelowSec = renewBelowSec;
    /** @type {string[]} */
    this.tokens = [];
    this.next = 0;
  }

  /** The token for this request. @returns {string} */
  take() {
    if (this.tokens.length < this.perVu) {
      const t = this.fetch();
      this.tokens.push(t);
      return t;
    }
    const i = this.next++ % this.tokens.length;
    if (this.secondsLeft(this.tokens[i]) < this.renewBelowSec) this.tokens[i] = this.fetch();
    return this.tokens[i];
  }
}
