import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { credentialId, DEFAULT_CREDENTIAL, parseCredentialId } from '../domain/credential.ts';
import { isAllowedAt, mostOverdueFirst, type DueRotation } from '../domain/planner.ts';
import { allowedStart, forecastRanges, plannerStalled, scheduleOf, type Scheduling } from '../domain/schedule.ts';
import { isTerminal, type RotationRecord } from '../domain/rotation.ts';
import type { PolicyCatalog } from '../domain/policy.ts';
import type { CrashPoint } from '../../workers/crash-points.ts';
import type { FleetDirectory, FleetEntry } from './fleet.ts';
import type { RotationService } from './rotations.ts';
import type { PolicyRepository } from '../state/policies.ts';
import type { FleetPause, ScheduleStore, ScheduleWrite, TickReport } from '../state/schedule.ts';
import { isoTime } from '../state/iso.ts';
import type { PlannerGauges } from '../metrics.ts';

/**
 * The planner (issue 13, scheduling): keeps each managed credential's next rotation time in the due
 * set, and on every tick starts what is due, most overdue first, at most a budget per tick.
 *
 * - `replan(ids)` decides again for some credentials (a rotation finished, an operator moved a
 *   schedule); `replan('all')` asks for a rebuild, which the ticks run a page at a time within a
 *   time budget, as they do when the policy catalog's version moved since the last rebuild, or the
 *   last one is older than RECONCILE_MS (a credential written without a replan is found then).
 * - A tick never trusts the due set alone: it reads the credentials it found due and decides again
 *   (domain/schedule.ts). A stale score costs a look, never a wrong start.
 * - Starting is a claim (a Lua compare-and-set on the score the tick read, moving it to a lease)
 *   then `service.start`, which is idempotent per credential. Overlapping or retried ticks lose the
 *   claim; a process that dies between claim and start leaves a lease that expires, after which the
 *   next tick claims it again.
 */

export interface PlannerOptions {
  tickMs: number;
  maxStartsPerTick: number;
  leaseMs: number;
  retryAfterFailureMs: number;
  /** Time one tick may spend on a rebuild (default: a quarter of the tick, at most 2 s). */
  rebuildBudgetMs?: number;
  /** Credentials per rebuild page. */
  pageSize?: number;
  /** A complete rebuild older than this runs again (default 6 h). */
  reconcileMs?: number;
}

export interface PlannerDeps {
  store: ScheduleStore;
  fleet: Pick<FleetDirectory, 'join' | 'credentials'>;
  policies: Pick<PolicyRepository, 'catalog' | 'version'>;
  service: Pick<RotationService, 'start'>;
  log: Logger;
  now?: () => number;
  /** Test-only crash points: `planner:after-claim` kills the process between claim and start. */
  crash?: CrashPoint;
  /** Told about every tick (metrics). */
  onTick?: (report: TickReport) => void;
}

export interface ScheduleView {
  paused: FleetPause | null;
  tickSeconds: number;
  maxStartsPerTick: number;
  lastTick: TickReport | null;
  /** No tick for three intervals: no worker runs the planner (PLANNER_ENABLED), or its Job Scheduler stopped. */
  stalled: boolean;
  scheduled: number;
  dueNow: number;
  overdue: number;
  inFlight: number;
  failing: { count: number; items: Array<{ credentialId: string; retryAt: string; rotationId: string | null; outcome: string | null }> };
  plannedAgainst: { policyVersion: string | null; rebuiltAt: string | null; rebuilding: boolean };
  forecast: { days: number; timeZone: 'UTC'; items: Array<{ date: string; count: number; byPolicy: Record<string, number> }> };
}

const RECONCILE_MS = 6 * 3_600_000;
/** How many due entries a tick reads per start it may make: the order is by slot, "most overdue first" by deadline, so a tick reads past its budget to choose. */
const READ_FACTOR = 4;

export class Planner {
  readonly #d: PlannerDeps;
  readonly #o: Required<PlannerOptions>;
  readonly #now: () => number;
  readonly #who = `${hostname()}:${process.pid}`;

