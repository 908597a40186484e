import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, waitFor, within, type Stack } from '../helpers/stack.ts';
import { startEngine, expectSettled } from '../helpers/engine.ts';
import { spawnRotator, type RotatorProcess } from '../helpers/processes.ts';
import { createPlannerQueue, PLANNER_SCHEDULER_ID } from '../../workers/planner-worker.ts';
import type { Runtime } from '../../src/runtime.ts';
import type { Queue } from 'bullmq';

const DAY_MS = 86_400_000;
const CREATE_KEY = 'POST /Accounts/{AccountSid}/Keys.json';

/**
 * Issue 13's acceptance: three Rotator worker processes started together leave one planner (one Job
 * Scheduler), and over a run of ticks every due rotation starts exactly once, counted at the Twilio
 * emulator (one key created per due credential) and in the records (one rotation each).
 */
describe('the planner in three worker processes', () => {
  let stack: Stack;
  let control: Runtime;
  let plannerQueue: Queue;
  let workers: RotatorProcess[] = [];
  let due: string[];
  let notDue: string[];

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 8, drainSeconds: 0 });
    await stack.seedAll();
    // The state only, in this process: no worker, no planner.
    control = await startEngine(stack, {}, { api: false, worker: false });
    const sids = stack.emu.subaccounts.map((s) => s.sid);
    due = sids.slice(0, 5);
    notDue = sids.slice(5);
    // As a fleet Rotator has managed for a while: the seeded key is current, last rotated 100 days
    // ago (past its P90D deadline: due) or 10 days ago (not due for months).
    for (const [i, sid] of sids.entries()) {
      const at = Date.now() - (i < 5 ? 100 : 10) * DAY_MS;
      const keySid = stack.emu.listKeys(sid)[0]!.sid;
      await control.credentials.recordFinished({ id: `seed-${i}`, accountSid: sid, status: 'succeeded', dryRun: false, newKeySid: keySid, finishedAt: new Date(at).toISOString(), updatedAt: new Date(at).toISOString() }, at);
    }
    plannerQueue = createPlannerQueue(control.redis, stack.cfg.redisPrefix);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await plannerQueue?.close();
    await control?.close();
    await stack?.close();
  });

  it('leave one Job Scheduler and start every due rotation exactly once', async () => {
    stack.emu.resetStats();
    workers = [0, 1, 2].map(() => spawnRotator('worker', { ...stack.env, PLANNER_TICK_SECONDS: '0.2', WORKER_CONCURRENCY: '4' }, stack.logs));
    await within('three worker processes to start', Promise.all(workers.map((w) => w.ready)), 180_000);

    const schedulers = await plannerQueue.getJobSchedulers();
    expect(schedulers.map((s) => [s.key, s.every])).toEqual([[PLANNER_SCHEDULER_ID, 200]]);

    // Every due credential's rotation succeeds…
    await waitFor(
      'every due credential to be rotated by the planner',
      async () => {
        const creds = await control.credentials.getMany(due.map((sid) => `${sid}/default`));
        return creds.every((c) => c?.lastRotation?.outcome === 'succeeded' && !c.lastRotation.id.startsWith('seed-'));
      },
      120_000,
      100,
      async () => JSON.stringify(await control.planner.view(1).then((v) => ({ lastTick: v.lastTick, due: v.dueNow, inFlight: v.inFlight }))),
    );
    // …and then ten more ticks (from any process) start nothing more.
    const after = (await control.planner.lastTick())!;
    let ticks = 0;
    await waitFor('ten more planner ticks', async () => {
      const last = await control.planner.lastTick();
      if (last && last.at !== after.at) ticks++;
      return ticks >= 10;
    }, 60_000, 150);

    expect(stack.emu.stats().byRoute[CREATE_KEY]).toBe(due.length);
    for (const sid of due) {
      const recs = (await control.repo.list({ accountSid: sid, limit: 10 })).items;
      expect(recs.map((r) => [r.trigger, r.status])).toEqual([['schedule', 'succeeded']]);
      expect(recs[0]!.reason).toMatch(/^scheduled: policy default \(default\), deadline .*, overdue by \d+ min$/);
      expect((await expectSettled(stack, sid)).problems).toEqual([]);
    }
    for (const sid of notDue) expect((await control.repo.list({ accountSid: sid, limit: 10 })).items).toEqual([]);

    // Each rotated credential is planned again about 90 days on; none is due or in flight.
    const view = await control.planner.view(90);
    expect(view).toMatchObject({ scheduled: 8, dueNow: 0, overdue: 0, inFlight: 0, stalled: false, paused: null });
    expect(view.forecast.items.reduce((s, d) => s + d.count, 0)).toBe(8);
    expect(await plannerQueue.getJobSchedulersCount()).toBe(1);
  }, 300_000);
});

describe('a worker process killed between claim and start', () => {
  let stack: Stack;
  let control: Runtime;
  const procs: RotatorProcess[] = [];

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 2, drainSeconds: 0 });
    await stack.seedAll();
    control = await startEngine(stack, {}, { api: false, worker: false });
    for (const [i, s] of stack.emu.subaccounts.entries()) {
      const at = Date.now() - 100 * DAY_MS;
      await control.credentials.recordFinished({ id: `seed-${i}`, accountSid: s.sid, status: 'succeeded', dryRun: false, newKeySid: stack.emu.listKeys(s.sid)[0]!.sid, finishedAt: new Date(at).toISOString(), updatedAt: new Date(at).toISOString() }, at);
    }
  }, 60_000);

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await control?.close();
    await stack?.close();
  });

  it('loses nothing: after the lease the next tick, in another process, starts each credential once', async () => {
    stack.emu.resetStats();
    const env = { ...stack.env, PLANNER_TICK_SECONDS: '0.2', PLANNER_LEASE_SECONDS: '2' };
    // This process dies (SIGKILL) right after its first claim, before starting the rotation.
    const dying = spawnRotator('worker', { ...env, ROTATOR_CRASH_POINTS: 'planner:after-claim' }, stack.logs);
    procs.push(dying);
    const exit = await within('the worker to kill itself after a claim', dying.exited, 180_000);
    expect(exit.signal).toBe('SIGKILL');
    // One credential claimed (its lease may already have run out on a slow machine: counted regardless).
    expect(await control.redis.zcard(`${stack.cfg.redisPrefix}:schedule:leased`)).toBe(1);
    expect(stack.emu.stats().byRoute[CREATE_KEY] ?? 0).toBe(0);

    const survivor = spawnRotator('worker', env, stack.logs);
    procs.push(survivor);
    await within('the second worker to start', survivor.ready, 180_000);
    const ids = stack.emu.subaccounts.map((s) => `${s.sid}/default`);
    await waitFor('both credentials to be rotated', async () => (await control.credentials.getMany(ids)).every((c) => c?.lastRotation?.outcome === 'succeeded' && !c.lastRotation.id.startsWith('seed-')), 120_000, 100);
    expect(stack.emu.stats().byRoute[CREATE_KEY]).toBe(2);
    for (const s of stack.emu.subaccounts) expect((await control.repo.list({ accountSid: s.sid, limit: 10 })).items).toHaveLength(1);
  }, 300_000);
});
