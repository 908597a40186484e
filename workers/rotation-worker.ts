import { Worker, type ConnectionOptions, type Queue } from 'bullmq';
import type { Logger } from 'pino';
import { backoffDelay } from '../src/domain/backoff.ts';
import type { RotationRepository } from '../src/state/rotations.ts';
import { RotationProcessor, type ProcessorDeps } from './processor.ts';
import { enqueueRotation, JOB_ATTEMPTS, QUEUE_NAME, type RotationJobData } from './queue.ts';

export interface RotationWorkerOptions {
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
  lockMs: number;
  stalledIntervalMs: number;
  processor: Omit<ProcessorDeps, 'maxAttempts'>;
  queue: Queue<RotationJobData>;
  log: Logger;
  /** How often to look for rotations whose job went missing (0 disables). */
  recoveryIntervalMs?: number;
  /** Finished rotation records older than this are pruned, hourly (0 keeps them forever). */
  retentionMs?: number;
}

export interface RotationWorker {
  worker: Worker<RotationJobData>;
  /** Stop taking jobs and let the running ones reach a step boundary. */
  close(): Promise<void>;
  recover(): Promise<number>;
}

export function startRotationWorker(opts: RotationWorkerOptions): RotationWorker {
  let stopping = false;
  const processor = new RotationProcessor({ ...opts.processor, maxAttempts: JOB_ATTEMPTS, stopping: () => stopping });
  const worker = new Worker<RotationJobData>(QUEUE_NAME, processor.process, {
    connection: opts.connection,
    prefix: `${opts.prefix}:bull`,
    concurrency: opts.concurrency,
    lockDuration: opts.lockMs,
    stalledInterval: opts.stalledIntervalMs,
    // Steps are idempotent: a job orphaned by a dead worker is always safe to run again.
    maxStalledCount: 1_000_000,
    settings: { backoffStrategy: (attemptsMade: number) => backoffDelay(attemptsMade, 500, 60_000) },
  });
  worker.on('error', (err) => opts.log.error({ err: { message: err.message } }, 'worker error'));

  const recover = (): Promise<number> => recoverOrphanedRotations(opts.processor.repo, opts.queue, opts.log);
  let timer: NodeJS.Timeout | undefined;
  if ((opts.recoveryIntervalMs ?? 30_000) > 0) {
    recover().catch((err: Error) => opts.log.warn({ err: { message: err.message } }, 'recovery sweep failed'));
    timer = setInterval(() => {
      recover().catch((err: Error) => opts.log.warn({ err: { message: err.message } }, 'recovery sweep failed'));
    }, opts.recoveryIntervalMs ?? 30_000);
    timer.unref();
  }
  let pruneTimer: NodeJS.Timeout | undefined;
  const retentionMs = opts.retentionMs ?? 0;
  if (retentionMs > 0) {
    const prune = (): void => {
      opts.processor.repo.prune(Date.now() - retentionMs).then(
        (n) => n > 0 && opts.log.info({ pruned: n }, 'pruned finished rotation records past retention'),
        (err: Error) => opts.log.warn({ err: { message: err.message } }, 'retention prune failed'),
      );
    };
    prune();
    pruneTimer = setInterval(prune, 3_600_000);
    pruneTimer.unref();
  }
  return {
    worker,
    recover,
    close: async () => {
      // BullMQ's close() stops fetching and waits for the running jobs; each parks at its next step boundary.
      stopping = true;
      opts.log.info('rotation worker closing: steps in flight finish, then their rotations park for another worker');
      if (timer) clearInterval(timer);
      if (pruneTimer) clearInterval(pruneTimer);
      await worker.close();
    },
  };
}

/**
 * A rotation whose job is gone (the API died between writing the record and enqueuing it) or
 * failed (e.g. stalled past BullMQ's limit) would wait forever: re-enqueue it. Enqueuing is
 * idempotent (job id = rotation id).
 */
export async function recoverOrphanedRotations(repo: RotationRepository, queue: Queue<RotationJobData>, log: Logger): Promise<number> {
  let recovered = 0;
  for (const status of ['pending', 'running', 'waiting'] as const) {
    for (const id of await repo.idsWithStatus(status)) {
      const job = await queue.getJob(id);
      const state = job ? await job.getState() : 'missing';
      if (state === 'missing' || state === 'unknown') {
        await enqueueRotation(queue, id);
      } else if (state === 'failed' || state === 'completed') {
        await job!.remove().catch(() => undefined);
        await enqueueRotation(queue, id);
      } else continue;
      recovered++;
      log.warn({ rotationId: id, state }, 're-enqueued a rotation whose job was missing');
    }
  }
  return recovered;
}
