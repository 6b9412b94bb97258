// @ts-check
/**
 * Shared pieces of the k6 scripts: settings from the environment, tokens, and one
 * request function per bench scenario (the same scenarios `npm run bench` measures).
 *
 * Environment (k6 -e NAME=value):
 *   BASE_URL            the gateway, e.g. https://api.example.com (default http://127.0.0.1:8080)
 *   NONE_PATH           a `mode: none` route (default /health)
 *   JWT_PATH            a `mode: jwt` route the tokens may call (default /orders/1)
 *   INTROSPECTION_PATH  a route that introspects opaque tokens (scenario off when unset)
 *   TOKEN_ENDPOINT      client-credentials token endpoint (the dev issuer's /token works)
 *   CLIENT_ID, CLIENT_SECRET   client authentication at TOKEN_ENDPOINT (HTTP Basic when a secret is set)
 *   SCOPE, AUDIENCE     asked for in the grant (default orders:read, demo-api)
 *   ALGS                signing algorithms to ask the dev issuer for (default RS256,ES256,EdDSA)
 *   TOKEN               use this token for every JWT scenario instead (no token endpoint needed)
 *   TOKEN_RS256, TOKEN_ES256, TOKEN_EDDSA   per-algorithm tokens instead
 *   OPAQUE_TOKEN        an opaque token for the introspection scenario
 *   DISTINCT_TOKENS     tokens the all-distinct scenario cycles through (default 100; 0 turns it off),
 *                       spread over the script's VUs: each VU fetches its share on first use and
 *                       renews a token before its `exp` (needs TOKEN_ENDPOINT)
 *   SCENARIOS           comma-separated subset of: none,jwt-rs256,jwt-es256,jwt-eddsa,jwt-rs256-distinct,jwt-rs256-tampered,introspection-warm
 */
import http from 'k6/http';
import { check, fail } from 'k6';
import encoding from 'k6/encoding';
import { DistinctTokens } from './plan.js';

/**
 * What setup() hands every VU: the repeat tokens, and how many all-distinct tokens each VU
 * fetches for itself (never the distinct tokens themselves: k6 copies setup data into
 * every VU).
 * @typedef {{ rs256: string[], es256: string[], eddsa: string[], distinctPerVu: number, opaque: string }} Tokens
 */

