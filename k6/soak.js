// @ts-check
/**
 * Soak: a moderate constant arrival rate for hours, to catch leaks and slow drift (watch
 * the gateway's RSS and tokengate_* metrics meanwhile). Tokens from the token endpoint
 * are renewed per VU before they expire (the all-distinct ones by lib/common.js), so the run
 * may outlast their lifetime.
 *   k6 run -e BASE_URL=... -e TOKEN_ENDPOINT=... -e RATE=100 -e DURATION=4h k6/soak.js
 */
import { fetchToken, obtainTokens, request, scenarioBlock, secondsLeft, thresholds } from './lib/common.js';

const vus = Number(__ENV.VUS || 20);

export const options = {
  scenarios: scenarioBlock(() => ({
    executor: 'constant-arrival-rate',
    rate: Number(__ENV.RATE || 50),
    timeUnit: '1s',
    duration: __ENV.DURATION || '1h',
    preAllocatedVUs: vus,
    maxVUs: Number(__ENV.MAX_VUS || 200),
  })),
  thresholds: thresholds(Number(__ENV.P99_MS || 100), Number(__ENV.MAX_ERROR_RATE || 0.001)),
};

export function setup() {
  return obtainTokens(vus);
}

/** This VU's tokens, renewed when one has less than a minute left. */
/** @type {ReturnType<typeof obtainTokens> | null} */
let mine = null;

/** @param {ReturnType<typeof obtainTokens>} tokens */
export function run(tokens) {
  if (!mine) mine = { ...tokens, rs256: [...tokens.rs256], es256: [...tokens.es256], eddsa: [...tokens.eddsa] };
  if (__ENV.TOKEN_ENDPOINT && !__ENV.TOKEN) {
    /** @type {Array<['rs256' | 'es256' | 'eddsa', string]>} */
    const kinds = [['rs256', 'RS256'], ['es256', 'ES256'], ['eddsa', 'EdDSA']];
    for (const [field, alg] of kinds) {
      const t = mine[field][0];
      if (t && secondsLeft(t) < 60) mine[field] = [fetchToken(alg)];
    }
  }
  request(__ENV.SCENARIO, mine);
}
