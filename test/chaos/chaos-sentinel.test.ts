import { describe, expect, it } from 'vitest';
import { runChaos } from './chaos.ts';

/**
 * The chaos run on Redis Sentinel (issue 18): a primary, a replica and three Sentinels; half a
 * minute of rotations through the API with workers and the API SIGKILLed and dependencies failing,
 * and once the primary itself SIGKILLed — the Sentinels promote the replica, every Rotator process
 * follows, and every invariant of chaos.test.ts holds. One store (file): the topology is what this
 * file tests; chaos.test.ts covers the stores.
 */
describe('chaos on Redis Sentinel', () => {
  it('keeps every invariant through a failover of the primary', async () => {
    const report = await runChaos({ store: 'file', seed: 1, rotations: 20, minutes: 0.5, workers: 3, redis: 'sentinel' });
    console.log(`${report.summary} failover_ms=${JSON.stringify(report.details.failoverMs)} duration_s=${report.details.durationS}`);
    expect(report.violations).toEqual([]);
    expect(report.faults).toBe(report.faultsScheduled);
    // The failover happened, once, and was followed (the run waited for +switch-master).
    expect(report.redisRestarts).toBe(1);
    expect(report.details.failoverMs).toHaveLength(1);
    expect(report.rotations.total).toBeGreaterThanOrEqual(20);
    expect(report.rotations.succeeded).toBeGreaterThan(0);
    expect(report.kills).toBeGreaterThan(0);
    expect(report.consumer401s).toBe(0);
    expect(report.orphanKeys).toBe(0);
  }, 300_000);
});
