import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Queue } from 'bullmq';
import type { Config } from './config.ts';
import type { SecretStore } from '../providers/secret-store.ts';
import { secretPath } from '../providers/secret-store.ts';
import { openSecretStore } from './stores.ts';
import { connectRedis, duplicateRedis, startEmbeddedRedis, type EmbeddedRedis } from './state/redis.ts';
import { describeRedisTarget, type RedisTarget } from './state/redis-target.ts';
import { replicaWaiter } from './state/replication.ts';
import { cachedCheck, redisLocation, storeStartupError, twilioStartupError, waitForRedis, withDeadline } from './startup.ts';
import { RotationRepository } from './state/rotations.ts';
import { RotationService, type RotationQueue } from './service/rotations.ts';
import { SubaccountGuard } from './service/subaccounts.ts';
import { TwilioAdmin, type TwilioKeyOps } from './twilio/admin.ts';
import { RedisConcurrencyGate } from './twilio/redis-gate.ts';
import { parseApiTokens } from './api/tokens.ts';
import { AccountRepository } from './state/accounts.ts';
import { AuditLog } from './state/audit.ts';
import { AuditRelay, transitionAuditFields } from './service/audit-relay.ts';
import { recordFinishedRotation, startAccountSync } from './service/accounts.ts';
import { CredentialRepository } from './state/credentials.ts';
import { PolicyRepository } from './state/policies.ts';
import { FleetDirectory } from './service/fleet.ts';
import { ComplianceFacts } from './state/compliance.ts';
import { ComplianceReader } from './service/compliance.ts';
import { complianceRowsOn, startComplianceRows } from './service/compliance-rows.ts';
import { ComplianceScanner, startComplianceScans } from './service/compliance-scan.ts';
import { Planner } from './service/planner.ts';
import { ScheduleStore } from './state/schedule.ts';
import { startPlannerTicker, type PlannerTicker } from '../workers/planner-worker.ts';
import { BatchRepository } from './state/batches.ts';
import { BatchRunner, BatchService } from './service/batches.ts';
import { Metrics } from './metrics.ts';
import { isTransient } from './domain/errors.ts';
import { isTerminal, type HistoryEntry, type RotationRecord } from './domain/rotation.ts';
import { DEFAULT_POLICIES, DEFAULT_POLICY_NAME, type Policy } from './domain/policy.ts';
import { createRotationQueue, enqueueRotation, type RotationJobData } from '../workers/queue.ts';
import { startRotationWorker, type RotationWorker } from '../workers/rotation-worker.ts';
import { batchQueueOf, createBatchQueue } from '../workers/batch-queue.ts';
import { startBatchWorker, type BatchWorker } from '../workers/batch-worker.ts';
import { StepLease } from '../workers/lease.ts';
import { createCrashPoints } from '../workers/crash-points.ts';
import type { PromoteGate } from '../workers/steps/context.ts';
import { NotifyRelay } from './service/notify-relay.ts';
import { createNotifyQueue, enqueueNotification, startNotifyWorker, type NotifyWorker } from '../workers/notify-worker.ts';
import { AuditRetention } from './service/audit-retention.ts';
import { ConsumerRegistry } from './state/consumers.ts';
import { ConsumerGate } from './service/consumer-gate.ts';

export interface RuntimeOptions {
  api: boolean;
  worker: boolean;
  log: Logger;
  /** Replace the Twilio adapter (tests). */
  twilio?: TwilioKeyOps;
  store?: SecretStore;
  gates?: PromoteGate[];
  /** Replace the clock of the compliance report and scan (tests judge a seeded fleet at a fixed time). */
  now?: () => number;
}

