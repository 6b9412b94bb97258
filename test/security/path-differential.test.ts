/**
 * Differential path tests (issue 6 §1): generated request targets — dot-segments,
 * percent-encodings of every byte in mixed-case hex, `%2e`, overlong UTF-8, `//`, `;`,
 * `#`, `\`, unicode — sent over raw sockets to a REAL gateway in front of recording
 * upstreams (one per route, so the port says which route the gateway chose).
 *
 * Invariant: the gateway answers 400 (and nothing reaches any upstream), or exactly one
 * upstream receives the request, and the route that the upstream's OWN view of the
 * received path would select equals the route the gateway chose. Two upstream views
 * are modelled: a WHATWG-URL router (Express/Node style: dot-segments incl. `%2e`
 * resolved, escapes kept) and a decoding router (Go/Spring/Flask style: decode once,
 * then resolve `.`/`..`, merge `//`, read `\` as `/`). With stripPrefix the upstream's
 * view is mapped back through the route's prefix and base path.
 *
 * fast-check prints the seed and counterexample on failure; FC_SEED=<n> replays one.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawExchange, rawGet } from '../helpers/raw-http.js';
import { issuerYaml } from '../helpers/fixture.js';

const RUNS = Number(process.env.FC_RUNS ?? 300);
const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;

/** The routes, as the model router sees them (first match wins, segment boundary). */
interface ModelRoute {
  id: string;
  prefix: string;
  protected: boolean;
  strip: boolean;
  /** Upstream base path ('' for none). */
  base: string;
}
const ROUTES: ModelRoute[] = [
  { id: 'admin', prefix: '/admin', protected: true, strip: false, base: '' },
  { id: 'private', prefix: '/api/private', protected: true, strip: false, base: '' },
  { id: 'svc-admin', prefix: '/svc/admin', protected: true, strip: true, base: '/admin' },
  { id: 'svc', prefix: '/svc', protected: false, strip: true, base: '' },
  { id: 'public', prefix: '/', protected: false, strip: false, base: '' },
];

function under(path: string, prefix: string): boolean {
  if (prefix === '/') return true;
  return path === prefix || path.startsWith(prefix + '/');
}

function modelRoute(path: string): ModelRoute {
  return ROUTES.find((r) => under(path, r.prefix)) as ModelRoute;
}

/** Resolves `.`/`..`, merges `//` (an upstream that does this after decoding). */
function resolveSegments(path: string): string {
  const out: string[] = [];
  const segs = path.split('/');
  segs.forEach((s, i) => {
    const last = i === segs.length - 1;
    if (s === '..') out.pop();
    else if (s !== '.' && s !== '') out.push(s);
    if (last && (s === '' || s === '.' || s === '..') && out.length) out.push('');
  });
  return '/' + out.join('/');
}

/** The upstream's own views of what it received (`req.url`); null: it would refuse it. */
function upstreamViews(received: string): string[] | null {
  let whatwg: string;
  try {
    whatwg = new URL(received, 'http://upstream').pathname;
  } catch {
    return null;
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(whatwg);
  } catch {
    return [whatwg]; // a decoding router answers 400; the WHATWG view still counts
  }
  return [whatwg, resolveSegments(decoded.replace(/\\/g, '/'))];
}

/** Maps an upstream view back to the gateway path it stands for, through `route`'s base and prefix. */
function backToGatewayPath(view: string, route: ModelRoute): string | null {
  let p = view;
  if (route.base) {
    if (!under(p, route.base)) return null; // climbed out of the base path
    p = p.slice(route.base.length) || '/';
  }
  if (route.strip) p = route.prefix + (p === '/' ? '' : p);
  return p;
}

const hexCase = (b: number, mask: number) =>
  '%' + b.toString(16).padStart(2, '0').split('').map((c, i) => (mask & (1 << i) ? c.toUpperCase() : c)).join('');
