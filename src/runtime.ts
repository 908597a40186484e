import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Queue } from 'bullmq';
import type { Config } from './config.ts';
import type { SecretStore } from '../providers/secret-store.ts';
import { secretPath } from '../providers/secret-store.ts';
import { openSecretStore } from './stores.ts';
import { connectRedis, startEmbeddedRedis, type EmbeddedRedis } from './state/redis.ts';
import { RotationRepository } from './state/rotations.ts';
import { RotationService, type RotationQueue } from './service/rotations.ts';
import { TwilioAdmin, type TwilioKeyOps } from './twilio/admin.ts';
import { RedisConcurrencyGate } from './twilio/redis-gate.ts';
import { buildApp } from './api/app.ts';
import { parseApiTokens } from './api/tokens.ts';
import { createRotationQueue, enqueueRotation, type RotationJobData } from '../workers/queue.ts';
import { startRotationWorker, type RotationWorker } from '../workers/rotation-worker.ts';
import { StepLease } from '../workers/lease.ts';
import { createCrashPoints } from '../workers/crash-points.ts';
import type { PromoteGate } from '../workers/steps/context.ts';

export interface RuntimeOptions {
  api: boolean;
  worker: boolean;
  log: Logger;
  /** Replace the Twilio adapter (tests). */
  twilio?: TwilioKeyOps;
  store?: SecretStore;
  gates?: PromoteGate[];
}

export interface Runtime {
  redisUrl: string;
  redis: Redis;
  repo: RotationRepository;
  service: RotationService;
  queue: Queue<RotationJobData>;
  store: SecretStore;
  app?: FastifyInstance;
  worker?: RotationWorker;
  /** Listen on HOST:PORT; resolves to the URL. */
  listen(): Promise<string>;
  close(): Promise<void>;
}

/**
 * The composition root's body: config → Redis (embedded when REDIS_URL is unset) → store → Twilio
 * → queue → API and/or worker. `npm start`, `npm run api|worker`, the demo and the end-to-end tests
 * all come through here.
 */
export async function startRuntime(cfg: Config, opts: RuntimeOptions): Promise<Runtime> {
  const log = opts.log;
  let embedded: EmbeddedRedis | undefined;
  let redisUrl = cfg.redisUrl;
  if (!redisUrl) {
    embedded = await startEmbeddedRedis({ dir: join(cfg.dataDir, 'redis'), port: 6390 }).catch(async (err: Error) => {
      // Port taken (another instance?): any free port will do.
      if (/exited|did not answer/.test(err.message)) return startEmbeddedRedis({ dir: join(cfg.dataDir, 'redis') });
      throw err;
    });
    redisUrl = embedded.url;
    log.info({ redis: redisUrl }, 'started embedded redis-server (set REDIS_URL to use your own)');
  }
  const redis = connectRedis(redisUrl, 'api');
  redis.on('error', (err) => log.warn({ err: { message: err.message } }, 'redis connection error'));
  const repo = new RotationRepository(redis, cfg.redisPrefix);
  const queueConn = connectRedis(redisUrl, 'worker');
  queueConn.on('error', () => undefined);
  const queue = createRotationQueue(queueConn, cfg.redisPrefix);
  const rotationQueue: RotationQueue = {
    enqueue: (id) => enqueueRotation(queue, id),
    wake: async (id) => {
      const job = await queue.getJob(id);
      if (job && (await job.isDelayed())) await job.promote().catch(() => undefined);
    },
  };
  const service = new RotationService(repo, rotationQueue);
  const store = opts.store ?? (await openSecretStore(cfg.store));

  let app: FastifyInstance | undefined;
  if (opts.api) {
    app = await buildApp({
      repo,
      service,
      tokens: parseApiTokens(cfg.apiTokens),
      logger: log,
      trustProxy: cfg.trustProxy,
      readiness: {
        redis: async () => {
          if ((await redis.ping()) !== 'PONG') throw new Error('Redis did not answer PING');
        },
        store: () => store.check(),
      },
    });
    if (!cfg.apiTokens) log.warn('API_TOKENS is empty: every API request but health will be refused (npm run mint-token -- <name> <role>)');
  }

  let worker: RotationWorker | undefined;
  let workerConn: Redis | undefined;
  let gate: RedisConcurrencyGate | undefined;
  if (opts.worker) {
    // One cap on concurrent Twilio requests for the parent account, across every worker process.
    gate = cfg.twilio ? new RedisConcurrencyGate(redis, { key: `${cfg.redisPrefix}:twilio:slots:${cfg.twilio.accountSid}`, limit: cfg.twilioMaxConcurrency }) : undefined;
    const twilio =
      opts.twilio ??
      (cfg.twilio && gate
        ? new TwilioAdmin({ credential: cfg.twilio, baseUrl: cfg.twilioBaseUrl, timeoutMs: cfg.twilioTimeoutMs, gate })
        : undefined);
    if (!twilio) throw new Error('the worker needs TWILIO_ACCOUNT_SID and an admin credential');
    workerConn = connectRedis(redisUrl, 'worker');
    workerConn.on('error', () => undefined);
    worker = startRotationWorker({
      connection: workerConn,
      prefix: cfg.redisPrefix,
      concurrency: cfg.workerConcurrency,
      lockMs: cfg.jobLockMs,
      stalledIntervalMs: cfg.stalledIntervalMs,
      queue,
      log,
      recoveryIntervalMs: Math.max(1_000, cfg.stalledIntervalMs),
      retentionMs: cfg.retentionDays * 86_400_000,
      processor: {
        repo,
        log,
        lease: new StepLease(redis, (id) => repo.keys.stepLease(id), cfg.jobLockMs),
        ctx: {
          twilio,
          store,
          secretPath: (sid) => secretPath(cfg.secretPathTemplate, sid),
          keyNamePrefix: cfg.keyNamePrefix,
          drainMs: cfg.drainSeconds * 1000,
          gates: opts.gates ?? [],
          now: Date.now,
          crash: createCrashPoints(cfg.crashPoints),
        },
      },
    });
  }

  return {
    redisUrl,
    redis,
    repo,
    service,
    queue,
    store,
    app,
    worker,
    async listen() {
      if (!app) throw new Error('no API in this process');
      return app.listen({ host: cfg.host, port: cfg.port });
    },
    async close() {
      await app?.close();
      await worker?.close();
      await gate?.close();
      await queue.close();
      await store.close();
      redis.disconnect();
      queueConn.disconnect();
      workerConn?.disconnect();
      await embedded?.stop();
    },
  };
}
