import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { startRuntime } from './runtime.ts';
import { EmbeddedRedisError } from './state/redis.ts';
import { startOpsServer } from './ops-server.ts';
import { describeStore, StartupError, startupFailureLine, summaryLine, type StartupSummary } from './startup.ts';
import { parseApiTokens } from './api/tokens.ts';

/**
 * `npm start` (api + worker), `npm run api`, `npm run worker`. SIGTERM/SIGINT drain: the API stops
 * accepting, the worker finishes the steps it is running (every step is resumable anyway).
 *
 * Start-up either ends with one summary line or stops with one line that says what to fix
 * (configuration, Redis, the store, the Twilio credential): no stack traces.
 */
async function main(): Promise<void> {
  const mode = process.argv[2] ?? 'all';
  if (mode !== 'all' && mode !== 'api' && mode !== 'worker') {
    console.error(`usage: main.ts all|api|worker (got ${mode})`);
    process.exit(2);
  }
  const cfg = loadConfig(undefined, { requireTwilio: mode !== 'api' });
  const log = createLogger(cfg.logLevel, undefined, cfg.logFormat);
  const rt = await startRuntime(cfg, { api: mode !== 'worker', worker: mode !== 'api', log });
  const url = rt.app ? await rt.listen() : undefined;
  // METRICS_PORT: /metrics (and /healthz) on a listener of their own, to bind or firewall apart from
  // the API (which then does not serve /metrics); a worker-only process has no other.
  const ops = cfg.metricsPort > 0 ? await startOpsServer({ host: cfg.host, port: cfg.metricsPort, metrics: rt.metrics, draining: rt.draining }) : undefined;
  if (ops) log.info({ url: ops.url }, 'metrics listening');
  const summary: StartupSummary = {
    mode,
    store: describeStore(cfg.store),
    parent: cfg.twilio?.accountSid,
    drainSeconds: cfg.drainSeconds,
    redis: rt.redisLocation,
    redisEmbedded: !!rt.embeddedRedis,
    apiTokens: parseApiTokens(cfg.apiTokens).length,
    oidc: !!cfg.api.oidc,
    ...(url ? { api: url } : {}),
    ...(rt.worker ? { workerConcurrency: cfg.workerConcurrency } : {}),
  };
  log.info({ startup: summary }, summaryLine(summary));

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    // Rolling restarts: /readyz says 503 at once; after SHUTDOWN_DELAY_SECONDS the API stops
    // accepting, finishes its requests and ends its event streams, and the worker finishes (or
    // parks between two steps) the rotations it runs. Past SHUTDOWN_TIMEOUT_SECONDS the process
    // exits anyway: a job it still held is taken over by another worker once its lock expires.
    rt.beginDrain();
    const force = setTimeout(() => {
      log.error({ timeoutMs: cfg.shutdownTimeoutMs }, 'shutdown did not finish in time; exiting (another worker resumes what was running)');
      process.exit(1);
    }, cfg.shutdownTimeoutMs);
    force.unref();
    new Promise((r) => setTimeout(r, cfg.shutdownDelayMs))
      .then(() => rt.close())
      .then(() => ops?.close())
      .then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ err: { message: err.message } }, 'shutdown error');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The embedded redis-server stopping by itself leaves this process nothing to work with: exit, so
  // whatever supervises it (systemd, docker, a terminal) sees it.
  void rt.embeddedRedis?.exited.then(() => {
    if (stopping) return;
    console.error(`the embedded redis-server stopped unexpectedly (see ${cfg.dataDir}/redis/redis.log): rotator exits; start it again`);
    process.exit(1);
  });
}

main().catch((err: unknown) => {
  const known = err instanceof ConfigError || err instanceof StartupError || err instanceof EmbeddedRedisError;
  console.error(known ? (err as Error).message : startupFailureLine(err));
  process.exit(1);
});
