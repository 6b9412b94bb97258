/**
 * proto/ pins Envoy's wire format: every field tokengate declares has the number it has in
 * envoyproxy/envoy `api/envoy/service/auth/v3/{external_auth,attribute_context}.proto`,
 * `api/envoy/config/core/v3/base.proto`, `api/envoy/type/v3/http_status.proto`, googleapis
 * `google/rpc/status.proto` and grpc `health/v1/health.proto`. The expected bytes are written
 * out here by hand from those files (tag = field number << 3 | wire type), not produced by
 * the code under test, and compared with what the listener's own (de)serializers make of
 * fully populated messages, in both directions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTHORIZATION_SERVICE, HEALTH_SERVICE, loadExtAuthzProtos, serviceOf } from '../../src/server/ext-authz-proto.js';

const VARINT = 0;
const LEN = 2;

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}
const tag = (field: number, wire: number) => varint(field * 8 + wire);
const bytes = (field: number, b: Buffer) => Buffer.concat([tag(field, LEN), varint(b.length), b]);
const str = (field: number, s: string) => bytes(field, Buffer.from(s));
const msg = (field: number, ...parts: Buffer[]) => bytes(field, Buffer.concat(parts));
const int = (field: number, n: number) => Buffer.concat([tag(field, VARINT), varint(n)]);
/** A map<string,string> entry: a nested message with key = 1, value = 2. */
const entry = (field: number, k: string, v: string) => msg(field, str(1, k), str(2, v));

const def = loadExtAuthzProtos();
const check = serviceOf(def, AUTHORIZATION_SERVICE).Check;
const health = serviceOf(def, HEALTH_SERVICE).Check;

test('CheckRequest: every declared field of AttributeContext, Peer, Request, HttpRequest, HeaderMap, HeaderValue', () => {
  const request = {
    attributes: {
      source: { service: 'svc', labels: { app: 'web' }, principal: 'spiffe://x/ns/a', certificate: '-----BEGIN%20CERT' },
      destination: { principal: 'spiffe://x/ns/b' },
      request: {
        http: {
          id: 'req-1', method: 'GET', headers: { ':path': '/a?b' }, path: '/a?b', host: 'h.example', scheme: 'https',
          query: 'q', fragment: 'f', size: '12', protocol: 'HTTP/1.1', body: 'bd', raw_body: Buffer.from([1, 2]),
          header_map: { headers: [{ key: 'k', value: 'v', raw_value: Buffer.from('rv') }] },
        },
      },
      context_extensions: { ext: 'x' },
    },
  };
  const expected = msg(1, // CheckRequest.attributes = 1
    msg(1, // AttributeContext.source = 1 (Peer)
      str(2, 'svc'), // Peer.service = 2
      entry(3, 'app', 'web'), // Peer.labels = 3
      str(4, 'spiffe://x/ns/a'), // Peer.principal = 4
      str(5, '-----BEGIN%20CERT')), // Peer.certificate = 5
    msg(2, str(4, 'spiffe://x/ns/b')), // AttributeContext.destination = 2
    msg(4, // AttributeContext.request = 4
      msg(2, // Request.http = 2
        str(1, 'req-1'), // HttpRequest.id = 1
        str(2, 'GET'), // method = 2
        entry(3, ':path', '/a?b'), // headers = 3
        str(4, '/a?b'), // path = 4
        str(5, 'h.example'), // host = 5
        str(6, 'https'), // scheme = 6
        str(7, 'q'), // query = 7
        str(8, 'f'), // fragment = 8
        int(9, 12), // size = 9 (int64)
        str(10, 'HTTP/1.1'), // protocol = 10
        str(11, 'bd'), // body = 11
        bytes(12, Buffer.from([1, 2])), // raw_body = 12
        msg(13, msg(1, str(1, 'k'), str(2, 'v'), bytes(3, Buffer.from('rv')))))), // header_map = 13 → HeaderMap.headers = 1 → HeaderValue key 1, value 2, raw_value 3
    entry(10, 'ext', 'x')); // AttributeContext.context_extensions = 10
  assert.equal(check.requestSerialize(request).toString('hex'), expected.toString('hex'));
  assert.deepEqual(JSON.parse(JSON.stringify(check.requestDeserialize(expected))), JSON.parse(JSON.stringify(request)));
});