export interface Runtime {
  /** Carries the password of an embedded Redis: log `redisLocation` instead. Empty with Sentinel or Cluster (see `redisTarget`). */
  redisUrl: string;
  redisTarget: RedisTarget;
  redisLocation: string;
  /** Set when this process runs the data directory's redis-server; `exited` settles when it stops. */
  embeddedRedis?: { exited: Promise<void> };
  redis: Redis;
  repo: RotationRepository;
  service: RotationService;
  queue: Queue<RotationJobData>;
  store: SecretStore;
  accounts: AccountRepository;
  credentials: CredentialRepository;
  policies: PolicyRepository;
  fleet: FleetDirectory;
  /** Which key each consumer reports (issue 15). */
  consumers: ConsumerRegistry;
  /** The scheduled-rotation planner: replan, tick, view, pause (service/planner.ts). */
  planner: Planner;
  /** Set in a worker process with PLANNER_ENABLED: the BullMQ Job Scheduler and the tick's worker. */
  plannerTicker?: PlannerTicker;
  batches: BatchService;
  batchRepo: BatchRepository;
  audit: AuditLog;
  metrics: Metrics;
  /** The compliance report's facts and reader; the scanner where this process has Twilio. */
  compliance: { facts: ComplianceFacts; reader: ComplianceReader; scanner?: ComplianceScanner };
  app?: FastifyInstance;
  worker?: RotationWorker;
  batchWorker?: BatchWorker;
  /** True from beginDrain() on: /readyz (API and METRICS_PORT) answers 503. */
  draining(): boolean;
  /** SIGTERM's first step: stop looking ready, keep serving, until close(). */
  beginDrain(): void;
  /** Listen on HOST:PORT; resolves to the URL. */
  listen(): Promise<string>;
  /**
   * Stop every part in turn. `giveUpAfterMs`: stop waiting for a part after that long (logged,
   * naming it) and go on with the next — for in-process callers that must not hang on a client
   * library's close (BullMQ's Worker.close() never resolves while its connection is stuck
   * reconnecting: taskforcesh/bullmq#4656). A process is bounded by SHUTDOWN_TIMEOUT_SECONDS instead.
   */
  close(opts?: { giveUpAfterMs?: number }): Promise<void>;
}

/**
 * The composition root's body: config → Redis (embedded when REDIS_URL is unset) → store → Twilio
 * → queue → API and/or worker. `npm start`, `npm run api|worker`, the demo and the end-to-end tests
 * all come through here.
 */
export async function startRuntime(cfg: Config, opts: RuntimeOptions): Promise<Runtime> {
  const log = opts.log;
  for (const warning of cfg.warnings) log.warn(warning);
  let embedded: EmbeddedRedis | undefined;
  let target = cfg.redis;
  if (target) {
    await waitForRedis(target, cfg.redisConnectTimeoutMs);
  } else {
    embedded = await startEmbeddedRedis({ dir: join(cfg.dataDir, 'redis') });
    target = { kind: 'url', url: embedded.url };
    log.debug({ redis: embedded.location }, 'started embedded redis-server (set REDIS_URL to use your own)');
  }
  // A start-up check that fails past this point must not leave connections or redis-server behind.
  const undo: Array<() => unknown> = [];
  try {
    return await startOnRedis(cfg, opts, target, embedded, undo);
  } catch (err) {
    for (const step of undo.reverse()) await Promise.resolve(step()).catch(() => undefined);
    await embedded?.stop();
    throw err;
  }
}

