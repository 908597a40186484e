import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { startRuntime } from './runtime.ts';
import { RedisNotInstalledError } from './state/redis.ts';
import { startOpsServer } from './ops-server.ts';

/**
 * `npm start` (api + worker), `npm run api`, `npm run worker`. SIGTERM/SIGINT drain: the API stops
 * accepting, the worker finishes the steps it is running (every step is resumable anyway).
 */
async function main(): Promise<void> {
  const mode = process.argv[2] ?? 'all';
  if (!['all', 'api', 'worker'].includes(mode)) {
    console.error(`usage: main.ts all|api|worker (got ${mode})`);
    process.exit(2);
  }
  const cfg = loadConfig(undefined, { requireTwilio: mode !== 'api' });
  const log = createLogger(cfg.logLevel);
  const rt = await startRuntime(cfg, { api: mode !== 'worker', worker: mode !== 'api', log });
  if (rt.app) log.info({ url: await rt.listen() }, 'API listening');
  if (rt.worker) log.info({ concurrency: cfg.workerConcurrency }, 'worker started');
  // METRICS_PORT: /metrics (and /healthz) on a listener of their own, to bind or firewall apart from
  // the API (which then does not serve /metrics); a worker-only process has no other.
  const ops = cfg.metricsPort > 0 ? await startOpsServer({ host: cfg.host, port: cfg.metricsPort, metrics: rt.metrics }) : undefined;
  if (ops) log.info({ url: ops.url }, 'metrics listening');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    const force = setTimeout(() => process.exit(1), 30_000);
    force.unref();
    Promise.all([ops?.close(), rt.close()]).then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err: { message: err.message } }, 'shutdown error');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof RedisNotInstalledError) console.error(err.message);
  else console.error(`rotator failed to start: ${(err as Error).message}`);
  process.exit(1);
});
