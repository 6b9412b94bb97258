/**
 * Attack family: secret leak through `${VAR}` substitution. A plain scalar that is exactly
 * one reference (`clientSecret: ${INTROSPECTION_SECRET}`, the SPEC's own example) is
 * re-read as YAML. A secret that does not read as a YAML scalar (`@...`, `[...`, `"...`,
 * `%...`, `a: b: c`, `*...` — common in generated passwords) must not make the loader
 * throw YAML's own error, whose message quotes the value with a caret under it, names no
 * file, line or key, and is printed by `tokengate check`, at start, and logged on reload.
 * Fail closed: a ConfigError at the key's line that never contains the value, and no
 * process warning carrying it either.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, formatProblem, parseConfig } from '../../../src/config/load.js';

const YAML = `issuers:
  - id: corp
    issuer: http://127.0.0.1:9999/realm
    introspection:
      endpoint: http://127.0.0.1:9999/introspect
      clientId: tokengate
      clientSecret: \${INTROSPECTION_SECRET}
routes:
  - id: r
    match: { pathPrefix: /api }
    upstream: http://127.0.0.1:3000
    auth: { mode: introspection }
`;

const SECRETS = ['@Xq9sEcReT', '[Xq9sEcReT', '{Xq9sEcReT', '"Xq9sEcReT', "'Xq9sEcReT", '`Xq9sEcReT', '*Xq9sEcReT', '%Xq9sEcReT', 'Xq9: sEc: ReT',
  // YAML would read these as other text: cut at the comment, unquoted, trimmed (a secret silently changed)
  'Xq9sEcReT #tail', "'Xq9sEcReT'", 'Xq9sEcReT '];

for (const secret of SECRETS) {
  test(`an env secret that is not a YAML scalar (${JSON.stringify(secret[0])}...) is a located config error that never quotes it`, () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    let thrown: unknown;
    try {
      parseConfig(YAML, 'gw.yaml', { INTROSPECTION_SECRET: secret });
    } catch (e) {
      thrown = e;
    } finally {
      process.off('warning', onWarning);
    }
    const needle = /Xq9|sEcReT|sEc: ReT/;
    assert.ok(thrown instanceof ConfigError, `expected a ConfigError, got ${(thrown as Error)?.name}: ${String((thrown as Error)?.message)}`);
    const lines = thrown.problems.map(formatProblem);
    assert.ok(lines.some((l) => l.startsWith('gw.yaml:7 issuers[0].introspection.clientSecret ')), lines.join('\n'));
    for (const l of lines) assert.doesNotMatch(l, needle, l);
    assert.doesNotMatch(thrown.message, needle);
    // Process warnings are emitted on the next tick: give them one.
    return new Promise<void>((resolve) => setImmediate(() => {
      for (const w of warnings) assert.doesNotMatch(w, needle, w);
      resolve();
    }));
  });
}

test('ordinary plain references are still typed like YAML, and a quoted reference takes any secret verbatim', () => {
  const c = parseConfig(YAML.replace('${INTROSPECTION_SECRET}', '"${INTROSPECTION_SECRET}"'), 'gw.yaml', { INTROSPECTION_SECRET: '@Xq9: sEc #ReT' });
  assert.equal(c.issuers[0].introspection?.clientSecret, '@Xq9: sEc #ReT');
  const p = parseConfig(`server:\n  port: \${P}\n${YAML}`, 'gw.yaml', { P: '8088', INTROSPECTION_SECRET: 's3cr3t' });
  assert.equal(p.server.port, 8088);
  assert.equal(p.issuers[0].introspection?.clientSecret, 's3cr3t');
});
