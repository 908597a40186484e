import { describe, expect, it } from 'vitest';
import { StepLease } from '../../workers/lease.ts';
import { useEmbeddedRedis } from '../helpers/redis.ts';

/** The step lease as a worker's fence (workers/fence.ts): when it lets a write go, and when not. */
describe('StepLease.assertHeld', () => {
  const r = useEmbeddedRedis('step-lease');

  it('passes while the lease is held, and renews it when little time is left', async () => {
    let clock = 1_000_000;
    const lease = new StepLease(r.connection(), (id) => `sl:${id}`, 10_000, () => clock);
    const held = await lease.acquire('a');
    expect(held).toBeDefined();
    await held!.assertHeld();
    // Six seconds later by this worker's clock (its renewal timer starved): 4 s left, under half.
    clock += 6_000;
    await held!.assertHeld();
    // The renewal counted from its own send time: a full lease again.
    clock += 4_000;
    await held!.assertHeld();
    expect(await r.connection().pttl('sl:a')).toBeGreaterThan(5_000);
    await held!.release();
    await expect(held!.assertHeld()).rejects.toThrow(/released/);
  });

  it('refuses once another worker holds it', async () => {
    let clock = 2_000_000;
    const lease = new StepLease(r.connection(), (id) => `sl:${id}`, 10_000, () => clock);
    const held = await lease.acquire('b');
    // The lease ran out in Redis and another worker took it.
    await r.connection().set('sl:b', 'another-worker', 'PX', 10_000);
    clock += 6_000;
    await expect(held!.assertHeld()).rejects.toMatchObject({ name: 'LostJobError' });
    // And it stays refused.
    clock -= 6_000;
    await expect(held!.assertHeld()).rejects.toMatchObject({ name: 'LostJobError' });
    expect(await lease.acquire('b')).toBeUndefined();
    await held!.release();
    expect(await r.connection().get('sl:b')).toBe('another-worker');
  });

  it('refuses when its time ran out before a renewal reached Redis', async () => {
    let clock = 3_000_000;
    const lease = new StepLease(r.connection(), (id) => `sl:${id}`, 10_000, () => clock);
    const held = await lease.acquire('c');
    clock += 10_001;
    await expect(held!.assertHeld()).rejects.toThrow(/ran out/);
    await held!.release();
  });
});
