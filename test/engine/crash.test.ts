import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, within, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished, expectSettled } from '../helpers/engine.ts';
import { spawnRotator } from '../helpers/processes.ts';
import { dumpRedis, findSecrets } from '../helpers/leaks.ts';
import { CRASH_POINTS } from '../../workers/crash-points.ts';
import { ENGINE_STORE_BACKENDS, storeBackendUnavailable } from '../helpers/stores.ts';

/**
 * A worker process is SIGKILLed at every step boundary and between Twilio's key creation and the
 * store write; a fresh worker process must finish the rotation with nothing orphaned or lost.
 */
describe.each(ENGINE_STORE_BACKENDS)('crash safety with the %s store: SIGKILL at every step boundary', (kind) => {
  const unavailable = storeBackendUnavailable(kind);
  let stack: Stack;

  beforeAll(async () => {
    if (unavailable) return;
    // A short job lock, on purpose: a killed worker's job comes back to the fresh one 2 s after the
    // kill. (A starved fresh worker can lose its job to a spurious stall; that is one more
    // redelivery of the same at-least-once kind this test is about, and changes no outcome.)
    stack = await startStack({ subaccounts: CRASH_POINTS.length, drainSeconds: 0.2, store: kind, env: { JOB_LOCK_MS: '2000', STALLED_INTERVAL_MS: '500' } });
    await stack.seedAll();
  });

  afterAll(async () => {
    await stack?.close();
  });

  async function crashAt(point: string, index: number): Promise<void> {
    const sub = stack.emu.subaccounts[index]!.sid;
    // Each crash point gets its own queue (Redis prefix), so the workers of different points
    // never take each other's jobs and the points can run side by side.
    const env = { ...stack.env, REDIS_PREFIX: `crash${index}` };
    const control = await startEngine(stack, env, { api: false, worker: false });
    try {
      const before = stack.emu.listKeys(sub).map((k) => k.sid);
      const doomed = spawnRotator('worker', { ...env, ROTATOR_CRASH_POINTS: point }, stack.logs);
      const rec = await startRotation(control, sub, `crash at ${point}`);
      // Deadlines here are last guards: starting a worker process takes seconds of CPU, and six
      // start at once on a machine that may be busy with other things.
      const death = await within(`the worker to die at ${point} (rotation ${rec.id})`, doomed.exited, 180_000).catch(async (err: unknown) => {
        await doomed.stop();
        throw err;
      });
      expect(death.signal, `worker should die at ${point}`).toBe('SIGKILL');

      const fresh = spawnRotator('worker', env, stack.logs);
      try {
        // The rotation's own deadline starts once the fresh process runs, not at its spawn.
        await within(`the fresh worker after ${point} to start (rotation ${rec.id})`, fresh.ready, 180_000);
        const done = await waitFinished(control, rec.id, 60_000);
        expect(done.status, `${point}: ${JSON.stringify(done.error ?? done.lastError)}`).toBe('succeeded');
        const settled = await expectSettled(stack, sub);
        expect(settled.problems, point).toEqual([]);
        expect(settled.currentKeySid).toBe(done.newKeySid);
        expect(before).toContain(done.oldKeySid);
        expect(stack.emu.listKeys(sub).map((k) => k.sid)).toEqual([done.newKeySid]);
        // The history shows the interrupted step being started again by the second process.
        // The fresh process finished the work; once a step had completed before the kill, both
        // processes appear in the history.
        const by = new Set(done.history.map((h) => h.by?.split(':').at(-1)).filter(Boolean));
        expect(by.has(String(fresh.child.pid))).toBe(true);
        if (!point.startsWith('create-secondary')) expect(by.has(String(doomed.child.pid))).toBe(true);
      } finally {
        await fresh.stop();
      }
    } finally {
      await control.close();
    }
  }

  it.skipIf(!!unavailable)('finishes every rotation after a kill at each of the crash points', async () => {
    const points = [...CRASH_POINTS];
    // Six at a time: each runs two worker processes in sequence.
    for (let i = 0; i < points.length; i += 6) {
      // Every point of the batch finishes (and stops its processes) before a failure is reported.
      const results = await Promise.allSettled(points.slice(i, i + 6).map((p, j) => crashAt(p, i + j)));
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
      if (failures.length === 1) throw failures[0];
      if (failures.length > 1) throw new AggregateError(failures, failures.map((e) => e.message).join('\n'));
    }
    const secrets = [...stack.emu.issuedSecrets(), ...stack.backend.secrets];
    expect(findSecrets(secrets, await dumpRedis(stack.redis.url))).toEqual([]);
    expect(findSecrets(secrets, [stack.logs.text()])).toEqual([]);
  }, 480_000);
});
