/**
 * `tokengate snippet`: the README shows exactly what the command prints for
 * config/front-proxy.yaml; every front proxy's clearing covers the identity namespace in
 * every spelling a client can send; a config without the listener a proxy asks is an
 * error, not a snippet pointing nowhere.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { loadCompiled } from '../../src/config/index.js';
import { frontProxySnippet, goCanonical, identityNamespace, separatorSpellings, SNIPPET_KINDS, SnippetError } from '../../src/snippet.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const EXAMPLE = loadCompiled(join(ROOT, 'config/front-proxy.yaml'), {});
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The text of every fenced block in the README. */
const blocks = [...README.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]);

test('the README shows what `tokengate snippet` prints for config/front-proxy.yaml', () => {
  for (const kind of SNIPPET_KINDS) {
    assert.ok(blocks.includes(frontProxySnippet(EXAMPLE, kind)), `README has the ${kind} snippet as generated (regenerate it with tokengate snippet ${kind} --config config/front-proxy.yaml)`);
  }
});

test('the namespace: every route header, the prefix, and who strips Authorization', () => {
  assert.deepEqual(identityNamespace(EXAMPLE), {
    prefix: 'x-auth-', names: ['x-auth-scopes', 'x-auth-subject', 'x-tenant'], outside: ['x-tenant'], stripAuthorization: true,
  });
  assert.deepEqual(separatorSpellings('x-auth-'), ['x-auth-', 'x-auth_', 'x_auth-', 'x_auth_']);
  assert.equal(goCanonical('x_auth_role'), 'X_auth_role');
  assert.equal(goCanonical('x-AUTH_role'), 'X-Auth_role');
});

/** Spellings a client can send for names in the namespace, and some that are not in it. */
const INSIDE = ['X-Auth-Role', 'x_auth_role', 'X-Auth_Role', 'X_AUTH-ROLE', 'x-auth-subject', 'X-Tenant', 'x_tenant', 'X-TENANT'];
const OUTSIDE = ['X-Authx-Role', 'X-Tenants', 'X-Tenant-Id', 'Authorization', 'X-Request-Id', 'Xauth-Role'];

test('Traefik and Envoy HTTP: the regex takes every spelling of the namespace and nothing else', () => {
  const traefik = (parseAllDocuments(frontProxySnippet(EXAMPLE, 'traefik'))[0].toJS() as { spec: { forwardAuth: { authResponseHeadersRegex: string } } }).spec.forwardAuth.authResponseHeadersRegex;
  assert.ok(traefik.startsWith('(?i)'), 'Go regexp, case-insensitive (Traefik matches canonical keys)');
  const re = new RegExp(traefik.slice(4), 'i');
  for (const h of INSIDE) assert.ok(re.test(goCanonical(h)), `${h} is matched`);
  for (const h of OUTSIDE) assert.ok(!re.test(goCanonical(h)), `${h} is not matched`);

  const envoy = /remove_on_match: \{ key_matcher: \{ safe_regex: \{ regex: '([^']+)' \} \} \}/.exec(frontProxySnippet(EXAMPLE, 'envoy'))![1];
  const full = new RegExp(`^(?:${envoy})$`); // Envoy's safe_regex matches the whole (lower-case) name
  for (const h of INSIDE) assert.ok(full.test(h.toLowerCase()), `${h} is removed`);
  for (const h of OUTSIDE) assert.ok(!full.test(h.toLowerCase()), `${h} is kept`);
});

test('Traefik: the Middleware validates against the Traefik CRD schema (@kubernetes-models/traefik)', async () => {
  const { Middleware } = await import('@kubernetes-models/traefik/traefik.io/v1alpha1');
  const doc = parseAllDocuments(frontProxySnippet(EXAMPLE, 'traefik'))[0].toJS() as ConstructorParameters<typeof Middleware>[0] & { spec: { forwardAuth: Record<string, unknown> } };
  new Middleware(doc).validate();
  assert.equal(doc.spec.forwardAuth.trustForwardHeader, false);
  // The validator is live: a wrong type is reported.
  const wrong = JSON.parse(JSON.stringify(doc).replace('"trustForwardHeader":false', '"trustForwardHeader":"no"')) as typeof doc;
  assert.throws(() => new Middleware(wrong).validate(), /trustForwardHeader/);
});

test('Caddy: a delete pattern for every spelling Go can store; each copied header only when answered', () => {
  const caddy = frontProxySnippet(EXAMPLE, 'caddy');
  const patterns = [...caddy.matchAll(/request_header -(\S+)/g)].map((m) => m[1]).filter((p) => p !== 'Authorization');
  // Caddy's wildcard delete compares canonical keys case-sensitively: check against what Go stores.
  const deleted = (h: string) => patterns.some((p) => (p.endsWith('*') ? goCanonical(h).startsWith(p.slice(0, -1)) : goCanonical(h) === p));
  for (const h of INSIDE) assert.ok(deleted(h), `${h} is deleted`);
  for (const h of OUTSIDE) assert.ok(!deleted(h), `${h} is kept`);
  assert.ok(!/copy_headers/.test(caddy.replace(/#.*$/gm, '')), 'no copy_headers shortcut');
  for (const n of ['X-Auth-Subject', 'X-Auth-Scopes', 'X-Tenant']) {
    assert.match(caddy, new RegExp(`request_header @has_\\w+ ${n} \\{http\\.reverse_proxy\\.header\\.${n}\\}`));
  }
});

test('nginx: every name outside the prefix is cleared by name, the prefix by wildcard, `_` names dropped', () => {
  const nginx = frontProxySnippet(EXAMPLE, 'nginx');
  assert.match(nginx, /more_clear_input_headers 'X-Auth-\*' 'X-Tenant';/);
  assert.match(nginx, /underscores_in_headers off;/);
  for (const n of ['X-Auth-Subject', 'X-Auth-Scopes', 'X-Tenant']) assert.match(nginx, new RegExp(`proxy_set_header ${n} \\$tg_`));
});

test('a config without the listener a front proxy asks is an error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-snippet-'));
  const file = join(dir, 'g.yaml');
  writeFileSync(file, 'routes:\n  - { id: r, match: { pathPrefix: / }, upstream: "http://127.0.0.1:1", auth: { mode: none } }\n');
  const bare = loadCompiled(file, {});
  for (const kind of SNIPPET_KINDS) assert.throws(() => frontProxySnippet(bare, kind), SnippetError, kind);
});
