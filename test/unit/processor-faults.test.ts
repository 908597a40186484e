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

const PARENT = `AC${'0'.repeat(32)}`;
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

/** The part of a BullMQ job the processor uses: its data, attempts, and the moves it asks for. */
function fakeJob(rotationId: string, attemptsMade = 0, moveToDelayed?: () => Promise<void>): Job<RotationJobData> {
  return { data: { rotationId }, attemptsMade, moveToDelayed: moveToDelayed ?? (async () => undefined), promote: async () => undefined } as unknown as Job<RotationJobData>;
}

/** A processor over the emulated Twilio and a file store, with the lease and drain the test chooses. */
function processorOf(repo: RotationRepository, twilio: TwilioKeyOps, store: FileSecretStore, o: { lease: StepLease; drainMs: number }): RotationProcessor {
  return new RotationProcessor({
    repo,
    log: createLogger('silent'),
    maxAttempts: 30,
    lease: o.lease,
    ctx: {
      twilio,
      store,
      secretPath: (sid) => `twilio/${sid}`,
      keyNamePrefix: 'rotator',
      parentAccountSid: PARENT,
      knownRotations: (sid, ids) => repo.knownRotations(sid, ids),
      drainMs: o.drainMs,
      gates: [],
      now: Date.now,
      crash: () => undefined,
    },
  });
}

function harness(repo: RotationRepository, moveToDelayed?: () => Promise<void>, beforeListKeys?: () => Promise<unknown>) {
  const keys: Array<{ sid: string; friendlyName: string }> = [];
  const twilio: TwilioKeyOps = {
    listKeys: async () => {
      await beforeListKeys?.();
      return keys.slice();
    },
    createKey: async (_sid, friendlyName) => {
      const key = { sid: `SK${randomBytes(16).toString('hex')}`, friendlyName };
      keys.push(key);
      return { sid: key.sid, secret: new Secret(randomBytes(16).toString('hex')) };
    },
    deleteKey: async () => 'deleted',
    verifyKey: async () => undefined,
    listSubaccounts: async () => [],
    fetchAccount: async (sid) => ({ accountSid: sid, ownerAccountSid: PARENT, status: 'active', friendlyName: 'sub' }),
  };
  const store = new FileSecretStore({ dir: join(dir, 'secrets'), key: randomBytes(32) });
  const processor = processorOf(repo, twilio, store, { lease: new StepLease(redis, (id) => `p:lease:${id}`, 2_000), drainMs: 60_000 });
  const job = (rotationId: string, attemptsMade = 0) => fakeJob(rotationId, attemptsMade, moveToDelayed);
  return { processor, keys, job, store };
}

function pending(accountSid: string): RotationRecord {
  const at = new Date().toISOString();
  return { id: newRotationId(), kind: 'api-key', accountSid, credential: 'default', status: 'pending', step: 'create-secondary', dryRun: false, trigger: 'api', attempts: 0, createdAt: at, updatedAt: at, rev: 0, history: [{ step: 'create-secondary', status: 'created', at }] };
}

/**
 * Found by the chaos suite: while Redis restarted, a worker's write of a completed step failed with
 * ioredis's MaxRetriesPerRequestError. The processor took that unknown error for a permanent
 * failure (code "internal"), failed the rotation and undid it — for a Redis blip.
 */
describe('the processor when Redis does not answer a write', () => {
  it('retries the step later instead of failing and undoing the rotation', async () => {
    const repo = new RotationRepository(redis, 'p');
    let blips = 1;
    const update = repo.update.bind(repo);
    repo.update = (id, change, transition, base) => {
      if (transition?.status === 'completed' && blips-- > 0) return Promise.reject(new MaxRetriesPerRequestError('Reached the max retries per request limit (which is 2).'));
      return update(id, change, transition, base);
    };
    const { processor, keys, job } = harness(repo);
    // A bootstrap (empty store): create-secondary, then operationalize, then done.
    const rec = pending(`AC${'3'.repeat(32)}`);
    await repo.create(rec);

    // The first delivery meets the blip: the job fails (BullMQ retries it), the rotation does not.
    await expect(processor.process(job(rec.id))).rejects.toThrow(/Redis did not answer/);
    const after = await repo.get(rec.id);
    expect(after?.status).toBe('running');
    expect(after?.undo).toBeUndefined();
    expect(after?.lastError?.code).toBe('redis_unavailable');

    // The retry adopts the staged key (no second key at Twilio) and finishes the bootstrap.
    await processor.process(job(rec.id, 1));
    const done = await repo.get(rec.id);
    expect(done?.status).toBe('succeeded');
    expect(keys).toHaveLength(1);
    expect(done?.newKeySid).toBe(keys[0]!.sid);
  });
});

