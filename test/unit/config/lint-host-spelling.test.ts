/**
 * Lint: a `mode: none` route shadowing a later protected route must be warned about however
 * the two spell the same host. Matching compares hosts through `hostOnly` (case, port and
 * trailing dots ignored, src/pipeline/match.ts); the lint must compare them the same way, or
 * `host: api.example.com.` (or `api.example.com:8443`) in front of `host: api.example.com`
 * silently opens every protected path below it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../../src/config/load.js';
import { compileConfig } from '../../../src/config/compile.js';
import { matchRoute } from '../../../src/pipeline/match.js';
import { lintConfig } from '../../../src/config/lint.js';

const yaml = (openHost: string) => `
issuers:
  - { id: corp, issuer: https://idp.example.com, jwksUri: https://idp.example.com/jwks, audiences: [api] }
routes:
  - { id: open, match: { host: "${openHost}", pathPrefix: / }, upstream: https://svc.internal, auth: { mode: none } }
  - { id: admin, match: { host: api.example.com, pathPrefix: /admin }, upstream: https://svc.internal, auth: { mode: jwt } }
`;

for (const openHost of ['API.example.com', 'api.example.com.', 'api.example.com:8443']) {
  test(`mode: none on host "${openHost}" shadowing host api.example.com is warned about`, () => {
    const config = parseConfig(yaml(openHost), 't.yaml');
    // The proxy really sends the protected path to the open route.
    assert.equal(matchRoute(compileConfig(config).routes, 'GET', 'api.example.com', '/admin/users')?.id, 'open');
    const warnings = lintConfig(config).map((w) => `${w.path.join('.')}: ${w.message}`);
    assert.ok(warnings.some((w) => /shadows protected routes\[1\] \(admin\)/.test(w)), warnings.join('\n') || '(no warnings)');
    assert.ok(warnings.some((w) => /routes\.1\.match: is unreachable/.test(w)), warnings.join('\n') || '(no warnings)');
  });
}
