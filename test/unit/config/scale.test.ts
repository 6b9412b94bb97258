/**
 * Cost that does not grow faster than the config: `tokengate check` (load, validate,
 * compile, lint, describe) and a gateway's start on 10 000 routes finish well within a
 * generous bound, and grow about linearly from 2 500 routes (a quadratic step would grow
 * 16-fold). A config file over the size cap is refused with a config error naming it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, describeRoutes, formatProblem, loadChecked, loadCompiled } from '../../../src/config/index.js';
import { MAX_CONFIG_BYTES, parseConfig } from '../../../src/config/load.js';
import { matchRoute } from '../../../src/pipeline/match.js';
import { startGateway } from '../../helpers/gateway.js';

const dir = mkdtempSync(join(tmpdir(), 'tokengate-scale-'));

/**
 * A config of `n` routes as a large deployment writes them: hosts, nested prefixes, exact
 * paths, methods, public and protected routes, scopes and identity headers, in flow and block
 * style. Three warnings on purpose: a public route shadows (and makes unreachable) the next one,
 * and the last route is unreachable.
 */
function bigConfig(n: number): string {
  const lines = [`issuers:
  - { id: corp, issuer: https://idp.example.com, jwksUri: http://127.0.0.1:9/jwks, audiences: [api] }
  - { id: partners, issuer: https://partners.example.com, jwksUri: http://127.0.0.1:9/jwks2, audiences: [api] }
routes:
  - { id: public-docs, match: { pathPrefix: /team0/docs }, upstream: http://docs.internal, auth: { mode: none } }
  - { id: docs-admin, match: { pathPrefix: /team0/docs/admin }, upstream: http://docs.internal, auth: { mode: jwt } }`];
  for (let i = 0; i < n - 2; i++) {
    const team = `team${i % 113}`;
    const host = i % 3 === 0 ? `host: svc${i % 41}.example.com, ` : '';
    const methods = i % 4 === 0 ? ', methods: [GET, HEAD]' : i % 4 === 1 ? ', methods: [POST]' : '';
    const path = i % 7 === 0 ? `path: /${team}/svc${i}/status` : `pathPrefix: /${team}/svc${i}/v${i % 3}`;
    if (i % 10 === 0) {
      lines.push(`  - { id: r${i}, match: { ${host}${path}${methods} }, upstream: http://svc${i}.internal:8080, auth: { mode: none } }`);
    } else if (i % 10 === 1) {
      lines.push(`  - id: r${i}\n    match: { ${host}${path}${methods} }\n    upstream: http://svc${i}.internal:8080\n    auth:\n      mode: jwt\n      issuers: [corp, partners]\n      scopes: { anyOf: [svc${i}:read, svc${i}:admin] }\n      claims: { tenant: t${i % 17} }\n    forward:\n      headers: { x-auth-subject: sub, x-auth-scopes: scope }\n      claimsHeader: x-auth-claims`);
    } else {
      lines.push(`  - { id: r${i}, match: { ${host}${path}${methods} }, upstream: http://svc${i}.internal:8080, auth: { mode: jwt, scopes: { allOf: [svc${i}:read] } }, forward: { headers: { x-auth-subject: sub } } }`);
    }
  }
  lines.push('  - { id: unreachable, match: { path: /team0/docs/x }, upstream: http://docs.internal, auth: { mode: none } }');
  return lines.join('\n') + '\n';
}

/** CPU milliseconds (user + system) that `f` takes. */
async function cpuMs(f: () => Promise<unknown> | unknown): Promise<number> {
  const c0 = process.cpuUsage();
  await f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

/** What `tokengate check` does, on a file of `n` routes; returns its CPU ms. */
async function check(n: number): Promise<{ ms: number; bytes: number }> {
  const text = bigConfig(n);
  const file = join(dir, `routes-${n}.yaml`);
  writeFileSync(file, text);
  const ms = await cpuMs(() => {
    const { config, warnings: found } = loadChecked(file, {});
    assert.equal(config.routes.length, n + 1);
    assert.equal(describeRoutes(config).length, n + 1);
    const warnings = found.map(formatProblem);
    assert.deepEqual(warnings, [
      `${file}:5 routes[0].match mode: none shadows protected routes[1] (docs-admin): its requests match here first and pass without a token`,
      `${file}:6 routes[1].match is unreachable: routes[0] (public-docs) comes first and takes every request this route matches`,
      `${file}:${text.split('\n').length - 1} routes[${n}].match is unreachable: routes[0] (public-docs) comes first and takes every request this route matches`,
    ]);
    // The route near the end (POST only, any host) is found by the index, and only for POST.
    const i = n - 3;
    const at = `/team${i % 113}/svc${i}/v${i % 3}/x`;
    if (i % 4 === 1 && i % 7 !== 0 && i % 3 !== 0) {
      assert.equal(matchRoute(config.routeIndex, 'POST', 'any.example.com', at)?.id, `r${i}`);
      assert.equal(matchRoute(config.routeIndex, 'GET', 'any.example.com', at), null);
    }
  });
  return { ms, bytes: text.length };
}

test('check on 10 000 routes stays within a generous bound and grows about linearly', { timeout: 120_000 }, async () => {
  await check(500); // warm up the JIT, so that the small run below is not charged for it
  const small = await check(2_500);
  const large = await check(10_000);
  console.log(`check: 2 500 routes ${small.ms.toFixed(0)} ms CPU, 10 000 routes (${(large.bytes / 1e6).toFixed(1)} MB) ${large.ms.toFixed(0)} ms CPU`);
  assert.ok(large.ms < 10_000, `10 000 routes took ${large.ms} ms of CPU`);
  assert.ok(large.ms / small.ms < 8, `4x the routes took ${(large.ms / small.ms).toFixed(1)}x the time: not linear`);
});

test('a gateway starts on 10 000 routes within a generous bound', { timeout: 120_000 }, async () => {
  let gw: Awaited<ReturnType<typeof startGateway>> | undefined;
  const ms = await cpuMs(async () => {
    gw = await startGateway(bigConfig(10_000));
  });
  try {
    console.log(`start: 10 000 routes ${ms.toFixed(0)} ms CPU`);
    assert.ok(ms < 10_000, `start took ${ms} ms of CPU`);
    // Route r10 is public; its upstream does not resolve: a 502 shows the route was matched.
    const r = await fetch(`${gw!.url}/team10/svc10/v1/x`);
    assert.equal(r.status, 502);
    assert.equal((await fetch(`${gw!.url}/team10/svc10/v2/x`)).status, 404);
  } finally {
    await gw?.close();
  }
});

test(`a config file over ${MAX_CONFIG_BYTES} bytes is refused with a config error naming the file`, () => {
  const file = join(dir, 'huge.yaml');
  const text = `routes: []\n# ${'x'.repeat(MAX_CONFIG_BYTES)}\n`;
  writeFileSync(file, text);
  assert.throws(() => loadCompiled(file, {}), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.problems.map(formatProblem), [`${file}:0 (root) is 10.0 MiB, more than the 10.0 MiB a config file may have`]);
    return true;
  });
  assert.throws(() => parseConfig(text, 'inline.yaml', {}), /inline\.yaml:0 \(root\) is 10\.0 MiB, more than the 10\.0 MiB/);
  // Just under the cap is read (and here, invalid for other reasons only).
  const under = `routes: []\n# ${'x'.repeat(MAX_CONFIG_BYTES - 20)}\n`;
  assert.throws(() => parseConfig(under, 'under.yaml', {}), (e: unknown) => e instanceof ConfigError && !/MiB/.test(e.message));
});
