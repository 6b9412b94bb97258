/** Credential extraction (RFC 6750 §2): schemes, case, duplicates, query/form tokens, size. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { extractCredential, hasAccessTokenParam, newCredentialMemo } from '../../../src/pipeline/extract.js';
import { GatewayError } from '../../../src/errors.js';

const ex = (raw: string[], search = '', max = 100) => extractCredential(raw, search, max);
const reason = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as GatewayError).reason;
  }
  return 'no error';
};

test('schemes: Bearer in any case; DPoP recognized; others are no credential', () => {
  assert.deepEqual(ex(['Authorization', 'Bearer abc']), { scheme: 'bearer', token: 'abc' });
  assert.deepEqual(ex(['authorization', 'bEaReR a.b-c_d~e+f/g==']), { scheme: 'bearer', token: 'a.b-c_d~e+f/g==' });
  assert.deepEqual(ex(['AUTHORIZATION', 'Bearer   abc']), { scheme: 'bearer', token: 'abc' });
  assert.deepEqual(ex(['Authorization', 'DPoP abc']), { scheme: 'dpop', token: 'abc' });
  assert.equal(ex(['Authorization', 'Basic eDp5']), null);
  assert.equal(ex(['Authorization', 'Bearerabc']), null);
  assert.equal(ex(['X-Other', 'Bearer abc']), null);
  assert.equal(ex([]), null);
});

test('malformed bearer values are 400 bad_scheme', () => {
  for (const v of ['Bearer', 'Bearer ', 'Bearer a b', 'Bearer a,b', 'Bearer =abc', 'Bearer a=b', 'Bearer a\tb', 'Bearer "abc"']) {
    assert.equal(reason(() => ex(['Authorization', v])), 'bad_scheme', v);
  }
});

test('two Authorization headers (any case) are 400 multiple_credentials, even if one is not Bearer', () => {
  assert.equal(reason(() => ex(['Authorization', 'Bearer a', 'authorization', 'Bearer a'])), 'multiple_credentials');
  assert.equal(reason(() => ex(['Authorization', 'Basic x', 'AUTHORIZATION', 'Bearer a'])), 'multiple_credentials');
});

test('access_token in the query: token_in_query, or multiple_credentials with a header', () => {
  assert.equal(reason(() => ex([], '?access_token=x')), 'token_in_query');
  assert.equal(reason(() => ex([], '?a=1&access_token=')), 'token_in_query');
  assert.equal(reason(() => ex([], '?%61ccess%5Ftoken=x')), 'token_in_query');
  assert.equal(reason(() => ex(['Authorization', 'Bearer a'], '?access_token=x')), 'multiple_credentials');
  assert.equal(ex([], '?access_tokens=x&xaccess_token=1&ACCESS_TOKEN=1'), null, 'only the exact parameter name');
});

test('size: longer than maxTokenBytes is 401 token_too_large before the syntax check', () => {
  assert.equal(reason(() => ex(['Authorization', `Bearer ${'a'.repeat(101)}`])), 'token_too_large');
  assert.equal(reason(() => ex(['Authorization', `Bearer ${'!'.repeat(101)}`])), 'token_too_large');
  assert.deepEqual(ex(['Authorization', `Bearer ${'a'.repeat(100)}`])?.token.length, 100);
});

test('a connection memo reuses only the parse of the exact same Authorization value', () => {
  const memo = newCredentialMemo();
  // Values as the HTTP parser gives them: a new string for every request.
  const fresh = (v: string) => Buffer.from(v, 'latin1').toString('latin1');
  const first = extractCredential(['Authorization', fresh('Bearer abc.def')], '', 100, memo)!;
  const again = extractCredential(['Authorization', fresh('Bearer abc.def')], '', 100, memo)!;
  assert.equal(again, first, 'the same credential object');
  assert.ok(Object.isFrozen(first), 'shared credentials cannot be changed by one request');
  // Anything else is parsed afresh, and failures are not remembered.
  assert.deepEqual(extractCredential(['Authorization', 'Bearer abc.deg'], '', 100, memo), { scheme: 'bearer', token: 'abc.deg' });
  assert.equal(reason(() => extractCredential(['Authorization', 'Bearer abc def'], '', 100, memo)), 'bad_scheme');
  assert.equal(extractCredential(['Authorization', 'Basic eDp5'], '', 100, memo), null);
  assert.deepEqual(extractCredential(['Authorization', 'bearer abc.deg'], '', 100, memo), { scheme: 'bearer', token: 'abc.deg' });
  assert.deepEqual(extractCredential(['Authorization', 'DPoP abc.deg'], '', 100, memo), { scheme: 'dpop', token: 'abc.deg' });
  // The request around the remembered value is still checked every time.
  extractCredential(['Authorization', 'Bearer abc.def'], '', 100, memo);
  assert.equal(reason(() => extractCredential(['Authorization', 'Bearer abc.def', 'authorization', 'Bearer abc.def'], '', 100, memo)), 'multiple_credentials');
  assert.equal(reason(() => extractCredential(['Authorization', 'Bearer abc.def'], '?access_token=x', 100, memo)), 'multiple_credentials');
  assert.equal(reason(() => extractCredential(['Authorization', 'Bearer abc.def'], '', 6, memo)), 'token_too_large', 'a lowered limit (reload)');
  assert.equal(extractCredential(['X-Other', 'Bearer abc.def'], '', 100, memo), null);
});

test('hasAccessTokenParam on form bodies', () => {
  assert.equal(hasAccessTokenParam('access_token=x'), true);
  assert.equal(hasAccessTokenParam('a=1&access_token'), true);
  assert.equal(hasAccessTokenParam('a=1&b=access'), false);
  assert.equal(hasAccessTokenParam('access%5ftoken=x'), true);
  assert.equal(hasAccessTokenParam(''), false);
});
