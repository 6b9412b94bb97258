// @ts-check
/**
 * Smoke: every bench scenario a few times with one VU; any unexpected status fails the run.
 *   k6 run -e BASE_URL=... -e TOKEN_ENDPOINT=... k6/smoke.js
 */
import { obtainTokens, request, scenarioBlock, thresholds } from './lib/common.js';

export const options = {
  scenarios: scenarioBlock(() => ({ executor: 'per-vu-iterations', vus: 1, iterations: Number(__ENV.ITERATIONS || 5), maxDuration: '1m' })),
  thresholds: thresholds(Number(__ENV.P99_MS || 500), 0),
};

export function setup() {
  return obtainTokens(1);
}

/** @param {ReturnType<typeof obtainTokens>} tokens */
export function run(tokens) {
  request(__ENV.SCENARIO, tokens);
}
