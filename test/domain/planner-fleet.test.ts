/**
 * Issue 13's acceptance test of the planner's logic: a simulated clock over 400 days with 10,000
 * credentials (10% labelled hipaa), each rotated at its planned slot (success: lastRotated = the
 * slot), with a 7-day outage in the middle.
 *
 * Every check that a slot is inside a window or outside a blackout is made here independently of
 * the code under test: local time comes from a fresh Intl.DateTimeFormat per instant (not from
 * zone.ts's cached transitions) and blackouts from Date.parse.
 */
import { loadavg } from 'node:os';
import { describe, expect, it } from 'vitest';
import { DAY_MS, HOUR_MS } from '../../src/domain/duration.ts';
import { policyCatalog, resolvePolicy, type CompiledPolicy, type Policy } from '../../src/domain/policy.ts';
import { dueRotations, isAllowedAt, mostOverdueFirst, nextAllowedAt, planRotation, type DueRotation, type Plan } from '../../src/domain/planner.ts';

const NY = 'America/New_York';
const T0 = Date.UTC(2026, 0, 1); // the whole fleet is onboarded on one day
const END = T0 + 400 * DAY_MS;
const OUTAGE_FROM = T0 + 172 * DAY_MS; // 2026-06-22, while the default fleet's second round falls due
const OUTAGE_TO = OUTAGE_FROM + 7 * DAY_MS;
const FLEET = 10_000;
/** The worker's pace after the outage, per one-minute planner tick (Twilio cap 50 × ~5 s per rotation ≈ 600/min). */
const CATCH_UP_PER_TICK = 600;

const BLACKOUTS = [
  { from: '2026-11-25T00:00:00-05:00', to: '2026-11-30T00:00:00-05:00', reason: 'Thanksgiving change freeze' },
  { from: '2026-12-19T00:00:00-05:00', to: '2027-01-04T00:00:00-05:00', reason: 'year-end change freeze' },
];

const POLICIES: Policy[] = [
  {
    name: 'default',
    interval: 'P90D',
    windows: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: { from: '09:00', to: '17:00' }, timeZone: NY }],
    blackouts: BLACKOUTS,
  },
  {
    name: 'hipaa',
    interval: 'P30D',
    labels: ['hipaa'],
    windows: [
      { days: ['tue', 'wed', 'thu'], hours: [{ from: '09:00', to: '12:00' }, { from: '13:00', to: '17:00' }], timeZone: NY },
      // Sunday 01:00–04:00 holds both DST changes: 02:00–03:00 does not exist on 2026-03-08, and
      // 01:00–02:00 happens twice on 2026-11-01.
      { days: ['sun'], hours: { from: '01:00', to: '04:00' }, timeZone: NY },
    ],
    blackouts: BLACKOUTS,
  },
];

// ---- the independent oracle ------------------------------------------------------------------

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const formats = new Map<string, Intl.DateTimeFormat>();
const hourOffsets = new Map<string, number>();
/**
 * The local wall clock at an instant, from Intl: the zone's offset is asked once per UTC hour and
 * zone (the zones used here change offset only on the hour), so checking 50,000 starts costs a few
 * thousand Intl calls instead of one each.
 */
