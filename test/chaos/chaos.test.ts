import { describe, expect, it } from 'vitest';
import { STORE_KINDS } from '../helpers/stores.ts';
import { runChaos } from './chaos.ts';

/**
 * The chaos run, short, in `npm test`: for each store, half a minute of rotations (bootstraps,
 * cancels and rollbacks included) through the API while workers, the API and Redis itself are
 * SIGKILLed and Twilio, the store and the admin credential fail in stretches — then every
 * invariant. `npm run chaos` is the long form (docs/chaos.md).
 */
describe.each(STORE_KINDS)('chaos with the %s store', (store) => {
  it('keeps every invariant through crashes, a Redis restart and dependency faults', async () => {
    const report = await runChaos({ store, seed: 1, rotations: 20, minutes: 0.5, workers: 3 });
    // A scheduled fault that never fired is a violation naming it (the run waits for every one).
    expect(report.violations).toEqual([]);
    expect(report.faults).toBe(report.faultsScheduled);
    expect(report.rotations.total).toBeGreaterThanOrEqual(20);
    expect(report.rotations.succeeded).toBeGreaterThan(0);
    expect(report.kills).toBeGreaterThan(0);
    expect(report.redisRestarts).toBe(1);
    expect(report.faultsScheduled).toBeGreaterThanOrEqual(5);
    expect(report.consumer401s).toBe(0);
    expect(report.orphanKeys).toBe(0);
  }, 240_000);
});