const env = __ENV;
export const BASE_URL = (env.BASE_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const NONE_PATH = env.NONE_PATH || '/health';
const JWT_PATH = env.JWT_PATH || '/orders/1';
const INTROSPECTION_PATH = env.INTROSPECTION_PATH || '';

/** Every scenario, as in bench/harness.ts. */
export const ALL_SCENARIOS = ['none', 'jwt-rs256', 'jwt-es256', 'jwt-eddsa', 'jwt-rs256-distinct', 'jwt-rs256-tampered', 'introspection-warm'];

/** The scenarios this run takes (SCENARIOS, minus those without what they need). */
export function selectedScenarios() {
  const wanted = env.SCENARIOS ? env.SCENARIOS.split(',').map((s) => s.trim()) : ALL_SCENARIOS;
  return wanted.filter((s) => {
    if (s === 'introspection-warm') return Boolean(INTROSPECTION_PATH && env.OPAQUE_TOKEN);
    if (s === 'jwt-rs256-distinct') return Number(env.DISTINCT_TOKENS ?? 100) > 0 && Boolean(env.TOKEN_ENDPOINT) && !env.TOKEN && !env.TOKEN_RS256;
    return ALL_SCENARIOS.includes(s);
  });
}

/**
 * One access token by the client-credentials grant (RFC 6749 §4.4). The dev issuer
 * (src/dev/dev-issuer.ts) also reads `alg` and `audience` from the form.
 * @param {string} alg
 * @returns {string}
 */
export function fetchToken(alg) {
  const endpoint = env.TOKEN_ENDPOINT;
  if (!endpoint) fail('set TOKEN_ENDPOINT (client-credentials grant) or TOKEN');
  /** @type {Record<string, string>} */
  const form = { grant_type: 'client_credentials', scope: env.SCOPE || 'orders:read', audience: env.AUDIENCE || 'demo-api', alg };
  /** @type {Record<string, string>} */
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (env.CLIENT_SECRET) {
    headers.authorization = `Basic ${encoding.b64encode(`${env.CLIENT_ID || ''}:${env.CLIENT_SECRET}`)}`;
  } else if (env.CLIENT_ID) {
    form.client_id = env.CLIENT_ID;
  }
  const res = http.post(endpoint, form, { headers, tags: { name: 'token-endpoint' } });
  if (res.status !== 200) fail(`token endpoint answered ${res.status}`);
  const body = /** @type {{ access_token?: string }} */ (res.json());
  if (!body.access_token) fail('token endpoint answer has no access_token');
  return /** @type {string} */ (body.access_token);
}

/**
 * The tokens of a run: from TOKEN / TOKEN_<ALG> when set, else from the token endpoint.
 * Call it from `setup()`; `vus` is the number of VUs the all-distinct tokens are spread over
 * (the script's pre-allocated VUs).
 * @param {number} vus
 * @returns {Tokens}
 */
export function obtainTokens(vus) {
  const scenarios = selectedScenarios();
  const algs = (env.ALGS || 'RS256,ES256,EdDSA').split(',').map((a) => a.trim());
  /** @param {string} alg */
  const one = (alg) => {
    const given = env.TOKEN || env[`TOKEN_${alg.toUpperCase()}`];
    if (given) return [given];
    return algs.includes(alg) ? [fetchToken(alg)] : [];
  };
  const needs = (/** @type {string} */ s) => scenarios.includes(s);
  const distinct = needs('jwt-rs256-distinct') ? Number(env.DISTINCT_TOKENS ?? 100) : 0;
  return {
    rs256: needs('jwt-rs256') || needs('jwt-rs256-tampered') ? one('RS256') : [],
    es256: needs('jwt-es256') ? one('ES256') : [],
    eddsa: needs('jwt-eddsa') ? one('EdDSA') : [],
    distinctPerVu: Math.ceil(distinct / Math.max(1, vus)),
    opaque: env.OPAQUE_TOKEN || '',
  };
}

/** The same token with one signature character changed: a bad signature. @param {string} token */
export function tamper(token) {
  const dot = token.lastIndexOf('.') + 1;
  return token.slice(0, dot) + (token[dot] === 'A' ? 'B' : 'A') + token.slice(dot + 1);
}

const ok200 = http.expectedStatuses({ min: 200, max: 299 });
const ok401 = http.expectedStatuses(401);
/** This VU's share of the all-distinct tokens, made on its first distinct request. */
/** @type {DistinctTokens | null} */
let distinct = null;

/**
 * Sends one request of `scenario`; tags carry the route and the scenario, so thresholds
 * can be set per route. The tampered scenario expects 401 (it counts as a failure otherwise).
 * @param {string} scenario
 * @param {Tokens} tokens
 */
export function request(scenario, tokens) {
  /** @type {string} */
  let path = JWT_PATH;
  /** @type {string | null} */
  let token = null;
  let route = 'jwt';
  switch (scenario) {
    case 'none': path = NONE_PATH; route = 'none'; break;
    case 'jwt-rs256': token = tokens.rs256[0]; break;
    case 'jwt-es256': token = tokens.es256[0]; break;
    case 'jwt-eddsa': token = tokens.eddsa[0]; break;
    case 'jwt-rs256-distinct':
      if (!distinct) distinct = new DistinctTokens(tokens.distinctPerVu, () => fetchToken('RS256'), secondsLeft);
      token = distinct.take();
      break;
    case 'jwt-rs256-tampered': token = tamper(tokens.rs256[0]); break;
    case 'introspection-warm': path = INTROSPECTION_PATH; token = tokens.opaque; route = 'introspection'; break;
    default: fail(`unknown scenario ${scenario}`);
  }
  const tampered = scenario === 'jwt-rs256-tampered';
  const res = http.get(`${BASE_URL}${path}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    tags: { route, scenario, name: `${route}:${path}` },
    responseCallback: tampered ? ok401 : ok200,
  });
  check(res, tampered
    ? { 'tampered token refused with 401': (r) => r.status === 401 }
    : { 'status is 2xx': (r) => r.status >= 200 && r.status < 300 }, { route, scenario });
  return res;
}

/**
 * The thresholds every script shares: p99 and error rate per route tag.
 * @param {number} p99Ms
 * @param {number} maxErrorRate
 * @returns {Record<string, string[]>}
 */
export function thresholds(p99Ms, maxErrorRate) {
  /** @type {Record<string, string[]>} */
  const t = {
    http_req_failed: [`rate<=${maxErrorRate}`],
    checks: [`rate>=${1 - maxErrorRate}`],
  };
  for (const route of ['none', 'jwt', 'introspection']) {
    t[`http_req_duration{route:${route}}`] = [`p(99)<${p99Ms}`];
    t[`http_req_failed{route:${route}}`] = [`rate<=${maxErrorRate}`];
  }
  return t;
}

/**
 * A k6 `scenarios` block: one entry per selected bench scenario, built by `make`.
 * @param {(name: string) => Record<string, unknown>} make
 */
export function scenarioBlock(make) {
  /** @type {Record<string, Record<string, unknown>>} */
  const out = {};
  for (const name of selectedScenarios()) {
    out[name.replace(/-/g, '_')] = { ...make(name), exec: 'run', env: { SCENARIO: name }, tags: { scenario: name } };
  }
  return out;
}

/** Seconds until a JWT's `exp` (Infinity for an opaque token). @param {string} token */
export function secondsLeft(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return Infinity;
  try {
    const claims = JSON.parse(encoding.b64decode(parts[1], 'rawurl', 's'));
    return typeof claims.exp === 'number' ? claims.exp - Date.now() / 1000 : Infinity;
  } catch {
    return Infinity;
  }
}
