/**
 * The admin listener: liveness, readiness and Prometheus metrics, on their own port so
 * they are never reachable through the proxy.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { GatewayCore } from '../gateway.js';

/** Builds (does not start) the admin Fastify instance. */
export function buildAdmin(core: GatewayCore, logger: Logger): FastifyInstance {
  const app = Fastify({ loggerInstance: logger as unknown as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) });
  app.setErrorHandler((_err, _req, reply) => reply.code(500).send({ error: 'server_error' }));
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const r = core.readiness();
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  app.get('/metrics', async (_req, reply) => {
    const body = await core.metrics.registry.metrics();
    return reply.type(core.metrics.registry.contentType).send(body);
  });
  return app;
}