/**
 * Found by the long chaos run: a worker whose job lock had expired (Redis restarting, the process
 * starved) reached the drain and asked BullMQ to delay the job: "Missing lock for job …". The
 * processor took that for a permanent failure of the rotation and undid it — while another worker
 * had already taken the job over.
 */
describe('the processor when its job was taken over', () => {
  it('leaves the rotation as recorded (waiting out the drain) for the worker that has the job now', async () => {
    const repo = new RotationRepository(redis, 'q');
    const { processor, job, store } = harness(repo, async () => {
      throw new Error('Missing lock for job x. moveToDelayed');
    });
    const seeded = pending(`AC${'4'.repeat(32)}`);
    // Not a bootstrap: the subaccount has a current key, so the rotation drains before promote.
    const old = { accountSid: seeded.accountSid, apiKeySid: `SK${'5'.repeat(32)}`, apiKeySecret: new Secret('old-secret-value') };
    await store.putPending(`twilio/${seeded.accountSid}`, 'seed', old);
    await store.promotePending(`twilio/${seeded.accountSid}`, 'seed', old.apiKeySid);
    await repo.create(seeded);
    const lost = job(seeded.id);
    await expect(processor.process(lost)).rejects.toThrow(/Missing lock/);
    const rec = await repo.get(seeded.id);
    expect(rec?.status).toBe('waiting');
    expect(rec?.step).toBe('promote');
    expect(rec?.undo).toBeUndefined();
    expect(rec?.error).toBeUndefined();
  });
});

/**
 * A dry run changes nothing, so a cancel has nothing to undo — but it must still end as the
 * operator asked: a cancelled dry run used to be recorded as `succeeded`.
 */
describe('a cancelled dry run', () => {
  const cancel = (repo: RotationRepository, id: string) =>
    repo.update(id, (r) => ({ ...r, undo: { reason: 'cancel' as const } }), { step: 'create-secondary', status: 'undo', at: new Date().toISOString() });

  it('ends cancelled when the cancel came before the job ran, without asking Twilio anything', async () => {
    const repo = new RotationRepository(redis, 'dc1');
    const { processor, job, keys } = harness(repo);
    const rec = { ...pending(`AC${'6'.repeat(32)}`), dryRun: true };
    await repo.create(rec);
    await cancel(repo, rec.id);
    await processor.process(job(rec.id));
    const done = await repo.get(rec.id);
    expect(done?.status).toBe('cancelled');
    expect(done?.undo?.completedAt).toBeDefined();
    expect(keys).toHaveLength(0);
  });

  it('ends cancelled when the cancel arrived while its checks ran', async () => {
    const repo = new RotationRepository(redis, 'dc2');
    const rec = { ...pending(`AC${'7'.repeat(32)}`), dryRun: true };
    // The cancel lands between the processor's read of the record and its final write.
    const { processor, job } = harness(repo, undefined, () => cancel(repo, rec.id));
    await repo.create(rec);
    await processor.process(job(rec.id));
    const done = await repo.get(rec.id);
    expect(done?.status).toBe('cancelled');
    expect(done?.history.at(-1)?.detail).toMatch(/^dry run: would bootstrap/);
  });
});

/**
 * Found by the chaos run (AWS and Vault stores): after a Redis restart a worker's step lease had
 * run out while its step went on, and a second worker took the rotation over. The first worker's
 * orphan clean-up, working from a store entry read before the takeover, deleted the key the second
 * had just created and made current: consumers were handed a deleted key.
 */
