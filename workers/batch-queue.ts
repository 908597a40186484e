import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { BatchQueue } from '../src/service/batches.ts';

/** One job per batch, its id the batch id: the batch's runner (workers/batch-worker.ts). */
export const BATCH_QUEUE_NAME = 'batches';

/** Job data carries the batch id only. */
export interface BatchJobData {
  batchId: string;
}

export const BATCH_JOB_OPTIONS: JobsOptions = {
  // A runner that fails (Redis going away) runs again: every step of it is idempotent.
  attempts: 1_000,
  backoff: { type: 'exponential', delay: 1_000 },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 3600 },
};

export function createBatchQueue(connection: ConnectionOptions, prefix: string): Queue<BatchJobData> {
  return new Queue<BatchJobData>(BATCH_QUEUE_NAME, { connection, prefix: `${prefix}:bull`, defaultJobOptions: BATCH_JOB_OPTIONS });
}

/**
 * The batch service's queue: enqueue a batch's runner, and wake it. A wake sets a flag first, then
 * promotes the job if it sleeps (delayed): a runner that is busy finds the flag before it goes to
 * sleep, and one that is just going to sleep finds it right after (batch-worker.ts), so no wake is
 * lost between the two.
 */
export function batchQueueOf(queue: Queue<BatchJobData>, redis: Redis, wakeKey: (batchId: string) => string): BatchQueue {
  return {
    enqueue: async (batchId) => {
      await queue.add('run', { batchId }, { jobId: batchId });
    },
    wake: async (batchId) => {
      await redis.set(wakeKey(batchId), '1', 'EX', 3600);
      const job = await queue.getJob(batchId);
      if (job && (await job.isDelayed())) await job.promote().catch(() => undefined);
    },
  };
}