const byteEscape = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 3 })).map(([b, m]) => hexCase(b, m));
// Segments the gateway may well accept (dot-segments in every spelling, escaped unreserved
// characters, case games) and hostile ones it must refuse or keep escaped.
const plausible = fc.constantFrom(
  'admin', 'api', 'private', 'svc', 'x', '', '.', '..', '%2e', '%2E', '%2e%2e', '.%2e', '%2E.', '%2e%2E',
  '%61dmin', 'adm%69n', '%41dmin', 'ADMIN', 'Admin', '%25', '%252e', '%252e%252e', '~', '%7e', '%7E', '*', '@', ':',
  'admin:', '%3a', '%3b', '%3B', '%23', '%3f', '%C3%A9', 'a%20b', '%ef%bc%8e', '%e2%80%a5', 'pr%69vate', '%73vc',
);
const hostile = fc.constantFrom(
  'admin;x', ';', ';admin', '..;', '#', 'admin#', '%2f', '%2F', '%5c', '%5C', '\\', '..\\', '\\..', '%00', '\u00e9',
  '%c0%ae', '%c0%af', '%e0%80%ae', '%c1%9c', '%ff', '%', '%zz', '%2', '%u002e', '\u2025', '\uff0e\uff0e', '\u0000',
  '%2e%2e%2f', 'a b', '"', '<', '|', '^', '`', '{', '[',
);
const segment = fc.oneof(
  { weight: 12, arbitrary: plausible },
  { weight: 1, arbitrary: hostile },
  { weight: 2, arbitrary: byteEscape },
  { weight: 3, arbitrary: fc.array(fc.oneof(fc.constantFrom('a', 'd', 'm', 'i', 'n', '.', '%2e', '%2E', '%61', '%6D'), byteEscape), { minLength: 1, maxLength: 4 }).map((a) => a.join('')) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 2 }) },
);
const lead = fc.constantFrom('', 'svc', 'api', 'svc/admin', 'api/private', 'pub', 'admin');
const target = fc.tuple(
  lead,
  fc.array(segment, { minLength: 0, maxLength: 6 }),
  fc.constantFrom('/', '//', '/./'),
  fc.constantFrom('', '', '/', '?a=1', '?p=/admin/../x', '#frag', '?a#b'),
).map(([l, segs, sep, tail]) => '/' + [l, ...segs].filter((s, i) => i > 0 || s !== '').join(sep) + tail);

/** Status counts, printed at the end (shows the generator reaches the upstreams). */
const stats = new Map<string, number>();
let iss: MockIssuer;
let gw: TestGateway;
let token: string;
const ups = new Map<string, EchoUpstream>();

before(async () => {
  iss = await startMockIssuer();
  for (const r of ROUTES) ups.set(r.id, await startUpstream());
  const routeYaml = ROUTES.map((r) => `
  - id: ${r.id}
    match: { pathPrefix: ${r.prefix} }
    upstream: ${ups.get(r.id)!.url}${r.base}
    stripPrefix: ${r.strip}
    auth: ${r.protected ? '{ mode: jwt }' : '{ mode: none }'}`).join('');
  gw = await startGateway(`
${issuerYaml(iss)}routes:${routeYaml}
`);
  await gw.ready();
  token = await iss.sign({ claims: { exp: Math.floor(Date.now() / 1000) + 3600 } });
});
after(async () => {
  console.log('path-differential statuses:', JSON.stringify(Object.fromEntries(stats)));
  await gw?.close();
  for (const u of ups.values()) await u.close();
  await iss?.close();
});

function received(): Array<{ route: ModelRoute; url: string }> {
  const out: Array<{ route: ModelRoute; url: string }> = [];
  for (const r of ROUTES) for (const q of ups.get(r.id)!.requests) out.push({ route: r, url: q.url });
  return out;
}

