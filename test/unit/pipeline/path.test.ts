/** Path normalization: the table of what is matched and forwarded, and what is refused. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeTarget } from '../../../src/pipeline/path.js';

test('normalizations: the one path that is matched and forwarded', () => {
  const table: Array<[string, string, string]> = [
    ['//x', '/x', ''],
    ['/', '/', ''],
    ['/a/b', '/a/b', ''],
    ['/a/b?x=1', '/a/b', '?x=1'],
    ['/a?', '/a', '?'],
    ['/a/./b', '/a/b', ''],
    ['/a/../b', '/b', ''],
    ['/a/b/..', '/a/', ''],
    ['/a/b/.', '/a/b/', ''],
    ['/a/', '/a/', ''],
    ['//a//b//', '/a/b/', ''],
    ['/a/%2e%2e/b', '/b', ''],
    ['/a/%2E/b', '/a/b', ''],
    ['/%61%62%63', '/abc', ''],
    ['/%7Euser/%2D%5F', '/~user/-_', ''],
    ['/a%20b', '/a%20b', ''],
    ['/a%2bb', '/a%2Bb', ''],
    ['/%c3%a9', '/%C3%A9', ''],
    ['/a%25', '/a%25', ''],
    ['/a:b@c!$&\'()*+,=', '/a:b@c!$&\'()*+,=', ''],
    ['/a?q=/../x&r=%2F', '/a', '?q=/../x&r=%2F'],
    ['/file..txt', '/file..txt', ''],
    ['/.well-known/x', '/.well-known/x', ''],
    ['/a/.b', '/a/.b', ''],
  ];
  for (const [input, path, search] of table) {
    assert.deepEqual(normalizeTarget(input), { path, search }, input);
  }
});

test('refusals (null → 400)', () => {
  for (const input of [
    '', 'a', '*', 'http://x/a', '/..', '/../a', '/a/../..', '/a/%2e%2e/%2e%2e/..', '/a%2fb', '/a%2Fb', '/a%5cb', '/a%5Cb', '/a\\b',
    '/a%00', '/a\u0000', '/a;b', '/a;', '/a b', '/a"b', '/a<b', '/a>b', '/a`b', '/a{b', '/a|b', '/a^b', '/é', '/%', '/%2', '/%zz', '/%g0',
    '/%ff', '/%c0%af', '/%c3', '/%e2%82', '/a#b', '/a?b#c', '/..foo', '/a/..b/c', '/a/b../c', '/...', '/a/%2e%2ex',
  ]) {
    assert.equal(normalizeTarget(input), null, JSON.stringify(input));
  }
});

test('an already-normal path takes the fast path and is returned as is', () => {
  const t = '/orders/123/items';
  assert.equal(normalizeTarget(t)?.path, t);
});

test('fuzz: every accepted target is one a WHATWG URL parser (an upstream\'s view) reads back unchanged', async () => {
  const pieces = ['/', '//', '.', '..', '%2e', '%2E', '%2f', '%5c', '%25', '%00', '%41', '%7e', '%c3%a9', '%ff', '%', ';', '\\', 'a', 'B', '~', '-',
    '_', '!', '$', '&', "'", '(', '*', '+', ',', '=', ':', '@', ' ', '"', '|', '^', '`', '{', 'é', '\u0000', '?', '#'];
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  let accepted = 0;
  for (let i = 0; i < 5000; i++) {
    let t = '/';
    const len = 1 + rnd(10);
    for (let j = 0; j < len; j++) t += pieces[rnd(pieces.length)];
    const n = normalizeTarget(t);
    if (!n) continue;
    accepted++;
    assert.equal(normalizeTarget(n.path)?.path, n.path, `idempotent: ${JSON.stringify(t)}`);
    assert.ok(!n.path.split('/').some((s) => s === '.' || s === '..'), t);
    const url = new URL(`http://upstream.test:8080${n.path}`);
    assert.equal(url.pathname, n.path, `forwarded path differs for ${JSON.stringify(t)}`);
    assert.equal(url.host, 'upstream.test:8080');
  }
  assert.ok(accepted > 500, `only ${accepted} accepted`);
});