function wallClock(ms: number, zone: string): { day: string; minute: number; date: string } {
  const hour = Math.floor(ms / HOUR_MS);
  const key = `${zone} ${hour}`;
  let offset = hourOffsets.get(key);
  if (offset === undefined) {
    let f = formats.get(zone);
    if (!f) {
      f = new Intl.DateTimeFormat('en-US', { timeZone: zone, year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', hourCycle: 'h23' });
      formats.set(zone, f);
    }
    const p = Object.fromEntries(f.formatToParts(hour * HOUR_MS).map((x) => [x.type, Number(x.value)]));
    offset = Date.UTC(p.year as number, (p.month as number) - 1, p.day, p.hour, p.minute) - hour * HOUR_MS;
    hourOffsets.set(key, offset);
  }
  const local = new Date(ms + offset);
  return { day: DAY_NAMES[local.getUTCDay()] as string, minute: local.getUTCHours() * 60 + local.getUTCMinutes(), date: local.toISOString().slice(0, 10) };
}
const toMin = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
function insideWindow(policy: Policy, ms: number): boolean {
  return (policy.windows ?? []).some((w) => {
    const local = wallClock(ms, w.timeZone);
    const ranges = Array.isArray(w.hours) ? w.hours : [w.hours];
    return (w.days as string[]).includes(local.day) && ranges.some((r) => local.minute >= toMin(r.from) && local.minute < toMin(r.to));
  });
}
const blackoutMs = BLACKOUTS.map((b) => [Date.parse(b.from), Date.parse(b.to)] as const);
const inBlackout = (ms: number): boolean => blackoutMs.some(([a, b]) => ms >= a && ms < b);

// ---- a tiny min-heap of (time, credential index) ---------------------------------------------

class Heap {
  readonly #t: number[] = [];
  readonly #i: number[] = [];
  get size(): number {
    return this.#t.length;
  }
  peekTime(): number {
    return this.#t[0] as number;
  }
  push(t: number, i: number): void {
    const a = this.#t, b = this.#i;
    let k = a.length;
    a.push(t);
    b.push(i);
    while (k > 0) {
      const p = (k - 1) >> 1;
      if ((a[p] as number) <= t) break;
      a[k] = a[p] as number;
      b[k] = b[p] as number;
      k = p;
    }
    a[k] = t;
    b[k] = i;
  }
  pop(): [number, number] {
    const a = this.#t, b = this.#i;
    const top: [number, number] = [a[0] as number, b[0] as number];
    const t = a.pop() as number, i = b.pop() as number;
    if (a.length > 0) {
      let k = 0;
      for (;;) {
        let c = 2 * k + 1;
        if (c >= a.length) break;
        if (c + 1 < a.length && (a[c + 1] as number) < (a[c] as number)) c++;
        if ((a[c] as number) >= t) break;
        a[k] = a[c] as number;
        b[k] = b[c] as number;
        k = c;
      }
      a[k] = t;
      b[k] = i;
    }
    return top;
  }
}

// ---- the fleet -------------------------------------------------------------------------------

interface Cred {
  id: string;
  policy: CompiledPolicy;
  written: Policy;
  firstSeenMs: number;
  lastRotatedMs: number | null;
  plan: Plan;
  rotations: number[];
}

function hex32(i: number): string {
  // Deterministic, SID-shaped, not sequential in the characters the hash sees first.
  let x = (i + 1) * 2654435761;
  let s = '';
  for (let k = 0; k < 4; k++) {
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
    s += x.toString(16).padStart(8, '0');
  }
  return s;
}

describe('planner over 400 simulated days, 10,000 credentials (issue 13 acceptance)', () => {
  it('keeps every deadline, every window and blackout, spreads the load, and catches up once after an outage', () => {
    const wallStart = performance.now();
    const cpuStart = process.cpuUsage();
    const catalog = policyCatalog(POLICIES);
    const written = new Map(POLICIES.map((p) => [p.name, p]));
    let slotCalls = 0;
    let slotTime = 0;
    const plan = (c: Cred): Plan => {
      const t = performance.now();
      const p = planRotation(c.policy, { id: c.id, firstSeenMs: c.firstSeenMs, lastRotatedMs: c.lastRotatedMs });
      slotTime += performance.now() - t;
      slotCalls++;
      return p;
    };

    const creds: Cred[] = [];
    for (let i = 0; i < FLEET; i++) {
      const labels = i % 10 === 3 ? ['hipaa', 'tier=gold'] : i % 7 === 0 ? ['pci'] : [];
      const id = `AC${hex32(i)}/${i % 4 === 0 ? 'billing-prod' : 'default'}`;
      const { policy } = resolvePolicy({ credentialId: id, labels }, catalog);
      // The default fleet is onboarded on one day (its first round is the load test); hipaa labels
      // are applied through January, so hipaa rotations reach every week, DST Sundays included.
      const firstSeenMs = policy.name === 'hipaa' ? T0 + Math.floor((((i * 7919) % 1000) / 1000) * 30 * DAY_MS) : T0;
      const c: Cred = { id, policy, written: written.get(policy.name) as Policy, firstSeenMs, lastRotatedMs: null, plan: undefined as unknown as Plan, rotations: [] };
      c.plan = plan(c);
      creds.push(c);
    }
    expect(creds.filter((c) => c.policy.name === 'hipaa')).toHaveLength(FLEET / 10);

    const violations: string[] = [];
    const heap = new Heap();
    creds.forEach((c, i) => heap.push(c.plan.slotMs, i));

    const rotate = (i: number, at: number, catchUp: boolean): void => {
      const c = creds[i] as Cred;
      if (at >= OUTAGE_FROM && at < OUTAGE_TO) violations.push(`${c.id} rotated during the outage`);
      if (!insideWindow(c.written, at)) violations.push(`${c.id} started outside its window at ${new Date(at).toISOString()} (${JSON.stringify(wallClock(at, NY))})`);
      if (inBlackout(at)) violations.push(`${c.id} started in a blackout at ${new Date(at).toISOString()}`);
      const prev = c.lastRotatedMs ?? c.firstSeenMs;
      // Outside the outage the policy's interval is a hard limit; a credential whose slot fell in the
      // outage is late by at most the time since the outage began (its slot, and so its deadline,
      // came after that).
      const allowance = catchUp ? at - OUTAGE_FROM : 0;
      if (at - prev > c.policy.intervalMs + allowance) violations.push(`${c.id} (${c.policy.name}) went ${((at - prev) / DAY_MS).toFixed(2)} days between rotations`);
      c.rotations.push(at);
      c.lastRotatedMs = at;
      c.plan = plan(c);
      if (c.plan.slotMs <= at) violations.push(`${c.id} planned its next rotation at or before the one just done`);
      heap.push(c.plan.slotMs, i);
    };

    // Before the outage: every credential rotates exactly at its slot.
    while (heap.size > 0 && heap.peekTime() < OUTAGE_FROM) {
      const [t, i] = heap.pop();
      rotate(i, t, false);
    }
    // The outage: nothing runs; every slot that passes is missed.
    const missed: number[] = [];
    while (heap.size > 0 && heap.peekTime() < OUTAGE_TO) missed.push(heap.pop()[1]);
    // After it: a planner tick every minute starts what is due, most overdue first, as far as each
    // policy's windows allow and at the worker's pace; on-time slots carry on at their time.
    const byIndex = new Map<Plan, number>(missed.map((i) => [(creds[i] as Cred).plan, i]));
    let queue: DueRotation[] = dueRotations(missed.map((i) => (creds[i] as Cred).plan), OUTAGE_TO);
    expect(queue).toHaveLength(missed.length);
    const overdueAtRestart = queue.filter((d) => d.overdueMs > 0).length;
    const catchUpOrder: Array<{ due: DueRotation; at: number }> = [];
    let tick = OUTAGE_TO;
    while (queue.length > 0) {
      while (heap.size > 0 && heap.peekTime() < tick) {
        const [t, i] = heap.pop();
        rotate(i, t, false);
      }
      const policies = [...new Set(queue.map((d) => (creds[byIndex.get(d.plan) as number] as Cred).policy))];
      const open = new Set(policies.filter((p) => isAllowedAt(p, tick)).map((p) => p.name));
      if (open.size === 0) {
        // Nothing queued may start before the next window opens: the ticks in between find nothing.
        tick = Math.min(...policies.map((p) => nextAllowedAt(p, tick)));
        continue;
      }
      let started = 0;
      const left: DueRotation[] = [];
      for (const due of queue) {
        if (started < CATCH_UP_PER_TICK && open.has(due.plan.policy)) {
          rotate(byIndex.get(due.plan) as number, tick, true);
          catchUpOrder.push({ due, at: tick });
          started++;
        } else left.push(due);
      }
      queue = left;
      tick += 60_000;
      if (tick > OUTAGE_TO + 14 * DAY_MS) throw new Error('catch-up did not finish in 14 days');
    }
    const catchUpEnd = catchUpOrder.at(-1)?.at ?? OUTAGE_TO;
    while (heap.size > 0 && heap.peekTime() < END) {
      const [t, i] = heap.pop();
      rotate(i, t, false);
    }
    const wallMs = performance.now() - wallStart;
    const cpu = process.cpuUsage(cpuStart);
    const cpuMs = (cpu.user + cpu.system) / 1000;

    expect(violations.slice(0, 10)).toEqual([]);

    // No credential is left past its deadline at the end of the run either.
    const stale = creds.filter((c) => END - (c.lastRotatedMs ?? c.firstSeenMs) > c.policy.intervalMs);
    expect(stale.map((c) => c.id)).toEqual([]);

    // After the outage: each missed credential rotated exactly once in the catch-up, most overdue
    // first (per policy: the policies' windows open at different times).
    expect(missed.length).toBeGreaterThan(500);
    expect(overdueAtRestart).toBeGreaterThan(100);
    expect(new Set(catchUpOrder.map((x) => x.due.plan.credentialId)).size).toBe(missed.length);
    for (const i of missed) {
      const c = creds[i] as Cred;
      expect(c.rotations.filter((t) => t >= OUTAGE_TO && t <= catchUpEnd)).toHaveLength(1);
    }
    for (const name of ['default', 'hipaa']) {
      const seq = catchUpOrder.filter((x) => x.due.plan.policy === name);
      for (let k = 1; k < seq.length; k++) {
        const a = seq[k - 1] as (typeof seq)[number];
        const b = seq[k] as (typeof seq)[number];
        expect(mostOverdueFirst(a.due, b.due)).toBeLessThan(0);
        expect(b.at).toBeGreaterThanOrEqual(a.at);
      }
    }

    // The DST days were exercised, inside the window by the local clock.
    const hipaa = creds.filter((c) => c.policy.name === 'hipaa');
    const onDay = (date: string): number[] => hipaa.flatMap((c) => c.rotations).filter((t) => wallClock(t, NY).date === date);
    const springForward = onDay('2026-03-08');
    const fallBack = onDay('2026-11-01');
    expect(springForward.length).toBeGreaterThan(0);
    expect(fallBack.length).toBeGreaterThan(0);
    // The default window's UTC hours move with DST (09:00 New York is 14:00Z in winter, 13:00Z in
    // summer): starts use both, each only in its season, so a planner working in a fixed offset
    // would have failed the oracle above.
    const defaultStarts = creds.filter((c) => c.policy.name === 'default').flatMap((c) => c.rotations);
    const summer = (t: number): boolean => t >= Date.UTC(2026, 2, 8, 7) && t < Date.UTC(2026, 10, 1, 6);
    expect(defaultStarts.some((t) => summer(t) && new Date(t).getUTCHours() === 13)).toBe(true);
    expect(defaultStarts.some((t) => !summer(t) && new Date(t).getUTCHours() === 21)).toBe(true);
    // Both DST Sundays saw hipaa starts, all inside the window by the local clock (checked above).
    // That the fall-back window is four UTC hours long and the spring-forward one two is asserted
    // exactly in planner.test.ts; here the count of starts in either hour is left to the hash.

    // Load: the default fleet, onboarded on one day, falls due on one day (2026-04-01). Its first
    // rotations share the spread's 40 window hours; the busiest clock hour carries at most 1.2×
    // the mean of the window hours.
    const defaults = creds.filter((c) => c.policy.name === 'default');
    const firstSpread = spreadLoad(defaults.map((c) => c.rotations[0] as number), POLICIES[0] as Policy);
    expect(firstSpread.hours).toBe(40);
    expect(firstSpread.busiest / firstSpread.mean).toBeLessThanOrEqual(1.2);
    // Over the whole run, no hour of the daily window is favoured (no pile-up at 09:00, when the
    // window opens, nor before 17:00): starts per local hour of day, over the weekdays each policy
    // opens 09:00–17:00 on. The catch-up after the outage is left out: it runs at the worker's pace
    // from the first allowed minute on purpose. (Per hour of the *week* the numbers are uneven for
    // another reason: a fleet onboarded on one day keeps rotating in cohorts for a few rounds.)
    const caughtUp = new Set(catchUpOrder.map((x) => `${x.due.plan.credentialId}@${x.at}`));
    const planned = (name: string): number[] => creds.filter((c) => c.policy.name === name).flatMap((c) => c.rotations.filter((t) => !caughtUp.has(`${c.id}@${t}`)));
    const profiles = {
      default: hourOfDayLoad(planned('default'), ['mon', 'tue', 'wed', 'thu', 'fri']),
      hipaa: hourOfDayLoad(planned('hipaa'), ['tue', 'wed', 'thu']),
    };
    expect(Object.keys(profiles.default.bins)).toHaveLength(8);
    expect(Object.keys(profiles.hipaa.bins)).toHaveLength(7); // 09–12 and 13–17: the lunch hour is closed
    for (const p of Object.values(profiles)) expect(p.busiest / p.mean).toBeLessThanOrEqual(1.2);

    const rotations = creds.reduce((n, c) => n + c.rotations.length, 0);
    const usPerSlot = (slotTime * 1000) / slotCalls;
    // CPU per slot, apart from the clock reads around each call: the whole fleet planned again.
    const replanStart = process.cpuUsage();
    for (const c of creds) planRotation(c.policy, { id: c.id, firstSeenMs: c.firstSeenMs, lastRotatedMs: c.lastRotatedMs });
    const replan = process.cpuUsage(replanStart);
    const cpuUsPerSlot = (replan.user + replan.system) / creds.length;
    console.log(
      `planner sim: ${rotations} rotations, ${slotCalls} slot computations at ${usPerSlot.toFixed(1)} µs each (wall), ${cpuUsPerSlot.toFixed(1)} µs CPU each (fleet re-planned); ` +
        `default first spread busiest/mean ${(firstSpread.busiest / firstSpread.mean).toFixed(3)} (${firstSpread.mean.toFixed(0)}/h over ${firstSpread.hours} h), ` +
        `hour of day busiest/mean default ${(profiles.default.busiest / profiles.default.mean).toFixed(3)}, hipaa ${(profiles.hipaa.busiest / profiles.hipaa.mean).toFixed(3)}; ` +
        `outage: ${missed.length} missed, ${overdueAtRestart} overdue at restart, caught up by ${new Date(catchUpEnd).toISOString()}; ` +
        `DST days: ${springForward.length} + ${fallBack.length} hipaa starts; wall ${wallMs.toFixed(0)} ms, CPU ${cpuMs.toFixed(0)} ms, load ${loadavg()[0]?.toFixed(1)}`,
    );
  });
});

/** Starts per clock hour over the window hours of the span they fall in: busiest and mean. */
function spreadLoad(starts: number[], policy: Policy): { busiest: number; mean: number; hours: number } {
  const bins = new Map<number, number>();
  for (const t of starts) bins.set(Math.floor(t / HOUR_MS), (bins.get(Math.floor(t / HOUR_MS)) ?? 0) + 1);
  const first = Math.min(...bins.keys());
  const last = Math.max(...bins.keys());
  let hours = 0;
  // Every clock hour between the first and the last start whose middle is inside a window counts,
  // busy or not: an empty window hour lowers the mean, as it should.
  for (let h = first; h <= last; h++) if (insideWindow(policy, h * HOUR_MS + HOUR_MS / 2) && !inBlackout(h * HOUR_MS)) hours++;
  return { busiest: Math.max(...bins.values()), mean: starts.length / hours, hours };
}

interface HourLoad {
  busiest: number;
  mean: number;
  bins: Record<string, number>;
}

/** Starts per New York hour of day, over the given weekdays. */
function hourOfDayLoad(starts: number[], days: string[]): HourLoad {
  const bins: Record<string, number> = {};
  let n = 0;
  for (const t of starts) {
    const w = wallClock(t, NY);
    if (!days.includes(w.day)) continue;
    const k = String(Math.floor(w.minute / 60)).padStart(2, '0');
    bins[k] = (bins[k] ?? 0) + 1;
    n++;
  }
  const counts = Object.values(bins);
  return { busiest: Math.max(...counts), mean: n / counts.length, bins };
}
