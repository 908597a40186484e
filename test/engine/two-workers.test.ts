import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished, expectSettled } from '../helpers/engine.ts';
import { spawnRotator, type RotatorProcess } from '../helpers/processes.ts';
import type { Runtime } from '../../src/runtime.ts';
import type { RotationRecord } from '../../src/domain/rotation.ts';

/**
 * Steps of one rotation must never overlap: each completed step ran over [startedAt, at], and
 * those intervals follow one another in order.
 */
function overlappingSteps(rec: RotationRecord): string[] {
  const problems: string[] = [];
  let lastEnd = 0;
  for (const h of rec.history.filter((e) => e.status === 'completed')) {
    const start = Date.parse(h.startedAt!);
    if (!(start >= lastEnd)) problems.push(`${rec.id}: ${h.step} started at ${h.startedAt} before the previous step ended`);
    lastEnd = Date.parse(h.at);
  }
  if (rec.history.filter((e) => e.status === 'completed').length !== 4) problems.push(`${rec.id}: expected 4 completed steps`);
  return problems;
}

describe('two worker processes on one queue', () => {
  let stack: Stack;
  let control: Runtime;
  let workers: RotatorProcess[];

  beforeAll(async () => {
    // Twilio allows 4 concurrent requests; the two processes share one cap of 4 through Redis.
    stack = await startStack({ subaccounts: 10, drainSeconds: 0, emulator: { concurrency: 4, latencyMs: 5 }, env: { TWILIO_MAX_CONCURRENCY: '4' } });
    await stack.seedAll();
    control = await startEngine(stack, {}, { api: false, worker: false });
    workers = [0, 1].map(() => spawnRotator('worker', { ...stack.env, WORKER_CONCURRENCY: '8' }, stack.logs));
  });

  afterAll(async () => {
    await Promise.all((workers ?? []).map((w) => w.stop()));
    await control?.close();
    await stack?.close();
  });

  it('runs 50 rotations to success with no two steps of a rotation at once', async () => {
    const accounts = stack.emu.subaccounts.map((s) => s.sid);
    const results = await Promise.all(
      accounts.map(async (sid) => {
        const done: RotationRecord[] = [];
        for (let i = 0; i < 5; i++) done.push(await waitFinished(control, (await startRotation(control, sid)).id, 90_000));
        return done;
      }),
    );
    const all = results.flat();
    expect(all).toHaveLength(50);
    expect(all.filter((r) => r.status !== 'succeeded').map((r) => r.error)).toEqual([]);
    expect(all.flatMap(overlappingSteps)).toEqual([]);
    // Both processes took part.
    const workersSeen = new Set(all.flatMap((r) => r.history.map((h) => h.by?.split(':')[1]).filter(Boolean)));
    expect(workersSeen.size).toBe(2);
    for (const sid of accounts) expect((await expectSettled(stack, sid)).problems).toEqual([]);
    // The shared cap kept both processes together under Twilio's limit: not one 20429.
    expect(stack.emu.stats().rejected429).toBe(0);
    expect(stack.emu.stats().inFlightPeak).toBe(4);
  }, 180_000);
});
