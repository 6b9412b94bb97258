import { test } from 'node:test';
import assert from 'node:assert/strict';
import { thumbprintFromHeader } from '../../../src/pipeline/client-cert.js';
import { generateClientCert, xfcc } from '../../helpers/cert.js';

const cert = generateClientCert();
const other = generateClientCert('other');

test('XFCC: Hash= only, Cert= only, both', () => {
  assert.equal(thumbprintFromHeader(xfcc(cert, { hash: true })), cert.x5t);
  assert.equal(thumbprintFromHeader(xfcc(cert, { cert: true })), cert.x5t);
  assert.equal(thumbprintFromHeader(xfcc(cert)), cert.x5t);
  assert.equal(thumbprintFromHeader(`Hash=${cert.hashHex.toUpperCase()}`), cert.x5t);
});

test('XFCC: disagreeing Hash and Cert, several elements, bad hash, garbage: null', () => {
  assert.equal(thumbprintFromHeader(`Hash=${other.hashHex};Cert="${encodeURIComponent(cert.pem)}"`), null);
  assert.equal(thumbprintFromHeader(`${xfcc(cert)},${xfcc(other)}`), null);
  assert.equal(thumbprintFromHeader('Hash=abc'), null);
  assert.equal(thumbprintFromHeader('Cert="%2D%2D%2D"'), null);
  assert.equal(thumbprintFromHeader('By=spiffe://x'), null);
  assert.equal(thumbprintFromHeader(''), null);
});

test('URL-encoded PEM (nginx $ssl_client_escaped_cert), plain PEM, base64 DER', () => {
  assert.equal(thumbprintFromHeader(encodeURIComponent(cert.pem)), cert.x5t);
  assert.equal(thumbprintFromHeader(cert.pem), cert.x5t);
  const der = cert.pem.replace(/-----[A-Z ]+-----|\s/g, '');
  assert.equal(thumbprintFromHeader(der), cert.x5t);
  assert.equal(thumbprintFromHeader('%2D%2D%2D%2D%2DBEGIN%20CERTIFICATE-----%0Agarbage'), null);
});
