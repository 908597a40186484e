import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';
import { AccountRepository } from '../../src/state/accounts.ts';
import { CredentialRepository } from '../../src/state/credentials.ts';
import { PolicyRepository } from '../../src/state/policies.ts';
import { RotationRepository } from '../../src/state/rotations.ts';
import { ScheduleStore } from '../../src/state/schedule.ts';
import { FleetDirectory } from '../../src/service/fleet.ts';
import { RotationService, type StartRequest } from '../../src/service/rotations.ts';
import { Planner, type PlannerOptions } from '../../src/service/planner.ts';
import { nextAllowedAt } from '../../src/domain/planner.ts';
import { compilePolicy } from '../../src/domain/policy.ts';
import { DAY_MS } from '../../src/domain/duration.ts';

const sid = (n: number): string => `AC${n.toString(16).padStart(32, '0')}`;
const key = (n: number): string => `SK${n.toString(16).padStart(32, '0')}`;
const iso = (ms: number): string => new Date(ms).toISOString();
const idOf = (n: number): string => `${sid(n)}/default`;
/** A Wednesday, noon UTC. */
const WEDNESDAY = Date.parse('2026-06-10T12:00:00Z');
const SATURDAY = Date.parse('2026-06-13T12:00:00Z');

/**
 * The planner's tick against a real Redis, in this process, with a clock the test moves: every
 * start is counted at the service (the call, not the record: the service would hide a duplicate
 * call behind its per-credential idempotence, and the claim is what must prevent it).
 */
