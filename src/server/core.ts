/**
 * What every listener is handed by the gateway: the running config, the verifiers, the
 * metrics, the logger and the request recorder. The gateway builds these once; the
 * listeners only read them, so nothing in `server/` reaches back into `gateway.ts`.
 */
import type { Logger } from 'pino';
import type { CompiledConfig } from '../config/compile.js';
import type { Metrics } from '../metrics.js';
import type { Verifiers } from '../pipeline/run.js';
import type { Readiness } from '../cluster/channel.js';
import type { RequestRecorder } from './record.js';
import type { Tracing } from '../tracing/types.js';

/** The gateway as its listeners see it. */
export interface GatewayCore {
  /** The config in force now (a reload replaces it; a request keeps the one it started with). */
  readonly config: CompiledConfig;
  readonly verifiers: Verifiers;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly recorder: RequestRecorder;
  /** Tracing, with a `tracing:` block; null without one (the request path then does no tracing work). */
  readonly tracing: Tracing | null;
  /** Shutdown has begun (the listeners are closing). */
  readonly draining: boolean;
  /** What `/readyz` would answer now (the gRPC health service reports it too). */
  readiness(): Readiness;
}
