import { DelayedError, Worker, type ConnectionOptions, type Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { BatchRunner } from '../src/service/batches.ts';
import type { BatchRepository } from '../src/state/batches.ts';
import { BATCH_QUEUE_NAME, type BatchJobData } from './batch-queue.ts';

export interface BatchWorkerOptions {
  connection: ConnectionOptions;
  prefix: string;
  /** Batches run at once by this process (each is mostly asleep). */
  concurrency: number;
  lockMs: number;
  stalledIntervalMs: number;
  runner: BatchRunner;
  redis: Redis;
  wakeKey: (batchId: string) => string;
  batches: BatchRepository;
  queue: Queue<BatchJobData>;
  log: Logger;
  /** How often to look for unfinished batches whose job went missing (0: only at start). */
  recoveryIntervalMs?: number;
}

export interface BatchWorker {
  worker: Worker<BatchJobData>;
  recover(): Promise<number>;
  close(): Promise<void>;
}

/**
 * The batch runner as a BullMQ job: run, then sleep as a delayed job until the runner's next
 * wake-up; a rotation ending or an operator's action promotes it early (batch-queue.ts wake).
 */
export function startBatchWorker(opts: BatchWorkerOptions): BatchWorker {
  const process = async (job: Job<BatchJobData>, token?: string): Promise<void> => {
    const id = job.data.batchId;
    for (;;) {
      await opts.redis.del(opts.wakeKey(id));
      const r = await opts.runner.run(id);
      if (r.done) return;
      // Woken while running: look again rather than sleep through it.
      if ((await opts.redis.exists(opts.wakeKey(id))) === 1) continue;
      await job.moveToDelayed(r.wakeAt, token);
      // A wake between the check above and the move found no delayed job to promote.
      if ((await opts.redis.exists(opts.wakeKey(id))) === 1) await job.promote().catch(() => undefined);
      throw new DelayedError();
    }
  };
  const worker = new Worker<BatchJobData>(BATCH_QUEUE_NAME, process, {
    connection: opts.connection,
    prefix: `${opts.prefix}:bull`,
    concurrency: opts.concurrency,
    lockDuration: opts.lockMs,
    stalledInterval: opts.stalledIntervalMs,
    // The runner is idempotent: a job orphaned by a dead worker is always safe to run again.
    maxStalledCount: 1_000_000,
  });
  worker.on('error', (err) => opts.log.error({ err: { message: err.message } }, 'batch worker error'));
  worker.on('failed', (job, err) => opts.log.warn({ batchId: job?.data.batchId, err: { message: err.message } }, 'batch runner failed; it runs again'));

  const recover = (): Promise<number> => recoverBatches(opts.batches, opts.queue, opts.log);
  recover().catch((err: Error) => opts.log.warn({ err: { message: err.message } }, 'batch recovery sweep failed'));
  const timer = (opts.recoveryIntervalMs ?? 0) > 0 ? setInterval(() => void recover().catch(() => undefined), opts.recoveryIntervalMs) : undefined;
  timer?.unref();
  return {
    worker,
    recover,
    close: async () => {
      if (timer) clearInterval(timer);
      await worker.close();
    },
  };
}

/**
 * An unfinished batch whose job is gone (the API died between storing it and enqueuing, or the job
 * failed for good) would never finish: enqueue it again. Looks at the most recent batches only.
 */
export async function recoverBatches(batches: BatchRepository, queue: Queue<BatchJobData>, log: Logger, recent = 200): Promise<number> {
  let recovered = 0;
  const page = await batches.list({ limit: recent });
  for (const b of page.items) {
    if (b.finishedAt !== null) continue;
    const job = await queue.getJob(b.id);
    const state = job ? await job.getState() : 'missing';
    if (state === 'failed' || state === 'completed') await job!.remove().catch(() => undefined);
    else if (state !== 'missing' && state !== 'unknown') continue;
    await queue.add('run', { batchId: b.id }, { jobId: b.id });
    recovered++;
    log.warn({ batchId: b.id, state }, 're-enqueued an unfinished batch whose job was missing');
  }
  return recovered;
}