async function checkTarget(t: string, withToken: boolean): Promise<void> {
  for (const u of ups.values()) u.reset();
  const extra = withToken ? [`Authorization: Bearer ${token}`] : [];
  // Unicode goes out as UTF-8 bytes (rawExchange writes latin1 text byte for byte).
  const ex = await rawExchange(Number(new URL(gw.url).port), [Buffer.from(rawGet(t, extra), 'utf8')]);
  assert.ok(ex.responses.length >= 1, `no response for ${JSON.stringify(t)}: ${JSON.stringify(ex.raw.slice(0, 100))}`);
  const status = ex.responses[0].status;
  const key = status === 200 ? `200:${received()[0]?.route.id}` : `${status}`;
  stats.set(key, (stats.get(key) ?? 0) + 1);
  const got = received();
  if (status === 400) {
    assert.equal(got.length, 0, `400 but the upstream got ${JSON.stringify(got)}`);
    return;
  }
  if (!withToken && status === 401) {
    assert.equal(got.length, 0, `401 but the upstream got ${JSON.stringify(got)}`);
    return;
  }
  assert.equal(status, 200, `unexpected ${status} for ${JSON.stringify(t)}`);
  assert.equal(got.length, 1, `${JSON.stringify(t)} reached ${got.length} upstream requests`);
  const [{ route, url }] = got;
  if (!withToken) assert.equal(route.protected, false, `${JSON.stringify(t)} reached protected route ${route.id} without a token`);
  const views = upstreamViews(url);
  assert.ok(views, `gateway forwarded an unparseable target ${JSON.stringify(url)}`);
  for (const view of views) {
    const back = backToGatewayPath(view, route);
    assert.ok(back !== null, `${JSON.stringify(t)} -> upstream of ${route.id} saw ${JSON.stringify(view)}, outside its base path`);
    const chosen = modelRoute(back);
    assert.equal(chosen.id, route.id,
      `${JSON.stringify(t)}: gateway chose ${route.id}, upstream received ${JSON.stringify(url)} (view ${JSON.stringify(view)}) which means ${chosen.id}`);
  }
}

test('model sanity: the invariant checker catches a known bypass', () => {
  // What a naive gateway would forward for /pub/%2e%2e/admin: the upstream resolves it to /admin.
  const views = upstreamViews('/pub/%2e%2e/admin')!;
  assert.equal(modelRoute(backToGatewayPath(views[0], ROUTES[4])!).id, 'admin');
  // and a decoding upstream turns /pub/..%2fadmin into /admin (the gateway must refuse %2f)
  assert.equal(modelRoute(upstreamViews('/pub/..%2fadmin')![1]).id, 'admin');
  // stripPrefix: /svc/%2e%2e/admin would be /../admin -> /admin upstream, i.e. svc-admin
  assert.equal(modelRoute(backToGatewayPath(upstreamViews('/%2e%2e/admin')![0], ROUTES[3])!).id, 'svc-admin');
});

test('hand-picked targets keep the invariant', async () => {
  for (const t of [
    '/admin', '/pub/../admin', '/pub/%2e%2e/admin', '/pub/%2E%2e/admin', '/pub/.%2e/admin', '/pub/..%2fadmin', '/pub/..%5cadmin',
    '/pub/..\\admin', '/pub;/../admin', '/admin;x', '/%61dmin', '/adm%69n/x', '//admin', '/./admin', '/svc/../admin',
    '/svc/%2e%2e/admin', '/svc/admin', '/svc//admin', '/svc/./admin/x', '/svc/x/../admin', '/api/x/../private',
    '/api/%70rivate', '/pub/%c0%ae%c0%ae/admin', '/pub/%252e%252e/admin', '/pub#/../admin', '/pub/x?/../admin',
    '/%2e%2e/admin', '/pub/%00/../admin', '/pub/\u2025/admin',
  ]) {
    await checkTarget(t, true);
    await checkTarget(t, false);
  }
});

test('generated targets: 400, or the upstream\'s view selects the same route (with a token)', async () => {
  await fc.assert(fc.asyncProperty(target, (t) => checkTarget(t, true)), { numRuns: RUNS, seed: SEED });
});

test('generated targets: no protected route is reached without a token', async () => {
  await fc.assert(fc.asyncProperty(target, (t) => checkTarget(t, false)), { numRuns: RUNS, seed: SEED });
});
