import { Queue, Worker, type ConnectionOptions } from 'bullmq';
import type { Logger } from 'pino';
import { plannerStalled } from '../src/domain/schedule.ts';
import type { TickReport } from '../src/state/schedule.ts';

/**
 * BullMQ plumbing of the planner's tick: a queue of its own (`planner`), one Job Scheduler with a
 * fixed `every` (not a cron pattern: FACTS.md, cron-parser's DST bugs), and a worker of concurrency 1
 * in every worker process. The tick itself is service/planner.ts.
 *
 * Every process upserts the same scheduler id at start: `upsertJobScheduler` is one atomic script
 * and the next job's id is `repeat:<id>:<millis>`, so any number of processes starting at once
 * leave one scheduler and one next job. BullMQ creates the next iteration when a worker starts the
 * current one, collapses missed iterations after an outage into one, and re-runs a stalled one; the
 * tick is safe under all three (each due credential is claimed once).
 */
export const PLANNER_QUEUE = 'planner';
export const PLANNER_SCHEDULER_ID = 'planner-tick';

export interface PlannerTicker {
  queue: Queue;
  worker: Worker;
  /** (Re)create the Job Scheduler: idempotent. */
  ensureScheduler(): Promise<void>;
  close(): Promise<void>;
}

export interface PlannerTickerOptions {
  /** For the queue (fail fast) and the worker (BullMQ duplicates it for blocking reads). */
  queueConnection: ConnectionOptions;
  workerConnection: ConnectionOptions;
  prefix: string;
  tickMs: number;
  tick: () => Promise<TickReport>;
  lastTick: () => Promise<TickReport | null>;
  log: Logger;
}

export function createPlannerQueue(connection: ConnectionOptions, prefix: string): Queue {
  return new Queue(PLANNER_QUEUE, { connection, prefix: `${prefix}:bull` });
}

export async function startPlannerTicker(opts: PlannerTickerOptions): Promise<PlannerTicker> {
  const queue = createPlannerQueue(opts.queueConnection, opts.prefix);
  queue.on('error', () => undefined);
  const ensureScheduler = async (): Promise<void> => {
    await queue.upsertJobScheduler(PLANNER_SCHEDULER_ID, { every: opts.tickMs }, { name: 'tick', data: {}, opts: { removeOnComplete: true, removeOnFail: { count: 100 }, attempts: 1 } });
  };
  await ensureScheduler();
  const worker = new Worker(PLANNER_QUEUE, async () => opts.tick(), {
    connection: opts.workerConnection,
    prefix: `${opts.prefix}:bull`,
    concurrency: 1,
  });
  worker.on('error', (err) => opts.log.error({ err: { message: err.message } }, 'planner worker error'));
  worker.on('failed', (_job, err) => opts.log.warn({ err: { message: err.message } }, 'planner tick failed; the next tick runs as scheduled'));

  // A Job Scheduler that stopped producing jobs (taskforcesh/bullmq #3262, fixed upstream in #3269)
  // would leave the fleet unrotated without a sound: a process that sees no tick for three intervals
  // upserts it again.
  const watchdog = setInterval(() => {
    opts
      .lastTick()
      .then(async (last) => {
        if (!plannerStalled(last ? Date.parse(last.at) : null, opts.tickMs, Date.now())) return;
        opts.log.warn({ lastTick: last?.at ?? null }, 'planner: no tick for three intervals; upserting the Job Scheduler again');
        await ensureScheduler();
      })
      .catch((err: Error) => opts.log.warn({ err: { message: err.message } }, 'planner watchdog failed'));
  }, Math.max(1_000, 3 * opts.tickMs));
  watchdog.unref();

  return {
    queue,
    worker,
    ensureScheduler,
    async close() {
      clearInterval(watchdog);
      await worker.close();
      await queue.close();
    },
  };
}
