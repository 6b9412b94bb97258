// @ts-check
/**
 * Load: a constant arrival rate per scenario (open model: latency does not slow the
 * offered load down), with p99 and error-rate thresholds per route.
 *   k6 run -e BASE_URL=... -e TOKEN_ENDPOINT=... -e RATE=500 -e DURATION=5m k6/load.js
 */
import { obtainTokens, request, scenarioBlock, selectedScenarios, thresholds } from './lib/common.js';
import { droppedIterationsBudget } from './lib/plan.js';

const rate = Number(__ENV.RATE || 200);
const duration = __ENV.DURATION || '2m';
const vus = Number(__ENV.VUS || 50);

export const options = {
  scenarios: scenarioBlock(() => ({
    executor: 'constant-arrival-rate',
    rate,
    timeUnit: '1s',
    duration,
    preAllocatedVUs: vus,
    maxVUs: Number(__ENV.MAX_VUS || 500),
  })),
  thresholds: {
    ...thresholds(Number(__ENV.P99_MS || 50), Number(__ENV.MAX_ERROR_RATE || 0.001)),
    // At most 1 % of the iterations offered: RATE per second in each scenario for DURATION.
    dropped_iterations: [`count<=${droppedIterationsBudget(rate, duration, selectedScenarios().length, 0.01)}`],
  },
};

export function setup() {
  return obtainTokens(vus);
}

/** @param {ReturnType<typeof obtainTokens>} tokens */
export function run(tokens) {
  request(__ENV.SCENARIO, tokens);
}