test('CheckResponse: google.rpc.Status, DeniedHttpResponse, HttpStatus, HeaderValueOption (append, append_action, keep_empty_value)', () => {
  const denied = {
    status: { code: 16, message: 'm' },
    denied_response: {
      status: { code: 401 },
      headers: [{ header: { key: 'www-authenticate', value: 'Bearer' }, append: { value: false }, append_action: 2, keep_empty_value: true }],
      body: '{}',
    },
  };
  const expected = Buffer.concat([
    msg(1, int(1, 16), str(2, 'm')), // CheckResponse.status = 1 → Status.code = 1, message = 2
    msg(2, // CheckResponse.denied_response = 2
      msg(1, int(1, 401)), // DeniedHttpResponse.status = 1 → HttpStatus.code = 1
      msg(2, // DeniedHttpResponse.headers = 2 → HeaderValueOption
        msg(1, str(1, 'www-authenticate'), str(2, 'Bearer')), // header = 1
        msg(2, int(1, 0)), // append = 2 → BoolValue.value = 1 (false, written out: protobufjs writes set fields)
        int(3, 2), // append_action = 3 (OVERWRITE_IF_EXISTS_OR_ADD = 2)
        int(4, 1)), // keep_empty_value = 4
      str(3, '{}')), // DeniedHttpResponse.body = 3
  ]);
  assert.equal(check.responseSerialize(denied).toString('hex'), expected.toString('hex'));
  // The smallest refusal Envoy can get, checked byte by byte: status { code: 16 }.
  assert.equal(check.responseSerialize({ status: { code: 16 } }).toString('hex'), '0a020810');
});

test('CheckResponse: OkHttpResponse headers, headers_to_remove, response_headers_to_add', () => {
  const ok = {
    status: { code: 0 },
    ok_response: {
      headers: [{ header: { key: 'x-auth-client', value: 'app' }, append: { value: false }, append_action: 2 }],
      headers_to_remove: ['x_auth_role', 'authorization'],
      response_headers_to_add: [{ header: { key: 'dpop-nonce', value: 'n' } }],
    },
  };
  const expected = Buffer.concat([
    msg(1, int(1, 0)), // status = 1 → code 0 (written out, as it was set)
    msg(3, // CheckResponse.ok_response = 3
      msg(2, msg(1, str(1, 'x-auth-client'), str(2, 'app')), msg(2, int(1, 0)), int(3, 2)), // OkHttpResponse.headers = 2
      str(5, 'x_auth_role'), str(5, 'authorization'), // headers_to_remove = 5
      msg(6, msg(1, str(1, 'dpop-nonce'), str(2, 'n')))), // response_headers_to_add = 6
  ]);
  assert.equal(check.responseSerialize(ok).toString('hex'), expected.toString('hex'));
  const back = check.responseDeserialize(expected) as { ok_response: { headers_to_remove: string[] }; http_response: string };
  assert.deepEqual(back.ok_response.headers_to_remove, ['x_auth_role', 'authorization']);
  assert.equal(back.http_response, 'ok_response', 'denied_response and ok_response are one oneof');
});

test('grpc.health.v1: HealthCheckRequest.service = 1, HealthCheckResponse.status = 1 (SERVING = 1, NOT_SERVING = 2)', () => {
  assert.equal(health.requestSerialize({ service: 'envoy.service.auth.v3.Authorization' }).toString('hex'), str(1, 'envoy.service.auth.v3.Authorization').toString('hex'));
  assert.equal(health.responseSerialize({ status: 1 }).toString('hex'), '0801');
  assert.equal(health.responseSerialize({ status: 2 }).toString('hex'), '0802');
});

test('the service paths are the ones Envoy and gRPC health checkers call', () => {
  assert.equal(check.path, '/envoy.service.auth.v3.Authorization/Check');
  assert.equal(health.path, '/grpc.health.v1.Health/Check');
});