async function startOnRedis(cfg: Config, opts: RuntimeOptions, redisTarget: RedisTarget, embedded: EmbeddedRedis | undefined, undo: Array<() => unknown>): Promise<Runtime> {
  const log = opts.log;
  const redis = connectRedis(redisTarget, 'shared', { autoPipeline: opts.worker });
  redis.on('error', (err) => log.warn({ err: { message: err.message } }, 'redis connection error'));
  undo.push(() => redis.disconnect());
  const queueConn = connectRedis(redisTarget, 'worker');
  queueConn.on('error', () => undefined);
  undo.push(() => queueConn.disconnect());
  const queue = createRotationQueue(queueConn, cfg.redisPrefix);
  // Without a listener BullMQ console.errors every failed reconnect with its stack trace; the shared
  // connection already logs the outage in one line per attempt.
  queue.on('error', () => undefined);
  undo.push(() => queue.close());
  const batchQueue = createBatchQueue(queueConn, cfg.redisPrefix);
  batchQueue.on('error', () => undefined);
  undo.push(() => batchQueue.close());
  const rotationQueue: RotationQueue = {
    enqueue: (id) => enqueueRotation(queue, id),
    wake: async (id) => {
      const job = await queue.getJob(id);
      if (job && (await job.isDelayed())) await job.promote().catch(() => undefined);
    },
    // A retried rotation's old job is finished (completed or failed): remove it so the id can be
    // enqueued again. A job still active is about to finish; the worker's recovery sweep re-enqueues then.
    requeue: async (id) => {
      const job = await queue.getJob(id);
      const state = job ? await job.getState() : 'missing';
      if (state === 'completed' || state === 'failed') await job!.remove().catch(() => undefined);
      else if (state !== 'missing' && state !== 'unknown') return;
      await enqueueRotation(queue, id);
    },
  };
  const pathOf = (sid: string, credential: string): string => secretPath(cfg.secretPathTemplate, sid, credential);
  // The state a process reads and writes through one connection.
  const stateOn = (conn: Redis) => {
    const rotations = new RotationRepository(conn, cfg.redisPrefix);
    const accounts = new AccountRepository(conn, cfg.redisPrefix, { defaultPolicy: cfg.rotationPolicy });
    const credentials = new CredentialRepository(conn, cfg.redisPrefix);
    const policies = new PolicyRepository(conn, cfg.redisPrefix, builtInPolicies(cfg));
    const complianceFacts = new ComplianceFacts(conn, cfg.redisPrefix);
    const complianceRows = complianceRowsOn(conn, cfg.redisPrefix, { credentials, policies });
    const service = new RotationService(rotations, rotationQueue, Date.now, {
      secretPath: pathOf,
      keyNamePrefix: cfg.keyNamePrefix,
      kindOf: async (accountSid, name) => (await credentials.get({ accountSid, name }))?.kind ?? 'api-key',
      authTokenEnabled: async (accountSid) => (await accounts.get(accountSid))?.authTokenRotation === true,
    });
    const fleet = new FleetDirectory({ credentials, accounts, policies });
    const planner = new Planner(
      // Ticks run in the worker (metrics is built below, before any tick).
      { store: new ScheduleStore(conn, cfg.redisPrefix), fleet, policies, service, log, crash: createCrashPoints(cfg.crashPoints), onTick: (r) => metrics.observeTick(r) },
      { tickMs: cfg.planner.tickMs, maxStartsPerTick: cfg.planner.maxStartsPerTick, leaseMs: cfg.planner.leaseMs, retryAfterFailureMs: cfg.planner.retryAfterFailureMs },
    );
    const batchRepo = new BatchRepository(conn, cfg.redisPrefix);
    return {
      consumers: new ConsumerRegistry(conn, { prefix: cfg.redisPrefix, expiryMs: cfg.consumers.expiryMs }),
      repo: rotations,
      service,
      accounts,
      credentials,
      policies,
      fleet,
      planner,
      batchRepo,
      batches: new BatchService({ batches: batchRepo, fleet, queue: batchQueueOf(batchQueue, conn, (id) => rotations.keys.batchWake(id)) }),
      audit: new AuditLog(conn, cfg.redisPrefix),
      complianceFacts,
      complianceRows,
      complianceReader: new ComplianceReader({ redis: conn, prefix: cfg.redisPrefix, credentials, accounts, policies, facts: complianceFacts, keyNamePrefix: cfg.keyNamePrefix, rows: complianceRows, keepRows: cfg.complianceKeepRows }),
    };
  };
  type State = ReturnType<typeof stateOn>;
  const shared = stateOn(redis);
  const { repo, service, accounts, credentials, policies, fleet, planner, audit, batches, batchRepo } = shared;
  const wakeBatch = batchQueueOf(batchQueue, redis, (id) => repo.keys.batchWake(id)).wake;
  // What earlier versions kept per subaccount becomes each one's `default` credential (idempotent).
  await credentials.migrateFromAccounts();
  const metrics = new Metrics();
  metrics.setSources({
    rotationCounts: () => repo.countByStatus(),
    queueCounts: () => queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized'),
    plannerState: () => planner.gauges(),
  });
  const store = metrics.instrumentStore(await openCheckedStore(cfg, opts.store));
  undo.push(() => store.close());

  // One cap on concurrent Twilio requests for the parent account, across every process. The API
  // uses Twilio only to look up a subaccount its inventory does not know; without credentials
  // (`npm run api` may run without them) it relies on the inventory alone (service/subaccounts.ts).
  const gate = cfg.twilio ? new RedisConcurrencyGate(redis, { key: `${cfg.redisPrefix}:twilio:slots:${cfg.twilio.accountSid}`, limit: cfg.twilioMaxConcurrency }) : undefined;
  if (gate) undo.push(() => gate.close());
  const admin =
    cfg.twilio && gate ? new TwilioAdmin({ credential: cfg.twilio, baseUrl: cfg.twilioBaseUrl, timeoutMs: cfg.twilioTimeoutMs, gate, observe: metrics.observeTwilio }) : undefined;
  if (admin && !opts.twilio) await checkTwilioCredential(cfg, admin, log);
  const twilio: TwilioKeyOps | undefined = opts.twilio ?? admin;
  // The compliance scan lists keys at Twilio and reads the store: only where Twilio is configured.
  const scannerOn = (st: State): ComplianceScanner | undefined =>
    twilio
      ? new ComplianceScanner({
          facts: st.complianceFacts,
          reader: st.complianceReader,
          accounts: st.accounts,
          credentials: st.credentials,
          policies: st.policies,
          twilio,
          store,
          secretPath: (sid, name) => secretPath(cfg.secretPathTemplate, sid, name),
          keyNamePrefix: cfg.keyNamePrefix,
          knownRotations: async (sid, ids) => new Set((await st.repo.knownRotations(sid, ids)).keys()),
          log,
          ...(opts.now ? { now: opts.now } : {}),
        })
      : undefined;
  const scanner = scannerOn(shared);
  // Compliance rows rendered as their inputs change, in the workers (one at a time renders; an
  // API alone renders the rows a page finds stale and stores them: service/compliance-rows.ts).
  const complianceRows = opts.worker ? startComplianceRows(shared.complianceRows, { log }) : undefined;
  undo.push(() => complianceRows?.stop());

  let draining = false;
  let app: FastifyInstance | undefined;
  // With a worker in the same process (npm start) the shared connection auto-pipelines, which slows
  // list pages (see connectRedis): the API then reads and writes through a connection of its own.
  let apiRedis: Redis | undefined;
  if (opts.api) {
    if (opts.worker) {
      const conn = connectRedis(redisTarget, 'shared');
      conn.on('error', (err) => log.warn({ err: { message: err.message } }, 'redis connection error'));
      undo.push(() => conn.disconnect());
      apiRedis = conn;
    }
    const viaApi = apiRedis ?? redis;
    const apiState = apiRedis ? stateOn(apiRedis) : shared;
    // Loaded only where an API runs: Fastify, its plugins and jose are over half of a worker
    // process's start-up CPU (measured: ~1.2 of 2.7 s), and workers are what scale out and restart.
    const [{ buildApp }, { createOidcVerifier }] = await Promise.all([import('./api/app.ts'), import('./api/oidc.ts')]);
    app = await buildApp({
      ...apiState,
      subaccounts: new SubaccountGuard({ accounts: apiState.accounts, parentSid: cfg.twilio?.accountSid, twilio }),
      // Writes that move a schedule (labels, overrides, pauses, policies) replan what they moved.
      onFleetChange: async (ids) => {
        await apiState.planner.replan(ids);
      },
      manageNewSubaccounts: cfg.manageNewSubaccounts,
      // A heartbeat that moves a consumer wakes the rotation waiting for it (consumer gate).
      wakeRotation: (id) => rotationQueue.wake(id),
      metrics,
      redis: viaApi,
      connectRedis: () => duplicateRedis(viaApi, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null }),
      tokens: parseApiTokens(cfg.apiTokens),
      oidc: cfg.api.oidc ? createOidcVerifier(cfg.api.oidc) : undefined,
      oidcSignIn: cfg.api.oidcSignIn,
      rateLimit: { max: cfg.api.rateLimitMax, windowMs: cfg.api.rateLimitWindowMs },
      corsOrigins: cfg.api.corsOrigins,
      idempotencyTtlSeconds: cfg.api.idempotencyTtlSeconds,
      sse: { heartbeatMs: cfg.api.sseHeartbeatMs, maxClients: cfg.api.sseMaxClients },
      logger: log,
      trustProxy: cfg.trustProxy,
      ...(opts.now ? { now: opts.now } : {}),
      ...(cfg.redisWait.replicas > 0 ? { replicate: replicaWaiter(viaApi, { ...cfg.redisWait, log }) } : {}),
      compliance: {
        reader: apiState.complianceReader,
        facts: apiState.complianceFacts,
        sprawl: { accounts: apiState.accounts, credentials: apiState.credentials, scanner: apiState === shared ? scanner : scannerOn(apiState), facts: apiState.complianceFacts, twilio, keyNamePrefix: cfg.keyNamePrefix },
      },
      // With METRICS_PORT, main.ts serves /metrics there and the API's port does not.
      serveMetrics: cfg.metricsPort === 0,
      draining: () => draining,
      readiness: {
        redis: async () => {
          if ((await viaApi.ping()) !== 'PONG') throw new Error('Redis did not answer PING');
        },
        store: () => store.check(),
        // Twilio is asked at most once a minute while it answers (every 10 s while it does not).
        ...(admin && !opts.twilio ? { twilio: cachedCheck(() => admin.checkCredential(), { okMs: 60_000, failMs: 10_000 }) } : {}),
      },
      advisoryReadiness: {
        worker: async () => {
          if ((await queue.getWorkersCount()) === 0) throw new Error('no worker is connected to the rotation queue: rotations wait until one runs (npm run worker, or npm start)');
        },
      },
    });
    undo.push(() => app?.close());
    if (!cfg.apiTokens && !cfg.api.oidc) log.warn('API_TOKENS is empty: every API request but health will be refused (npm run mint-token -- <name> <role>)');
  }

  let worker: RotationWorker | undefined;
  let batchWorker: BatchWorker | undefined;
  let workerConn: Redis | undefined;
  let accountSync: { stop(): void } | undefined;
  let complianceScans: { stop(): Promise<void> } | undefined;
  // Every persisted step transition feeds the audit chain, the account inventory and the metrics;
  // none of them may stop a rotation, so failures are logged and counted. An audit append lost
  // here (the process dies, Redis restarts) is made good by the audit relay below; the entry
  // carries the transition's own time, which is how the relay recognises it.
  const onTransition = (rec: RotationRecord, entry: HistoryEntry): void => {
    metrics.observeTransition(rec, entry);
    audit.append(transitionAuditFields(rec, entry, 'worker'), Date.parse(entry.at)).catch((err: Error) => {
      metrics.auditErrors.inc();
      log.error({ rotationId: rec.id, err: { message: err.message } }, 'audit append failed');
    });
    if (isTerminal(rec.status) && rec.batchId) {
      // The batch that started it looks at once rather than at its next poll.
      wakeBatch(rec.batchId).catch((err: Error) => log.warn({ rotationId: rec.id, batchId: rec.batchId, err: { message: err.message } }, 'could not wake the batch'));
    }
    if (isTerminal(rec.status)) {
      // The planner decides the credential's next time from what recordFinishedRotation wrote.
      void recordFinishedRotation(credentials, accounts, rec)
        .catch((err: Error) => log.warn({ rotationId: rec.id, err: { message: err.message } }, 'could not update the credential inventory'))
        .then(() => planner.onFinished(rec))
        .catch((err: Error) => log.warn({ rotationId: rec.id, err: { message: err.message } }, 'could not replan the credential (the next rebuild or tick does)'));
    }
  };
  let auditRelay: AuditRelay | undefined;
  let notify: { relay: NotifyRelay; delivery: NotifyWorker; queue: ReturnType<typeof createNotifyQueue> } | undefined;
  let auditRetention: AuditRetention | undefined;
  if (opts.worker) {
    auditRelay = new AuditRelay({ redis, prefix: cfg.redisPrefix, audit, log });
    auditRelay.start();
    undo.push(() => auditRelay?.stop());
    if (!twilio || !cfg.twilio) throw new Error('the worker needs TWILIO_ACCOUNT_SID and an admin credential');
    const parentAccountSid = cfg.twilio.accountSid;
    // Subaccounts the sync starts managing (MANAGE_NEW_SUBACCOUNTS) are planned at once: a bootstrap is due now.
    if (cfg.accountSyncIntervalMs > 0) accountSync = startAccountSync({ twilio, accounts, log, intervalMs: cfg.accountSyncIntervalMs, credentials, manage: cfg.manageNewSubaccounts, onFleetChange: async (ids) => void (await planner.replan(ids)) });
    if (scanner) complianceScans = startComplianceScans({ scanner, facts: shared.complianceFacts, log, intervalMs: cfg.complianceScanIntervalMs, ...(opts.now ? { now: opts.now } : {}) });
    undo.push(() => complianceScans?.stop());
    const conn = connectRedis(redisTarget, 'worker');
    conn.on('error', () => undefined);
    undo.push(() => conn.disconnect());
    workerConn = conn;
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
        onTransition: (rec, entry) => onTransition(rec, entry),
        lease: new StepLease(redis, (id) => repo.keys.stepLease(id), cfg.jobLockMs),
        ctx: {
          twilio,
          ...(admin ? { credentialOps: admin } : {}),
          store,
          secretPath: pathOf,
          keyNamePrefix: cfg.keyNamePrefix,
          parentAccountSid,
          knownRotations: (sid, ids) => repo.knownRotations(sid, ids),
          reportSprawl: (rec, keys) => {
            metrics.keySprawl.inc(keys.length);
            log.warn({ rotationId: rec.id, accountSid: rec.accountSid, credential: rec.credential, keys: keys.map((k) => k.sid) }, `API keys named with the prefix "${cfg.keyNamePrefix}:" that this deployment did not create: left in place (another deployment with the same KEY_NAME_PREFIX, or someone naming keys so)`);
          },
          drainMs: cfg.drainSeconds * 1000,
          gates: opts.gates ?? [],
          drainGate: new ConsumerGate({
            consumers: shared.consumers,
            policyOf: async (accountSid, name) => {
              const entry = await fleet.describe({ accountSid, name });
              return (entry?.assignment.policy ?? (await policies.catalog()).get('default'))?.consumerGate ?? null;
            },
            recheckMs: cfg.consumers.recheckMs,
          }),
          now: Date.now,
          crash: createCrashPoints(cfg.crashPoints),
        },
      },
    });
    batchWorker = startBatchWorker({
      connection: workerConn,
      prefix: cfg.redisPrefix,
      concurrency: 8,
      lockMs: cfg.jobLockMs,
      stalledIntervalMs: cfg.stalledIntervalMs,
      runner: new BatchRunner({ batches: batchRepo, rotations: service, repo, fleet, audit, log, maxInFlight: cfg.batchMaxInFlight }),
      redis,
      wakeKey: (id) => repo.keys.batchWake(id),
      batches: batchRepo,
      queue: batchQueue,
      log,
      recoveryIntervalMs: Math.max(30_000, cfg.stalledIntervalMs),
    });
    // Notifications (issue 18): the relay turns the events stream and the planner's state into
    // notifications; the notify worker delivers them with retries. Only with a sink configured.
    if (cfg.notify.slackUrl || cfg.notify.webhook) {
      const notifyQueue = createNotifyQueue(queueConn, cfg.redisPrefix);
      undo.push(() => notifyQueue.close());
      const delivery = startNotifyWorker({ connection: workerConn, prefix: cfg.redisPrefix, cfg: cfg.notify, log, metrics });
      undo.push(() => delivery.close());
      const relay = new NotifyRelay({
        redis,
        prefix: cfg.redisPrefix,
        enqueue: (n) => enqueueNotification(notifyQueue, cfg.notify, n),
        log,
        ...(cfg.planner.enabled ? { plannerTickMs: cfg.planner.tickMs, lastTickMs: async () => ((t) => (t ? Date.parse(t.at) : null))(await planner.lastTick()) } : {}),
      });
      relay.start();
      undo.push(() => relay.stop());
      notify = { relay, delivery, queue: notifyQueue };
    }
    // Audit retention (issue 18): export, then trim behind a signed checkpoint.
    if (cfg.auditRetention.days > 0) {
      auditRetention = new AuditRetention({ redis, prefix: cfg.redisPrefix, log, cfg: cfg.auditRetention, onTrimmed: (n: number) => metrics.auditTrimmed.inc(n) });
      auditRetention.start();
      undo.push(() => auditRetention?.stop());
    }
  }
  let plannerTicker: PlannerTicker | undefined;
  if (opts.worker && cfg.planner.enabled) {
    plannerTicker = await startPlannerTicker({
      queueConnection: queueConn,
      workerConnection: workerConn!,
      prefix: cfg.redisPrefix,
      tickMs: cfg.planner.tickMs,
      tick: () => planner.tick(),
      lastTick: () => planner.lastTick(),
      log,
    });
    undo.push(() => plannerTicker?.close());
  }

  return {
    redisUrl: redisTarget.kind === 'url' ? redisTarget.url : '',
    redisTarget,
    redisLocation: embedded?.location ?? describeRedisTarget(redisTarget, redisLocation),
    embeddedRedis: embedded ? { exited: embedded.exited.then(() => undefined) } : undefined,
    redis,
    repo,
    service,
    queue,
    store,
    accounts,
    consumers: shared.consumers,
    credentials,
    policies,
    fleet,
    planner,
    plannerTicker,
    batches,
    batchRepo,
    audit,
    metrics,
    compliance: { facts: shared.complianceFacts, reader: shared.complianceReader, ...(scanner ? { scanner } : {}) },
    app,
    worker,
    batchWorker,
    draining: () => draining,
    beginDrain() {
      draining = true;
    },
    async listen() {
      if (!app) throw new Error('no API in this process');
      return app.listen({ host: cfg.host, port: cfg.port });
    },
    async close(opts: { giveUpAfterMs?: number } = {}) {
      // Each part in turn; one that has not stopped after 10 s is named in the log (once), so a
      // shutdown that hangs says what it waits for.
      const part = async (name: string, stop: () => unknown): Promise<void> => {
        const slow = setTimeout(() => log.warn({ part: name }, 'shutdown: still waiting for this part to stop'), 10_000);
        slow.unref();
        let giveUp: NodeJS.Timeout | undefined;
        const bound = opts.giveUpAfterMs === undefined
          ? []
          : [new Promise<void>((resolve) => {
              giveUp = setTimeout(() => {
                log.warn({ part: name, afterMs: opts.giveUpAfterMs }, 'shutdown: gave up waiting for this part to stop');
                resolve();
              }, opts.giveUpAfterMs);
              giveUp.unref();
            })];
        try {
          await Promise.race([Promise.resolve().then(stop), ...bound]);
        } finally {
          clearTimeout(slow);
          clearTimeout(giveUp);
        }
      };
      await part('api', () => app?.close());
      accountSync?.stop();
      await part('compliance scans', () => complianceScans?.stop());
      await part('compliance rows', () => complianceRows?.stop());
      await part('planner ticker', () => plannerTicker?.close());
      await part('rotation worker', () => worker?.close());
      await part('batch worker', () => batchWorker?.close());
      await part('audit relay', () => auditRelay?.stop());
      await part('audit retention', () => auditRetention?.stop());
      await part('notification relay', () => notify?.relay.stop());
      await part('notification delivery', () => notify?.delivery.close());
      await part('notification queue', () => notify?.queue.close());
      await part('twilio gate', () => gate?.close());
      await part('rotation queue', () => queue.close());
      await part('batch queue', () => batchQueue.close());
      await part('secret store', () => store.close());
      apiRedis?.disconnect();
      redis.disconnect();
      queueConn.disconnect();
      workerConn?.disconnect();
      await part('embedded redis', () => embedded?.stop());
    },
  };
}

