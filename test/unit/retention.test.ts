import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';
import { RotationRepository } from '../../src/state/rotations.ts';
import { newRotationId, type RotationRecord } from '../../src/domain/rotation.ts';

const DAY = 86_400_000;

function record(accountSid: string, createdMs: number): RotationRecord {
  const at = new Date(createdMs).toISOString();
  return { id: newRotationId(createdMs), kind: 'api-key', accountSid, credential: 'default', status: 'pending', step: 'create-secondary', dryRun: false, trigger: 'api', attempts: 0, createdAt: at, updatedAt: at, rev: 0, history: [] };
}

describe('retention of finished rotation records', () => {
  let dir: string;
  let server: EmbeddedRedis;
  let redis: Redis;
  let repo: RotationRepository;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-retention-'));
    server = await startEmbeddedRedis({ dir, persist: false });
    redis = new Redis(server.url);
    repo = new RotationRepository(redis, 'r');
  });
  afterAll(async () => {
    redis.disconnect();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('prunes finished records past the cutoff with their index entries, and keeps recent and in-flight ones', async () => {
    const now = Date.now();
    const account = (i: number) => `AC${String(i).padStart(32, '0')}`;
    const old = Array.from({ length: 7 }, (_, i) => record(account(i), now - 500 * DAY + i));
    const recent = record(account(100), now - DAY);
    const oldInFlight = record(account(200), now - 600 * DAY);
    for (const r of [...old, recent, oldInFlight]) expect((await repo.create(r)).created).toBe(true);
    for (const r of [...old, recent]) await repo.update(r.id, (x) => ({ ...x, status: 'succeeded', step: 'done' }));

    expect(await repo.prune(now - 400 * DAY, 3)).toBe(7);
    for (const r of old) expect(await repo.get(r.id)).toBeUndefined();
    expect(await repo.get(recent.id)).toBeDefined();
    expect(await repo.get(oldInFlight.id)).toBeDefined();
    expect(await redis.zcard('r:rots')).toBe(2);
    expect(await redis.zcard('r:status:succeeded')).toBe(1);
    expect(await redis.exists(`r:acct:${account(0)}:rots`)).toBe(0);
    const page = await repo.list({ limit: 10 });
    expect(page.items.map((r) => r.id).sort()).toEqual([recent.id, oldInFlight.id].sort());
  });
});
