// throwaway A/B of proxy implementations (not committed)
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';
import { Agent } from 'undici';
import { createServer } from 'node:http';
const [mode, upstream, port] = process.argv.slice(2);
const agent = new Agent({ connections: 128, pipelining: 1, keepAliveTimeout: 30000 });
class H {
  res: any; constructor(res: any) { this.res = res; }
  onRequestStart() {}
  onResponseStart(c: any, status: number, headers: any) { const h: any = {}; for (const k in headers) if (k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding') h[k] = headers[k]; this.res.writeHead(status, h); }
  onResponseData(c: any, chunk: Buffer) { if (!this.res.write(chunk)) { c.pause(); this.res.once('drain', () => c.resume()); } }
  onResponseEnd() { this.res.end(); }
  onResponseError(c: any, e: Error) { if (!this.res.headersSent) { this.res.writeHead(502); } this.res.end(); }
}
const fwd = (req: any, res: any) => {
  const headers: any = {}; for (const k in req.headers) if (k !== 'connection' && k !== 'host') headers[k] = req.headers[k];
  headers.host = new URL(upstream).host; headers['x-forwarded-for'] = req.socket.remoteAddress;
  agent.dispatch({ origin: upstream, path: req.url, method: req.method, headers, body: req.method === 'GET' ? null : req }, new H(res) as any);
};
if (mode === 'node') {
  createServer(fwd).listen(Number(port), '127.0.0.1');
} else {
  const app = Fastify({ logger: false });
  if (mode === 'replyfrom') {
    await app.register(replyFrom, { disableCache: true, disableRequestLogging: true, undici: { connections: 128, pipelining: 1, keepAliveTimeout: 30000 } });
    app.removeAllContentTypeParsers(); app.addContentTypeParser('*', (_r, p, d) => d(null, p));
    app.all('*', async (req, reply) => reply.from(upstream + req.url.split('?')[0], { queryString: () => '', rewriteRequestHeaders: (_r, h) => ({ ...h, 'x-forwarded-for': req.socket.remoteAddress }), onResponse: (_r, rep, res) => { rep.send(res.stream); } }));
  } else {
    app.removeAllContentTypeParsers(); app.addContentTypeParser('*', (_r, p, d) => d(null, p));
    app.all('*', (req, reply) => { reply.hijack(); fwd(req.raw, reply.raw); });
  }
  await app.listen({ port: Number(port), host: '127.0.0.1' });
}
