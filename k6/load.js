// @ts-check
/**
 * Load: a constant arrival rate per scenario (open model: latency does not slow the
 * offered load down), with p99 and error-rate thresholds per route.
 *   k6 run -e BASE_URL=... -e TOKEN_ENDPOINT=... -e RATE=500 -e DURATION=5m k6/load.js
 */
import { obtainTokens, request, scenarioBlock, thresholds } from './lib/common.js';

const rate = Number(__ENV.RATE || 200);

export const options = {
  scenarios: scenarioBlock(() => ({
    executor: 'constant-arrival-rate',
    rate,
    timeUnit: '1s',
    duration: __ENV.DURATION || '2m',
    preAllocatedVUs: Number(__ENV.VUS || 50),
    maxVUs: Number(__ENV.MAX_VUS || 500),
  })),
  thresholds: {
    ...thresholds(Number(__ENV.P99_MS || 50), Number(__ENV.MAX_ERROR_RATE || 0.001)),
    dropped_iterations: [`count<=${Math.ceil(rate * 0.01)}`],
  },
};

export function setup() {
  return obtainTokens();
}

/** @param {ReturnType<typeof obtainTokens>} tokens */
export function run(tokens) {
  request(__ENV.SCENARIO, tokens);
}