  constructor(deps: PlannerDeps, opts: PlannerOptions) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    this.#o = {
      rebuildBudgetMs: Math.min(2_000, Math.max(50, Math.floor(opts.tickMs / 4))),
      pageSize: 1_000,
      reconcileMs: RECONCILE_MS,
      ...opts,
    };
  }

  get options(): Readonly<Required<PlannerOptions>> {
    return this.#o;
  }

  // -------------------------------------------------------------------------------------------
  // Replanning

  /**
   * Decide again for these credentials (ids `AC…/name`), or ask for a rebuild of all (the ticks run
   * it in pages). The policy branch's writes (labels, overrides, pauses) call this as onFleetChange.
   */
  async replan(ids: readonly string[] | 'all', opts: { finished?: boolean } = {}): Promise<number> {
    if (ids === 'all') {
      await this.#d.store.requestRebuild();
      return 0;
    }
    let n = 0;
    for (let i = 0; i < ids.length; i += this.#o.pageSize) {
      const page = ids.slice(i, i + this.#o.pageSize);
      const creds = await this.#d.fleet.credentials.getMany(page);
      const present = creds.filter((c): c is NonNullable<typeof c> => c !== undefined);
      const entries = await this.#d.fleet.join(present);
      const byId = new Map(entries.map((e) => [e.id, e]));
      const now = this.#now();
      // A credential no longer managed leaves the schedule.
      const writes = page.map((id) => {
        const e = byId.get(id);
        return e ? this.#decision(e, opts.finished ?? false) : { id, atMs: null };
      });
      await this.#d.store.write(writes, now);
      n += writes.length;
    }
    return n;
  }

  /** A rotation finished (the runtime's onTransition): its credential's next time, and its lease ends. */
  async onFinished(rec: RotationRecord): Promise<void> {
    if (!isTerminal(rec.status) || rec.dryRun) return;
    await this.replan([credentialId({ accountSid: rec.accountSid, name: rec.credential ?? DEFAULT_CREDENTIAL })], { finished: true });
  }

  #schedule(e: FleetEntry): Scheduling {
    const c = e.credential;
    return scheduleOf(
      {
        id: e.id,
        kind: c.kind,
        policy: e.assignment.policy,
        paused: e.paused,
        subaccountStatus: e.subaccountStatus,
        firstSeenMs: c.firstSeenAtMs,
        lastRotatedMs: c.lastRotatedAtMs,
        keyCreatedMs: c.keyCreatedAtMs,
        currentKeySid: c.currentKeySid,
        lastRotation: c.lastRotation,
      },
      { retryAfterFailureMs: this.#o.retryAfterFailureMs },
    );
  }

  #decision(e: FleetEntry, finished: boolean, s: Scheduling = this.#schedule(e)): ScheduleWrite {
    if (!s.scheduled) return { id: e.id, atMs: null };
    return { id: e.id, atMs: s.atMs, deadlineMs: s.plan.deadlineMs, policy: s.plan.policy, retryAtMs: s.failure?.retryAtMs ?? null, finished };
  }

  /**
   * Continue (or start) a rebuild for at most `budgetMs`: a page at a time, the cursor in Redis so the
   * next tick (in any process) continues where this one stopped. Returns the credentials replanned.
   */
  async rebuildStep(budgetMs: number = this.#o.rebuildBudgetMs): Promise<{ replanned: number; done: boolean }> {
    const t0 = this.#now();
    const version = await this.#d.policies.version();
    let state = await this.#d.store.rebuildState();
    const stale = state.target !== null || state.plannedVersion !== version || state.rebuiltAtMs === null || t0 - state.rebuiltAtMs > this.#o.reconcileMs;
    if (!stale) return { replanned: 0, done: true };
    if (!(await this.#d.store.lockRebuild(this.#who, Math.max(30_000, budgetMs * 4)))) return { replanned: 0, done: false };
    let replanned = 0;
    try {
      state = await this.#d.store.rebuildState();
      // The catalog moved since this rebuild began: begin again, or some pages would be planned against the old one.
      let cursor = state.target === version ? (state.cursor ?? '') : '';
      const catalog: PolicyCatalog = await this.#d.policies.catalog();
      for (;;) {
        const page = await this.#d.fleet.credentials.list({ limit: this.#o.pageSize, ...(cursor ? { cursor } : {}) });
        const entries = await this.#d.fleet.join(page.items, catalog);
        await this.#d.store.write(entries.map((e) => this.#decision(e, false)), this.#now());
        replanned += entries.length;
        if (!page.nextCursor) {
          await this.#d.store.rebuildDone(version, this.#now());
          return { replanned, done: true };
        }
        cursor = page.nextCursor;
        await this.#d.store.rebuildProgress(version, cursor);
        if (this.#now() - t0 >= budgetMs) return { replanned, done: false };
      }
    } finally {
      await this.#d.store.unlockRebuild(this.#who);
    }
  }

  /** Run the rebuild to its end (start-up of a test, the benchmark, an operator's tool). */
  async rebuildAll(): Promise<number> {
    await this.#d.store.requestRebuild();
    let n = 0;
    for (;;) {
      const r = await this.rebuildStep(60_000);
      n += r.replanned;
      if (r.done) return n;
    }
  }

  // -------------------------------------------------------------------------------------------
  // The tick

  /**
   * One tick: start what is due, most overdue first, at most `maxStartsPerTick`; then continue a
   * rebuild if one is due. Safe to run concurrently with itself, in any number of processes.
   */
  async tick(): Promise<TickReport> {
    const t0 = this.#now();
    const r: TickReport = {
      at: isoTime(t0),
      durationMs: 0,
      read: 0,
      started: 0,
      inFlight: 0,
      skippedWindow: 0,
      skippedPaused: 0,
      notDue: 0,
      lostClaim: 0,
      blocked: 0,
      deferred: 0,
      budget: this.#o.maxStartsPerTick,
      due: 0,
      overdue: 0,
      paused: false,
      rebuilt: 0,
      by: this.#who,
    };
    const pause = await this.#d.store.paused();
    if (pause) r.paused = true;
    else await this.#startDue(t0, r);
    r.rebuilt = (await this.rebuildStep()).replanned;
    const counts = await this.#d.store.counts(this.#now());
    r.due = counts.due;
    r.overdue = counts.overdue;
    r.durationMs = this.#now() - t0;
    await this.#d.store.recordTick(r);
    this.#d.onTick?.(r);
    if (r.started || r.skippedWindow || r.skippedPaused || r.notDue || r.blocked || r.rebuilt) {
      const { at: _at, by: _by, ...fields } = r;
      this.#d.log.info({ planner: fields }, `planner tick: started ${r.started}, in flight ${r.inFlight}, skipped ${r.skippedWindow + r.skippedPaused + r.notDue + r.blocked + r.lostClaim}, deferred ${r.deferred}, due ${r.due}, overdue ${r.overdue}${r.rebuilt ? `, replanned ${r.rebuilt}` : ''} (${r.durationMs} ms)`);
    }
    return r;
  }

  async #startDue(now: number, r: TickReport): Promise<void> {
    const budget = this.#o.maxStartsPerTick;
    const read = await this.#d.store.due(now, budget * READ_FACTOR);
    r.read = read.length;
    if (read.length === 0) return;
    const scoreOf = new Map(read.map((x) => [x.id, x.score]));
    const creds = await this.#d.fleet.credentials.getMany(read.map((x) => x.id));
    const entries = await this.#d.fleet.join(creds.filter((c): c is NonNullable<typeof c> => c !== undefined));
    const byId = new Map(entries.map((e) => [e.id, e]));

    const candidates: Array<DueRotation & { entry: FleetEntry; score: number }> = [];
    const rewrites: ScheduleWrite[] = [];
    for (const { id, score } of read) {
      const e = byId.get(id);
      if (!e) {
        rewrites.push({ id, atMs: null });
        r.skippedPaused++;
        continue;
      }
      const s = this.#schedule(e);
      if (!s.scheduled) {
        rewrites.push({ id, atMs: null });
        r.skippedPaused++;
        continue;
      }
      if (s.atMs > now) {
        // The due set was behind (a rotation finished and its replan was lost, or a rebuild wrote an old page).
        rewrites.push(this.#decision(e, false, s));
        r.notDue++;
        continue;
      }
      const policy = e.assignment.policy;
      if (!isAllowedAt(policy, now)) {
        if (await this.#d.store.reslot(id, policy.name, score, allowedStart(policy, s.atMs, now))) r.skippedWindow++;
        else r.lostClaim++;
        continue;
      }
      candidates.push({ plan: s.plan, overdueMs: Math.max(0, now - s.plan.deadlineMs), entry: e, score: scoreOf.get(id)! });
    }
    await this.#d.store.write(rewrites, now);

    candidates.sort(mostOverdueFirst);
    r.deferred = Math.max(0, candidates.length - budget);
    for (const c of candidates.slice(0, budget)) {
      if (!(await this.#d.store.claim(c.entry.id, c.score, now + this.#o.leaseMs))) {
        r.lostClaim++;
        continue;
      }
      this.#d.crash?.('planner:after-claim');
      await this.#start(c, now, r);
    }
  }

  async #start(c: DueRotation & { entry: FleetEntry }, now: number, r: TickReport): Promise<void> {
    const { accountSid, name } = parseCredentialId(c.entry.id);
    const p = c.plan;
    const reason = `scheduled: policy ${p.policy} (${c.entry.assignment.source}), deadline ${isoTime(p.deadlineMs)}${c.overdueMs > 0 ? `, overdue by ${Math.round(c.overdueMs / 60_000)} min` : ''}`;
    try {
      const res = await this.#d.service.start({ accountSid, credential: name, trigger: 'schedule', reason, requestedBy: 'planner', policyAllowsAuthToken: c.entry.assignment.policy.allowAuthToken });
      if (res.started) {
        r.started++;
        return;
      }
      if (!isTerminal(res.existing.status)) {
        // Another rotation of it is in flight (an operator's, or ours from a lease that ran out
        // during a long drain): nothing new; its end replans the credential.
        r.inFlight++;
        return;
      }
      // A failed rotation still holds the subaccount (its undo did not finish): an operator must
      // retry or abandon it. Look again after the failure back-off, and say so.
      r.blocked++;
      await this.#d.store.write([{ id: c.entry.id, atMs: now + this.#o.retryAfterFailureMs, deadlineMs: p.deadlineMs, policy: p.policy, retryAtMs: now + this.#o.retryAfterFailureMs, finished: true }], now);
      this.#d.log.warn({ credentialId: c.entry.id, rotationId: res.existing.id }, `planner: ${c.entry.id} is held by failed rotation ${res.existing.id}: retry or abandon it; the planner looks again in ${Math.round(this.#o.retryAfterFailureMs / 60_000)} min`);
    } catch (err) {
      // The claim stands: the lease runs out and a later tick tries again.
      r.blocked++;
      this.#d.log.warn({ credentialId: c.entry.id, err: { message: (err as Error).message } }, 'planner: could not start a scheduled rotation; a later tick tries again');
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reading and steering

  async pause(by: string, reason: string): Promise<FleetPause> {
    const p = { at: isoTime(this.#now()), by, reason };
    await this.#d.store.pause(p);
    return p;
  }

  async resume(): Promise<boolean> {
    return this.#d.store.resume();
  }

  async paused(): Promise<FleetPause | null> {
    return this.#d.store.paused();
  }

  async lastTick(): Promise<TickReport | null> {
    return this.#d.store.lastTick();
  }

  /** For the metrics at scrape time. */
  async gauges(): Promise<PlannerGauges> {
    const [counts, paused, last] = await Promise.all([this.#d.store.counts(this.#now()), this.#d.store.paused(), this.#d.store.lastTick()]);
    return { ...counts, paused: paused !== null, lastTickMs: last ? Date.parse(last.at) : null };
  }

  /** GET /v1/schedule: the planner's state and what rotates in the next `days` days (O(days × policies)). */
  async view(days: number): Promise<ScheduleView> {
    const now = this.#now();
    const store = this.#d.store;
    const [paused, lastTick, counts, failing, rebuild, catalog, version] = await Promise.all([
      store.paused(),
      store.lastTick(),
      store.counts(now),
      store.failing(20),
      store.rebuildState(),
      this.#d.policies.catalog(),
      this.#d.policies.version(),
    ]);
    const policies = catalog.list().map((p) => p.name);
    const ranges = forecastRanges(now, days);
    const perDay = await store.countSlots(policies, ranges);
    const lastRotations = await this.#d.fleet.credentials.getMany(failing.map((f) => f.id));
    return {
      paused,
      tickSeconds: this.#o.tickMs / 1000,
      maxStartsPerTick: this.#o.maxStartsPerTick,
      lastTick,
      stalled: plannerStalled(lastTick ? Date.parse(lastTick.at) : null, this.#o.tickMs, now),
      scheduled: counts.scheduled,
      dueNow: counts.due,
      overdue: counts.overdue,
      inFlight: counts.inFlight,
      failing: {
        count: counts.failing,
        items: failing.map((f, i) => ({ credentialId: f.id, retryAt: isoTime(f.retryAtMs), rotationId: lastRotations[i]?.lastRotation?.id ?? null, outcome: lastRotations[i]?.lastRotation?.outcome ?? null })),
      },
      plannedAgainst: { policyVersion: rebuild.plannedVersion, rebuiltAt: rebuild.rebuiltAtMs === null ? null : isoTime(rebuild.rebuiltAtMs), rebuilding: rebuild.target !== null || rebuild.plannedVersion !== version },
      forecast: {
        days,
        timeZone: 'UTC',
        items: ranges.map((range, i) => {
          const byPolicy: Record<string, number> = {};
          let count = 0;
          perDay[i]!.forEach((n, j) => {
            if (n > 0) byPolicy[policies[j]!] = n;
            count += n;
          });
          return { date: range.date, count, byPolicy };
        }),
      },
    };
  }
}
