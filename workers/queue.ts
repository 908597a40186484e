import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';

export const QUEUE_NAME = 'rotations';

/** Job data carries the rotation id only: never a secret (BullMQ stores job data in clear text). */
export interface RotationJobData {
  rotationId: string;
}

export const JOB_ATTEMPTS = 30;

export const JOB_OPTIONS: JobsOptions = {
  attempts: JOB_ATTEMPTS,
  backoff: { type: 'custom' },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 24 * 3600 },
};

export function createRotationQueue(connection: ConnectionOptions, prefix: string): Queue<RotationJobData> {
  return new Queue<RotationJobData>(QUEUE_NAME, { connection, prefix: `${prefix}:bull`, defaultJobOptions: JOB_OPTIONS });
}

/** Enqueue a rotation. The job id is the rotation id, so enqueuing twice is a no-op. */
export async function enqueueRotation(queue: Queue<RotationJobData>, rotationId: string): Promise<void> {
  await queue.add('rotate', { rotationId }, { jobId: rotationId });
}