describe('a worker that lost its step lease mid-step', () => {
  const TTL = 300;

  function pair(repo: RotationRepository, prefix: string) {
    const keys: Array<{ sid: string; friendlyName: string }> = [];
    const deleted: string[] = [];
    const hooks: { listKeys?: () => Promise<void>; verifyKey?: () => Promise<void> } = {};
    const twilio: TwilioKeyOps = {
      listKeys: async () => {
        const hook = hooks.listKeys;
        hooks.listKeys = undefined;
        await hook?.();
        return keys.slice();
      },
      createKey: async (_sid, friendlyName) => {
        const key = { sid: `SK${randomBytes(16).toString('hex')}`, friendlyName };
        keys.push(key);
        return { sid: key.sid, secret: new Secret(randomBytes(16).toString('hex')) };
      },
      deleteKey: async (_sid, keySid) => {
        const i = keys.findIndex((k) => k.sid === keySid);
        if (i < 0) return 'absent';
        keys.splice(i, 1);
        deleted.push(keySid);
        return 'deleted';
      },
      verifyKey: async () => {
        const hook = hooks.verifyKey;
        hooks.verifyKey = undefined;
        await hook?.();
      },
      listSubaccounts: async () => [],
      fetchAccount: async (sid) => ({ accountSid: sid, ownerAccountSid: PARENT, status: 'active', friendlyName: 'sub' }),
    };
    const store = new FileSecretStore({ dir: join(dir, `secrets-${prefix}`), key: randomBytes(32) });
    // Worker A renews its lease over a connection of its own, which the test cuts.
    const leaseConnA = new Redis(server.url);
    const processor = (leaseRedis: Redis) => processorOf(repo, twilio, store, { lease: new StepLease(leaseRedis, (id) => `${prefix}:lease:${id}`, TTL), drainMs: 0 });
    const job = (rotationId: string, attemptsMade = 0) => fakeJob(rotationId, attemptsMade);
    return { keys, deleted, hooks, twilio, store, leaseConnA, a: processor(leaseConnA), b: processor(redis), job };
  }

  /** A pause that a hook waits in, and the test ends. */
  function pause() {
    let entered!: () => void;
    let release!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const released = new Promise<void>((r) => (release = r));
    return { hook: async () => { entered(); await released; }, inside, release };
  }

  /** Worker B takes the rotation over as soon as A's lease has run out in Redis (rotation_busy until then). */
  async function takeOver(b: RotationProcessor, job: Job<RotationJobData>): Promise<void> {
    for (;;) {
      try {
        await b.process(job);
        return;
      } catch (err) {
        if (!/another worker is running a step/.test((err as Error).message)) throw err;
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }

  async function seeded(repo: RotationRepository, store: FileSecretStore, keys: Array<{ sid: string; friendlyName: string }>, digit: string) {
    const rec = pending(`AC${digit.repeat(32)}`);
    const old = { accountSid: rec.accountSid, apiKeySid: `SK${digit.repeat(32)}`, apiKeySecret: new Secret('old-secret-value') };
    keys.push({ sid: old.apiKeySid, friendlyName: 'rotator:seed' });
    await store.putPending(`twilio/${rec.accountSid}`, 'seed', old);
    await store.promotePending(`twilio/${rec.accountSid}`, 'seed', old.apiKeySid);
    await repo.create(rec);
    return { rec, old };
  }

  it('deletes nothing at Twilio once its lease ran out: the key the new holder made current stays', async () => {
    const repo = new RotationRepository(redis, 'fa');
    const t = pair(repo, 'fa');
    const { rec, old } = await seeded(repo, t.store, t.keys, '8');
    // A stops inside its orphan clean-up, between reading the store entry and listing the keys.
    const p = pause();
    t.hooks.listKeys = p.hook;
    const runA = t.a.process(t.job(rec.id)).then(() => undefined, (err: unknown) => err as Error);
    await p.inside;
    t.leaseConnA.disconnect();
    await takeOver(t.b, t.job(rec.id, 1));
    const done = await repo.get(rec.id);
    expect(done?.status).toBe('succeeded');
    const current = (await t.store.read(`twilio/${rec.accountSid}`)).current?.credential.apiKeySid;
    expect(current).toBe(done?.newKeySid);

    // A wakes up: the key B created carries this rotation's name and A's store entry did not hold it.
    p.release();
    const errA = await runA;
    expect(errA?.name).toBe('LostJobError');
    expect(t.deleted).toEqual([old.apiKeySid]);
    expect(t.keys.map((k) => k.sid)).toContain(current);
    const after = await repo.get(rec.id);
    expect(after?.rev).toBe(done?.rev);
  });

  it('does not write its step outcome onto a rotation another worker moved on', async () => {
    const repo = new RotationRepository(redis, 'fb');
    const t = pair(repo, 'fb');
    const { rec } = await seeded(repo, t.store, t.keys, '9');
    // A stops while verifying its new key; its lease is then taken from it (as if it had expired
    // unseen: A's own clock still says it holds it) and B finishes the rotation.
    const p = pause();
    t.hooks.verifyKey = p.hook;
    const runA = t.a.process(t.job(rec.id)).then(() => undefined, (err: unknown) => err as Error);
    await p.inside;
    await redis.del(`fb:lease:${rec.id}`);
    await takeOver(t.b, t.job(rec.id, 1));
    const done = await repo.get(rec.id);
    expect(done?.status).toBe('succeeded');
    expect(done?.step).toBe('done');

    p.release();
    const errA = await runA;
    expect(errA?.name).toBe('LostJobError');
    expect(errA?.message).toMatch(/moved on without this delivery/);
    const after = await repo.get(rec.id);
    expect(after?.rev).toBe(done?.rev);
    expect(after?.step).toBe('done');
    t.leaseConnA.disconnect();
  });
});
