/**
 * The gRPC definitions of the `extAuthz:` listener, loaded from `proto/` (Envoy's
 * `envoy.service.auth.v3` messages and `grpc.health.v1`, with their upstream field
 * numbers), and the TypeScript shape of the messages as tokengate reads and writes them
 * (proto-loader options below: field names as in the .proto, enums as numbers, int64 as
 * strings, no defaults filled in on decode).
 */
import { fileURLToPath } from 'node:url';
import { loadSync, type Options, type PackageDefinition, type ServiceDefinition } from '@grpc/proto-loader';

/** Where the .proto files are: `proto/` at the package root (beside `src/` and `dist/`). */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

/** proto-loader options shared by the server and the tests' clients. */
export const PROTO_OPTIONS: Options = { keepCase: true, longs: String, enums: Number, defaults: false, oneofs: true, includeDirs: [PROTO_DIR] };

/** The files the listener serves. */
export const PROTO_FILES = ['envoy/service/auth/v3/external_auth.proto', 'grpc/health/v1/health.proto'];

/** Fully qualified name of Envoy's authorization service (`/envoy.service.auth.v3.Authorization/Check`). */
export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';
/** Fully qualified name of the standard gRPC health service (grpc/grpc `doc/health-checking.md`). */
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

/** Loads the package definition (once per listener start; nothing is kept at module level). */
export function loadExtAuthzProtos(): PackageDefinition {
  return loadSync(PROTO_FILES, PROTO_OPTIONS);
}

/** A service of a loaded package definition, by fully qualified name. */
export function serviceOf(def: PackageDefinition, name: string): ServiceDefinition {
  const s = def[name];
  if (!s || !('Check' in s)) throw new Error(`proto definition ${name} not found`);
  return s as ServiceDefinition;
}

/** `envoy.config.core.v3.HeaderValue`. */
export interface HeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer;
}

/** `HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD`. */
export const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/** `envoy.config.core.v3.HeaderValueOption`. */
export interface HeaderValueOption {
  header: HeaderValue;
  append?: { value: boolean };
  append_action?: number;
  keep_empty_value?: boolean;
}

/** `envoy.service.auth.v3.AttributeContext.HttpRequest`, the fields tokengate reads. */
export interface HttpRequestAttributes {
  id?: string;
  method?: string;
  headers?: Record<string, string>;
  header_map?: { headers?: HeaderValue[] };
  path?: string;
  host?: string;
  scheme?: string;
  protocol?: string;
}

/** `envoy.service.auth.v3.CheckRequest`, the fields tokengate reads. */
export interface CheckRequest {
  attributes?: {
    source?: { certificate?: string; principal?: string };
    request?: { http?: HttpRequestAttributes };
    context_extensions?: Record<string, string>;
  };
}

/** `envoy.service.auth.v3.CheckResponse`. */
export interface CheckResponse {
  status: { code: number; message?: string };
  denied_response?: { status: { code: number }; headers: HeaderValueOption[]; body: string };
  ok_response?: { headers: HeaderValueOption[]; headers_to_remove: string[]; response_headers_to_add: HeaderValueOption[] };
}

/** `grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING`. */
export const SERVING = 1;
/** `grpc.health.v1.HealthCheckResponse.ServingStatus.NOT_SERVING`. */
export const NOT_SERVING = 2;
