/**
 * The upstream's base path can never turn the forwarded path into a protocol-relative
 * reference: `upstream: http://u//` (a templated `${BASE}/` with BASE ending in `/`) gave a
 * base path of `/`, so `/s/evil.test/x` with stripPrefix went upstream as `//evil.test/x`,
 * which `new URL(req.url, base)` in the upstream reads as host `evil.test`. A base path
 * with an empty segment is refused when the config is loaded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { upstreamPath } from '../../../src/pipeline/match.js';
import { compileYaml } from '../../helpers/config.js';

const route = (upstream: string) => compileYaml(`
routes:
  - { id: s, match: { pathPrefix: /s }, upstream: "${upstream}", stripPrefix: true, auth: { mode: none } }
`).routes[0]!;

test('an upstream base path with "//" is refused at load: no forwarded path starts with "//"', () => {
  for (const up of ['http://u//', 'http://u//a', 'http://u/a//', 'http://u/a//b/']) {
    assert.throws(() => route(up), /upstream/, up);
  }
});

test('ordinary base paths still compile, and the forwarded path keeps one leading slash', () => {
  for (const [up, want] of [['http://u', '/evil.test/x'], ['http://u/', '/evil.test/x'], ['http://u/a/', '/a/evil.test/x'], ['http://u/a', '/a/evil.test/x']]) {
    assert.equal(upstreamPath(route(up), '/s/evil.test/x'), want, up);
  }
});
