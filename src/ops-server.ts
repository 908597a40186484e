import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metrics } from './metrics.ts';

/**
 * The listener on METRICS_PORT (on HOST): `GET /metrics` (in a worker process the step, Twilio and
 * store series, which only the process running the worker counts), `GET /healthz` for a
 * liveness probe and `GET /readyz` (503 while the process drains after SIGTERM). Unauthenticated: it exists so /metrics can be bound or firewalled apart from the
 * API, which then does not serve it. Anything else is a 404; only GET and HEAD are answered.
 */
export interface OpsServer {
  url: string;
  close(): Promise<void>;
}

export async function startOpsServer(opts: { host: string; port: number; metrics: Metrics; draining?: () => boolean }): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'method_not_allowed', message: `${req.method} is not served here` } }));
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok' }));
      return;
    }
    if (path === '/readyz') {
      // A worker is ready while it takes jobs; from SIGTERM on it finishes (or parks) its steps and takes no more.
      const draining = opts.draining?.() ?? false;
      res.writeHead(draining ? 503 : 200, { 'content-type': 'application/json' }).end(JSON.stringify(draining ? { status: 'not_ready', checks: { shutdown: 'fail' } } : { status: 'ready' }));
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'not_found', message: 'this port serves /metrics, /healthz and /readyz' } }));
      return;
    }
    opts.metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': opts.metrics.registry.contentType }).end(text),
      () => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'internal', message: 'metrics could not be collected' } })),
    );
  });
  // A slow or stuck scraper must not hold sockets open for ever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