/**
 * The policies in force until an admin stores one: the defaults, with the `default` policy's
 * interval from ROTATION_POLICY (what earlier versions called quarterly or monthly).
 */
export function builtInPolicies(cfg: Pick<Config, 'rotationPolicy'>): Policy[] {
  return DEFAULT_POLICIES.map((p) => (p.name === DEFAULT_POLICY_NAME && cfg.rotationPolicy === 'monthly' ? { ...p, interval: 'P30D' } : p));
}

/** A store, its start-up check and any failure opening it all answer within this. */
const STARTUP_CHECK_MS = 20_000;

/**
 * Open the configured store and run its check: a store that cannot work stops start-up, in one
 * line. A permanent failure (permissions, configuration) stops it at once; a transient one (the
 * store briefly unreachable or refusing writes, as during a Vault restart or a worker restarted
 * in the middle of an outage) is asked again until STARTUP_CHECK_MS, so a fleet of workers does
 * not crash-loop through a blip, and an outage that lasts still ends start-up with its reason.
 */
async function openCheckedStore(cfg: Config, given?: SecretStore): Promise<SecretStore> {
  let store: SecretStore | undefined = given;
  const deadline = Date.now() + STARTUP_CHECK_MS;
  try {
    store ??= await openSecretStore(cfg.store);
    for (;;) {
      try {
        await withDeadline(store.check(), Math.max(1_000, deadline - Date.now()), 'the secret store');
        return store;
      } catch (err) {
        if (!isTransient(err) || Date.now() + 500 >= deadline) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  } catch (err) {
    if (store && !given) await store.close().catch(() => undefined);
    throw storeStartupError(cfg.store, err);
  }
}

/**
 * Twilio refusing the admin credential (or not knowing the parent) stops start-up; Twilio not
 * answering does not — restarting would not help, and /readyz reports it meanwhile.
 */
async function checkTwilioCredential(cfg: Config, admin: Pick<TwilioAdmin, 'checkCredential'>, log: Logger): Promise<void> {
  try {
    await withDeadline(admin.checkCredential(), STARTUP_CHECK_MS, 'Twilio');
  } catch (err) {
    const fatal = twilioStartupError(cfg, err);
    if (fatal) throw fatal;
    log.warn({ err: { message: (err as Error).message } }, 'could not check the Twilio admin credential at start-up; /readyz reports twilio until it answers');
  }
}
