import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';
import { RotationRepository } from '../../src/state/rotations.ts';
import { newRotationId, type RotationRecord } from '../../src/domain/rotation.ts';
import { Secret } from '../../src/domain/secret.ts';
import { createLogger } from '../../src/logger.ts';
import { FileSecretStore } from '../../providers/file/store.ts';
import { RotationProcessor } from '../../workers/processor.ts';
import { StepLease } from '../../workers/lease.ts';
import type { RotationJobData } from '../../workers/queue.ts';
import type { TwilioKeyOps } from '../../src/twilio/admin.ts';

/** What ioredis throws when Redis does not come back within maxRetriesPerRequest. */
class MaxRetriesPerRequestError extends Error {
  override get name(): string {
    return 'MaxRetriesPerRequestError';
  }
}

/**
 * Found by the chaos suite: while Redis restarted, a worker's write of a completed step failed with
 * ioredis's MaxRetriesPerRequestError. The processor took that unknown error for a permanent
 * failure (code "internal"), failed the rotation and undid it — for a Redis blip.
 */
describe('the processor when Redis does not answer a write', () => {
  let dir: string;
  let server: EmbeddedRedis;
  let redis: Redis;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-blip-'));
    server = await startEmbeddedRedis({ dir: join(dir, 'redis'), persist: false });
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis.disconnect();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('retries the step later instead of failing and undoing the rotation', async () => {
    const repo = new RotationRepository(redis, 'p');
    let blips = 1;
    const update = repo.update.bind(repo);
    repo.update = (id, change, transition, base) => {
      if (transition?.status === 'completed' && blips-- > 0) return Promise.reject(new MaxRetriesPerRequestError('Reached the max retries per request limit (which is 2).'));
      return update(id, change, transition, base);
    };
    const accountSid = `AC${'3'.repeat(32)}`;
    const keys: Array<{ sid: string; friendlyName: string }> = [];
    const twilio: TwilioKeyOps = {
      listKeys: async () => keys.slice(),
      createKey: async (_sid, friendlyName) => {
        const key = { sid: `SK${randomBytes(16).toString('hex')}`, friendlyName };
        keys.push(key);
        return { sid: key.sid, secret: new Secret(randomBytes(16).toString('hex')) };
      },
      deleteKey: async () => 'deleted',
      verifyKey: async () => undefined,
      listSubaccounts: async () => [],
    };
    const processor = new RotationProcessor({
      repo,
      log: createLogger('silent'),
      maxAttempts: 30,
      lease: new StepLease(redis, (id) => `p:lease:${id}`, 2_000),
      ctx: {
        twilio,
        store: new FileSecretStore({ dir: join(dir, 'secrets'), key: randomBytes(32) }),
        secretPath: (sid) => `twilio/${sid}`,
        keyNamePrefix: 'rotator',
        drainMs: 0,
        gates: [],
        now: Date.now,
        crash: () => undefined,
      },
    });
    const at = new Date().toISOString();
    const rec: RotationRecord = { id: newRotationId(), kind: 'api-key', accountSid, status: 'pending', step: 'create-secondary', dryRun: false, trigger: 'api', attempts: 0, createdAt: at, updatedAt: at, rev: 0, history: [{ step: 'create-secondary', status: 'created', at }] };
    await repo.create(rec);
    const job = { data: { rotationId: rec.id }, attemptsMade: 0 } as unknown as Job<RotationJobData>;

    // The first delivery meets the blip: the job fails (BullMQ retries it), the rotation does not.
    await expect(processor.process(job)).rejects.toThrow(/Redis did not answer/);
    const after = await repo.get(rec.id);
    expect(after?.status).toBe('running');
    expect(after?.undo).toBeUndefined();
    expect(after?.lastError?.code).toBe('redis_unavailable');

    // The retry adopts the staged key (no second key at Twilio) and finishes the bootstrap.
    await processor.process({ ...job, attemptsMade: 1 } as unknown as Job<RotationJobData>);
    const done = await repo.get(rec.id);
    expect(done?.status).toBe('succeeded');
    expect(keys).toHaveLength(1);
    expect(done?.newKeySid).toBe(keys[0]!.sid);
  });
});