describe('planner tick', () => {
  let dir: string;
  let server: EmbeddedRedis;
  const conns: Redis[] = [];
  let run = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-planner-'));
    server = await startEmbeddedRedis({ dir, persist: false });
  });
  afterAll(async () => {
    for (const c of conns) c.disconnect();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** A fleet on a fresh prefix; `planner()` is one more "process" (its own connection) on it. */
  function world(now0: number) {
    const prefix = `plan${++run}`;
    const clock = { now: now0 };
    const connect = (): Redis => {
      const c = new Redis(server.url);
      conns.push(c);
      return c;
    };
    const redis = connect();
    const credentials = new CredentialRepository(redis, prefix);
    const accounts = new AccountRepository(redis, prefix);
    const policies = new PolicyRepository(redis, prefix);
    const repo = new RotationRepository(redis, prefix);
    const service = new RotationService(repo, { enqueue: async () => undefined, wake: async () => undefined, requeue: async () => undefined });
    const calls: string[] = [];
    const planner = (opts: Partial<PlannerOptions> & { crash?: (name: string) => void } = {}): Planner => {
      const conn = connect();
      const creds = new CredentialRepository(conn, prefix);
      const pols = new PolicyRepository(conn, prefix);
      const fleet = new FleetDirectory({ credentials: creds, accounts: new AccountRepository(conn, prefix), policies: pols });
      const counting = {
        start: async (req: StartRequest) => {
          calls.push(`${req.accountSid}/${req.credential}`);
          return service.start(req);
        },
      };
      return new Planner(
        { store: new ScheduleStore(conn, prefix), fleet, policies: pols, service: counting, log: pino({ level: 'silent' }), now: () => clock.now, crash: opts.crash },
        { tickMs: 1_000, maxStartsPerTick: opts.maxStartsPerTick ?? 50, leaseMs: opts.leaseMs ?? 600_000, retryAfterFailureMs: opts.retryAfterFailureMs ?? 3_600_000 },
      );
    };
    /** Credential n of subaccount n, last rotated `daysAgo` days before now (default policy P90D: > ~83 days ago is due). */
    const rotated = async (n: number, daysAgo: number, outcome = 'succeeded'): Promise<void> => {
      const at = clock.now - daysAgo * DAY_MS;
      await credentials.recordFinished({ id: `seed-${n}-${at}`, accountSid: sid(n), status: outcome, dryRun: false, ...(outcome === 'succeeded' ? { newKeySid: key(n) } : {}), finishedAt: iso(at), updatedAt: iso(at) }, at);
    };
    const store = new ScheduleStore(redis, prefix);
    return { prefix, clock, redis, credentials, accounts, policies, repo, store, calls, planner, rotated };
  }

  it('two overlapping ticks, and a retried one, start each due rotation exactly once', async () => {
    const w = world(WEDNESDAY);
    for (let n = 1; n <= 30; n++) await w.rotated(n, 100); // deadline 10 days ago: due
    for (let n = 31; n <= 40; n++) await w.rotated(n, 10); // not due for months
    const [a, b] = [w.planner(), w.planner()];
    await a.rebuildAll();
    expect((await w.store.counts(w.clock.now)).due).toBe(30);

    const [ra, rb] = await Promise.all([a.tick(), b.tick()]);
    expect(ra.started + rb.started).toBe(30);
    expect(w.calls.length).toBe(30);
    expect(new Set(w.calls).size).toBe(30);
    // The same tick again (a stalled job re-run), and again in the other process: nothing more.
    await Promise.all([a.tick(), b.tick(), a.tick()]);
    expect(w.calls.length).toBe(30);
    // Each scheduled start says why, and is one rotation record each.
    const recs = (await Promise.all(Array.from({ length: 30 }, (_, i) => w.repo.list({ accountSid: sid(i + 1), limit: 5 })))).map((p) => p.items);
    expect(recs.every((items) => items.length === 1 && items[0]!.trigger === 'schedule' && /^scheduled: policy default .*deadline 2026-05-31/.test(items[0]!.reason ?? ''))).toBe(true);
    expect((await w.store.counts(w.clock.now)).inFlight).toBe(30);
  });

  it('a process killed between claim and start: the lease expires and the next tick starts it once', async () => {
    const w = world(WEDNESDAY);
    for (let n = 1; n <= 3; n++) await w.rotated(n, 100 + n); // 3 is the most overdue: claimed first
    let armed = true;
    const dying = w.planner({
      leaseMs: 60_000,
      crash: (name) => {
        if (name === 'planner:after-claim' && armed) {
          armed = false;
          throw new Error('SIGKILL');
        }
      },
    });
    const survivor = w.planner({ leaseMs: 60_000 });
    await survivor.rebuildAll();
    await expect(dying.tick()).rejects.toThrow('SIGKILL');
    expect(w.calls).toEqual([]);
    expect(await w.store.score(idOf(3))).toBe(w.clock.now + 60_000);

    // Before the lease ends, the others start and the claimed one waits.
    await survivor.tick();
    expect(w.calls.sort()).toEqual([idOf(1), idOf(2)]);
    w.clock.now += 59_999;
    await survivor.tick();
    expect(w.calls.length).toBe(2);
    w.clock.now += 2;
    const r = await survivor.tick();
    expect(r.started).toBe(1);
    expect(w.calls.filter((c) => c === idOf(3))).toHaveLength(1);

    // A lease that runs out while the rotation is still in flight (a long drain) starts nothing new.
    w.clock.now += 60_001;
    const again = await survivor.tick();
    expect(again).toMatchObject({ started: 0, inFlight: 3 });
    expect((await w.repo.list({ accountSid: sid(3), limit: 5 })).items).toHaveLength(1);
  });

  it('most overdue first, at most the budget per tick, each once', async () => {
    const w = world(WEDNESDAY);
    // Deadlines 1..7 days ago in a shuffled order of ids.
    const overdueDays = [3, 7, 1, 5, 2, 6, 4];
    for (const [i, d] of overdueDays.entries()) await w.rotated(i + 1, 90 + d);
    const p = w.planner({ maxStartsPerTick: 2 });
    await p.rebuildAll();
    const first = await p.tick();
    expect(first).toMatchObject({ started: 2, deferred: 5 });
    const byOverdue = [...overdueDays.entries()].sort((x, y) => y[1] - x[1]).map(([i]) => idOf(i + 1));
    expect(w.calls).toEqual(byOverdue.slice(0, 2));
    for (let i = 0; i < 5; i++) await p.tick();
    expect(w.calls).toEqual(byOverdue);
  });

  it('the fleet pause stops starts; a paused account or credential is skipped and leaves the schedule; resume starts the rest', async () => {
    const w = world(WEDNESDAY);
    for (let n = 1; n <= 4; n++) await w.rotated(n, 100);
    await w.accounts.upsertMany([1, 2, 3, 4].map((n) => ({ accountSid: sid(n), friendlyName: `sub ${n}`, status: 'active' })));
    const p = w.planner();
    await p.rebuildAll();
    await p.pause('sec', 'change freeze');
    const paused = await p.tick();
    expect(paused).toMatchObject({ paused: true, started: 0, read: 0 });
    expect(w.calls).toEqual([]);

    await w.accounts.patch(sid(1), { paused: true });
    await w.credentials.patch({ accountSid: sid(2), name: 'default' }, { paused: true });
    expect(await p.resume()).toBe(true);
    const r = await p.tick();
    expect(r).toMatchObject({ paused: false, started: 2, skippedPaused: 2 });
    expect(w.calls.sort()).toEqual([idOf(3), idOf(4)]);
    expect(await w.store.score(idOf(1))).toBeNull();
    expect(await w.store.score(idOf(2))).toBeNull();

    // Unpaused (the API's onFleetChange replans it): scheduled again, started once.
    await w.accounts.patch(sid(1), { paused: false });
    await p.replan([idOf(1)]);
    await p.tick();
    expect(w.calls.filter((c) => c === idOf(1))).toHaveLength(1);
  });

  it('outside its window (or in a blackout) a due credential is not started but re-slotted to the next allowed instant', async () => {
    const w = world(SATURDAY);
    const weekdays = { name: 'weekdays', interval: 'P90D', windows: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: { from: '09:00', to: '17:00' }, timeZone: 'America/New_York' }] };
    await w.policies.put(weekdays);
    await w.rotated(1, 100);
    await w.credentials.patch({ accountSid: sid(1), name: 'default' }, { policy: 'weekdays' });
    // A bootstrap (no key, never rotated) is due at once, but also waits for its window.
    await w.credentials.ensure({ accountSid: sid(2), name: 'default' }, { now: SATURDAY - 1000 });
    await w.credentials.patch({ accountSid: sid(2), name: 'default' }, { policy: 'weekdays' });
    const p = w.planner();
    await p.rebuildAll();
    const r = await p.tick();
    expect(r).toMatchObject({ started: 0, skippedWindow: 2 });
    const monday = nextAllowedAt(compilePolicy(weekdays as never), SATURDAY);
    expect(iso(monday)).toBe('2026-06-15T13:00:00.000Z');
    expect(await w.store.score(idOf(1))).toBe(monday);
    expect(await w.store.score(idOf(2))).toBe(monday);

    w.clock.now = monday + 1;
    const opened = await p.tick();
    expect(opened.started).toBe(2);
    expect(w.calls.sort()).toEqual([idOf(1), idOf(2)]);
  });

  it('a finished rotation is replanned from its new anchor; a failed one is held back, not started every tick', async () => {
    const w = world(WEDNESDAY);
    await w.rotated(1, 100);
    await w.rotated(2, 100);
    const p = w.planner({ retryAfterFailureMs: 3_600_000 });
    await p.rebuildAll();
    await p.tick();
    expect(w.calls.length).toBe(2);

    // 1 succeeds: its next slot is about 90 days on; 2 fails: retried an hour after the failure.
    const finish = async (n: number, status: 'succeeded' | 'failed'): Promise<void> => {
      const rec = (await w.repo.list({ accountSid: sid(n), limit: 1 })).items[0]!;
      const done = await w.repo.update(rec.id, (r) => ({ ...r, status, ...(status === 'succeeded' ? { newKeySid: key(100 + n) } : {}), finishedAt: iso(w.clock.now), updatedAt: iso(w.clock.now) }), { step: 'delete-old', status: 'finished', at: iso(w.clock.now) });
      await w.credentials.recordFinished(done);
      await p.onFinished(done);
    };
    await finish(1, 'succeeded');
    await finish(2, 'failed');
    const next1 = (await w.store.score(idOf(1)))!;
    expect(next1).toBeGreaterThan(w.clock.now + 80 * DAY_MS);
    expect(next1).toBeLessThanOrEqual(w.clock.now + 90 * DAY_MS);
    expect(await w.store.score(idOf(2))).toBe(w.clock.now + 3_600_000);
    const view = await p.view(7);
    expect(view.failing).toMatchObject({ count: 1, items: [{ credentialId: idOf(2), outcome: 'failed' }] });
    expect(view.inFlight).toBe(0);

    w.clock.now += 3_599_000;
    await p.tick();
    expect(w.calls.length).toBe(2);
    w.clock.now += 2_000;
    await p.tick();
    expect(w.calls).toEqual([idOf(1), idOf(2), idOf(2)]);
  });

  it('rebuilds when the policy catalog changes, a page at a time, and forecasts per day and policy from the due set', async () => {
    const w = world(WEDNESDAY);
    for (let n = 1; n <= 25; n++) await w.rotated(n, 70); // default P90D: due in ~13–20 days
    await w.accounts.upsertMany(Array.from({ length: 25 }, (_, i) => ({ accountSid: sid(i + 1), friendlyName: 's', status: 'active' })));
    const p = w.planner();
    await p.rebuildAll();
    let v = await p.view(30);
    expect(v.scheduled).toBe(25);
    // 30 × 24 h from noon: a part of today, 29 whole days, a part of the 31st date.
    expect(v.forecast.items.map((d) => d.date)).toHaveLength(31);
    expect([v.forecast.items[0]!.date, v.forecast.items.at(-1)!.date]).toEqual(['2026-06-10', '2026-07-10']);
    expect(v.forecast.items.reduce((s, d) => s + d.count, 0)).toBe(25);
    expect(Object.keys(v.forecast.items.find((d) => d.count > 0)!.byPolicy)).toEqual(['default']);

    // Label 10 of them hipaa (P30D): already overdue once the catalog's rebuild has run.
    for (let n = 1; n <= 10; n++) await w.accounts.patch(sid(n), { labels: ['hipaa'] });
    await w.policies.put({ name: 'hipaa', interval: 'P30D', labels: ['hipaa'] }); // the version moves
    const small = new Planner(
      // Pages of 4 with no time to spare: each tick does one page.
      { store: new ScheduleStore(w.redis, w.prefix), fleet: new FleetDirectory({ credentials: w.credentials, accounts: w.accounts, policies: w.policies }), policies: w.policies, service: { start: async () => Promise.reject(new Error('paused')) }, log: pino({ level: 'silent' }), now: () => w.clock.now },
      { tickMs: 1_000, maxStartsPerTick: 0, leaseMs: 1, retryAfterFailureMs: 1, pageSize: 4, rebuildBudgetMs: 0 },
    );
    await small.pause('test', 'watch the rebuild only');
    let ticks = 0;
    for (;;) {
      const r = await small.tick();
      ticks++;
      if ((await small.view(1)).plannedAgainst.rebuilding === false || ticks > 20) break;
      expect(r.rebuilt).toBe(4);
    }
    expect(ticks).toBe(7);
    v = await p.view(30);
    expect(v.plannedAgainst).toMatchObject({ policyVersion: await w.policies.version(), rebuilding: false });
    expect(v.dueNow + v.forecast.items.reduce((s, d) => s + (d.byPolicy.hipaa ?? 0), 0)).toBe(10);
    expect(v.overdue).toBe(10);
    expect(v.forecast.items.reduce((s, d) => s + (d.byPolicy.default ?? 0), 0)).toBe(15);
  });
});
