// @ts-check
/**
 * Spike: the arrival rate jumps from RATE to RATE × SPIKE_FACTOR for a while, then comes
 * back; thresholds are looser than load.js but must hold through the spike.
 *   k6 run -e BASE_URL=... -e TOKEN_ENDPOINT=... -e RATE=200 -e SPIKE_FACTOR=10 k6/spike.js
 */
import { obtainTokens, request, scenarioBlock, thresholds } from './lib/common.js';

const rate = Number(__ENV.RATE || 100);
const peak = rate * Number(__ENV.SPIKE_FACTOR || 10);
const vus = Number(__ENV.VUS || 100);

export const options = {
  scenarios: scenarioBlock(() => ({
    executor: 'ramping-arrival-rate',
    startRate: rate,
    timeUnit: '1s',
    preAllocatedVUs: vus,
    maxVUs: Number(__ENV.MAX_VUS || 2000),
    stages: [
      { target: rate, duration: '30s' },
      { target: peak, duration: '10s' },
      { target: peak, duration: __ENV.SPIKE_DURATION || '1m' },
      { target: rate, duration: '10s' },
      { target: rate, duration: '30s' },
    ],
  })),
  thresholds: thresholds(Number(__ENV.P99_MS || 250), Number(__ENV.MAX_ERROR_RATE || 0.01)),
};

export function setup() {
  return obtainTokens(vus);
}

/** @param {ReturnType<typeof obtainTokens>} tokens */
export function run(tokens) {
  request(__ENV.SCENARIO, tokens);
}
