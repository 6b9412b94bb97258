/**
 * The admin listener: liveness, readiness and Prometheus metrics, on their own port so
 * they are never reachable through the proxy. The same routes serve a single gateway
 * process and the cluster primary (which answers for all its workers).
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Readiness } from '../cluster/channel.js';

/** What the admin routes report: one gateway's state, or a whole pod's. */
export interface AdminSource {
  readiness(): Readiness | Promise<Readiness>;
  /** The Prometheus exposition text and its content type. */
  metrics(): Promise<{ contentType: string; body: string }>;
}

/** Builds (does not start) the admin Fastify instance. */
export function buildAdmin(source: AdminSource, logger: Logger): FastifyInstance {
  const app = Fastify({ loggerInstance: logger as unknown as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) });
  app.setErrorHandler((_err, _req, reply) => reply.code(500).send({ error: 'server_error' }));
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const r = await source.readiness();
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  app.get('/metrics', async (_req, reply) => {
    const { contentType, body } = await source.metrics();
    return reply.type(contentType).send(body);
  });
  return app;
}
