/**
 * The planner's rules: when each managed credential must be rotated (its deadline), when it will be
 * (its slot), which credentials are due now and in what order, and what the coming days hold.
 * Pure: time comes in as epoch milliseconds, so every rule runs the same under a simulated clock,
 * and the same inputs always give the same slot — a restart, a second process or a retried tick
 * computes exactly what the first one did.
 *
 * The slot rule, in one paragraph: credentials that fall due together (a fleet onboarded or rotated
 * on one day) share the last `spread` worth of *allowed* time before their deadline, each at the
 * point its id's hash picks. "Allowed" means inside a window and outside every blackout, computed
 * in each window's IANA zone across DST changes. So a slot is inside a window, never after the
 * deadline, never in a blackout, spread evenly over the window's hours, and a function of the
 * credential alone.
 */
import { hash } from 'node:crypto';
import { DAY_MS, MINUTE_MS, WEEK_MS } from './duration.ts';
import type { CompiledPolicy, CompiledWindow } from './policy.ts';
import { localDate, zoneOffsets } from './zone.ts';

/** A UTC interval [start, end) in epoch ms. */
export type Interval = readonly [number, number];

/** What the planner needs to know about a credential. */
export interface CredentialClock {
  /** `<accountSid>/<name>`. */
  id: string;
  /** When Rotator first recorded the credential. */
  firstSeenMs: number;
  /** When its last rotation finished; null if Rotator never rotated it. */
  lastRotatedMs?: number | null;
  /** Twilio's date_created of the key the store holds, when known. */
  keyCreatedMs?: number | null;
}

export interface Deadline {
  deadlineMs: number;
  /** What the deadline counts from: the last rotation, or first sight. No slot is planned before it. */
  anchorMs: number;
  /** Which rule set the deadline. */
  by: 'interval' | 'max key age';
}

/**
 * The latest time a credential may be rotated: its interval after the last rotation (or after
 * Rotator first saw it: a credential found with an unknown history gets one interval, not an
 * immediate rotation), or its maximum key age after Twilio created the key, whichever comes first.
 * The key age rule exists because `lastRotated` says nothing about a key someone created by hand.
 * Without a known creation date the maximum age counts from the anchor too (the best lower bound
 * Rotator has).
 */
export function rotationDeadline(policy: CompiledPolicy, c: CredentialClock): Deadline {
  const anchorMs = c.lastRotatedMs ?? c.firstSeenMs;
  const byInterval = anchorMs + policy.intervalMs;
  if (policy.maxKeyAgeMs === null) return { deadlineMs: byInterval, anchorMs, by: 'interval' };
  const byAge = (c.keyCreatedMs ?? anchorMs) + policy.maxKeyAgeMs;
  return byAge < byInterval ? { deadlineMs: byAge, anchorMs, by: 'max key age' } : { deadlineMs: byInterval, anchorMs, by: 'interval' };
}

/**
 * A credential's place in the spread, in [0, 1): the first 48 bits of SHA-256 of its id. A hash
 * of the id alone (not of a counter, the clock or the fleet) is what makes the slot survive a
 * restart and be the same in every process; SHA-256 because it is specified everywhere, so the
 * slot can be recomputed outside Rotator (an audit, a script) and will not change with a library.
 */
export function spreadFraction(credentialId: string): number {
  // crypto.hash (one call, hex) costs about a fifth of createHash().update().digest().
  return parseInt(hash('sha256', credentialId, 'hex').slice(0, 12), 16) / 2 ** 48;
}

// ---------------------------------------------------------------------------------------------
// Allowed time

/** Whether a rotation may start at this instant: inside one of the windows (if any), outside every blackout. */
export function isAllowedAt(policy: CompiledPolicy, ms: number): boolean {
  for (const [from, to] of policy.blackouts) if (ms >= from && ms < to) return false;
  if (policy.windows.length === 0) return true;
  for (const w of policy.windows) {
    const local = ms + zoneOffsets(w.timeZone).offsetAt(ms);
    const day = Math.floor(local / DAY_MS);
    if (!(w.dayMask & (1 << weekday(day)))) continue;
    const minute = Math.floor((local - day * DAY_MS) / MINUTE_MS);
    for (const [a, b] of w.ranges) if (minute >= a && minute < b) return true;
  }
  return false;
}

/**
 * The allowed time within [from, to): sorted, disjoint UTC intervals. Each window is laid out per
 * stretch of constant UTC offset in its zone, so DST is exact: on the night clocks spring forward a
 * 01:00–04:00 window is two hours long (02:00–03:00 does not exist), on the night they fall back it
 * is four (01:00–02:00 happens twice, and a start in either is inside the window by the local
 * clock). Blackouts are cut out last.
 */
export function allowedIntervals(policy: CompiledPolicy, from: number, to: number): Interval[] {
  if (!(to > from)) return [];
  let out: Array<[number, number]>;
  if (policy.windows.length === 0) out = [[from, to]];
  else {
    out = [];
    for (const w of policy.windows) layWindow(w, from, to, out);
    out = mergeIntervals(out);
  }
  return policy.blackouts.length === 0 ? out : subtract(out, policy.blackouts);
}

function layWindow(w: CompiledWindow, from: number, to: number, out: Array<[number, number]>): void {
  for (const seg of zoneOffsets(w.timeZone).segments(from, to)) {
    const off = seg.offsetMs;
    const firstDay = Math.floor((seg.start + off) / DAY_MS);
    const lastDay = Math.floor((seg.end - 1 + off) / DAY_MS);
    for (let day = firstDay; day <= lastDay; day++) {
      if (!(w.dayMask & (1 << weekday(day)))) continue;
      const base = day * DAY_MS - off;
      for (const [a, b] of w.ranges) {
        const s = Math.max(base + a * MINUTE_MS, seg.start);
        const e = Math.min(base + b * MINUTE_MS, seg.end);
        if (e > s) out.push([s, e]);
      }
    }
  }
}

/** 1970-01-01 (epoch day 0) was a Thursday; 0 = Sunday, as CompiledWindow.dayMask counts. */
function weekday(epochDay: number): number {
  return (((epochDay + 4) % 7) + 7) % 7;
}

function mergeIntervals(xs: Array<[number, number]>): Array<[number, number]> {
  xs.sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const x of xs) {
    const last = out[out.length - 1];
    if (last && x[0] <= last[1]) last[1] = Math.max(last[1], x[1]);
    else out.push([x[0], x[1]]);
  }
  return out;
}

function subtract(xs: ReadonlyArray<[number, number]>, cuts: ReadonlyArray<readonly [number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [s0, e] of xs) {
    let s = s0;
    for (const [cs, ce] of cuts) {
      if (ce <= s || cs >= e) continue;
      if (cs > s) out.push([s, cs]);
      s = Math.max(s, ce);
      if (s >= e) break;
    }
    if (s < e) out.push([s, e]);
  }
  return out;
}

/**
 * The first allowed instant at or after `ms`: where an overdue credential, or one whose slot the
 * planner missed (an outage), may start. Windows repeat weekly and blackouts end, so it exists;
 * the search is bounded all the same.
 */
export function nextAllowedAt(policy: CompiledPolicy, ms: number): number {
  if (isAllowedAt(policy, ms)) return ms;
  const lastBlackout = policy.blackouts.length ? (policy.blackouts[policy.blackouts.length - 1] as Interval)[1] : ms;
  const horizon = Math.max(ms, lastBlackout) + 2 * WEEK_MS;
  for (let from = ms; from < horizon; from += WEEK_MS + DAY_MS) {
    const first = allowedIntervals(policy, from, from + WEEK_MS + DAY_MS)[0];
    if (first) return first[0];
  }
  // Unreachable for a validated policy (every window has a day and an hour range).
  throw new Error(`policy ${policy.name} allows no time after ${new Date(ms).toISOString()}`);
}

// ---------------------------------------------------------------------------------------------
// The slot

export interface Plan {
  credentialId: string;
  policy: string;
  deadlineMs: number;
  deadlineBy: Deadline['by'];
  /** When the planner starts the rotation: inside a window, outside blackouts, ≤ deadline unless `late`. */
  slotMs: number;
  /**
   * No allowed time lies between the anchor and the deadline (a blackout covers it all, or the key
   * was already past its maximum age when first seen): the slot is the first allowed instant after
   * the deadline (and after the anchor), and the credential will be reported overdue.
   */
  late: boolean;
  /** false: tracked, not started by the planner (policy autoRotate: false). */
  auto: boolean;
}

/**
 * Where a credential's next rotation goes.
 *
 * 1. Deadline: `rotationDeadline`.
 * 2. Spread, measured in allowed time: the credentials due together share the last
 *    `spread × allowedShare` of allowed time before the deadline (with the default P7D and weekly
 *    windows that is exactly one week's windows). Measuring allowed time, not wall time, is what
 *    keeps the load even: a "deadline − hash·spread, then moved to the next window" rule piles every
 *    slot that lands outside a window onto the window's opening minute, and can push a slot past
 *    the deadline when the next window opens after it.
 * 3. The range is walked backwards from the deadline, so the slot can only move *earlier*, never
 *    past the deadline. A blackout in that range stretches it further back (the same amount of
 *    allowed time, so the same density) instead of squeezing the fleet into what is left.
 * 4. Never before the anchor (the rotation this one follows). If the allowed time between anchor and
 *    deadline is less than the spread wants — a window too narrow for the spread, or a blackout
 *    reaching back to the last rotation — the fleet shares what there is, denser but still before
 *    the deadline: a deadline is a compliance promise, load is not. Only when there is none at all
 *    is the slot late (the first allowed instant after the deadline).
 * 5. Position: the hash fraction u of the id picks the point `(1 − u)` of the way back through that
 *    allowed time. Equal deadlines → uniform over the allowed hours; the same id → the same point.
 *
 * Whether the rotations of a window fit through the Twilio cap is not the slot's concern: the
 * forecast shows the load per day, and the worker paces what is due.
 */
export function planRotation(policy: CompiledPolicy, c: CredentialClock): Plan {
  const d = rotationDeadline(policy, c);
  const base = { credentialId: c.id, policy: policy.name, deadlineMs: d.deadlineMs, deadlineBy: d.by, auto: policy.autoRotate && !policy.exclude };
  const want = policy.spreadMs * policy.allowedShare;
  const pieces = allowedBefore(policy, d.deadlineMs, d.anchorMs, want);
  let have = 0;
  for (const [s, e] of pieces) have += e - s;
  // Late: the first allowed instant after the deadline — and after the anchor, for a key that was
  // past its maximum age before Rotator first saw it (its deadline lies before the anchor).
  if (have <= 0) return { ...base, slotMs: nextAllowedAt(policy, Math.max(d.deadlineMs, d.anchorMs + 1)), late: true };

  let back = (1 - spreadFraction(c.id)) * have; // in (0, have]
  for (const [s, e] of pieces) {
    const len = e - s;
    if (back <= len) return { ...base, slotMs: Math.max(s, Math.floor(e - back)), late: false };
    back -= len;
  }
  const earliest = pieces[pieces.length - 1] as Interval; // rounding: back ran past the sum
  return { ...base, slotMs: earliest[0], late: false };
}

/**
 * Up to `want` ms of allowed time in (lower, deadline], latest first, as intervals in descending
 * order (the earliest one trimmed to make the total exact).
 */
function allowedBefore(policy: CompiledPolicy, deadline: number, lower: number, want: number): Interval[] {
  const out: Interval[] = [];
  if (want <= 0) return out;
  let need = want;
  let hi = deadline;
  // One chunk normally suffices: a spread of allowed time lies within spread + a day of wall time
  // unless blackouts intervene.
  const chunk = Math.max(policy.spreadMs, WEEK_MS) + DAY_MS;
  while (need > 0 && hi > lower) {
    const lo = Math.max(lower, hi - chunk);
    const ivs = allowedIntervals(policy, lo, hi);
    for (let i = ivs.length - 1; i >= 0 && need > 0; i--) {
      const [s, e] = ivs[i] as Interval;
      // The anchor itself is excluded: a rotation is never planned at the instant of the last one.
      const start = Math.max(s, lower + 1);
      if (e <= start) continue;
      const take = Math.min(e - start, need);
      out.push([e - take, e]);
      need -= take;
    }
    hi = lo;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Due, overdue, catch-up

export interface DueRotation {
  plan: Plan;
  /** How far past its deadline (0 if not yet): what "most overdue first" sorts by. */
  overdueMs: number;
}

/**
 * The rotations due at `now` (slot reached, started by the planner), most overdue first. After an
 * outage many slots have passed at once: the credential nearest to (or furthest past) its deadline
 * is the compliance risk, so it goes first — deadline ascending, then slot, then id so that every
 * process agrees on the order. Each credential appears once however many slots it missed: a plan
 * is one slot, and the next is planned only after the rotation finishes (from its new anchor).
 */
export function dueRotations(plans: Iterable<Plan>, nowMs: number): DueRotation[] {
  const due: DueRotation[] = [];
  for (const plan of plans) if (plan.auto && plan.slotMs <= nowMs) due.push({ plan, overdueMs: Math.max(0, nowMs - plan.deadlineMs) });
  return due.sort(mostOverdueFirst);
}

/** Order of catch-up: earliest deadline first, then earliest slot, then id. */
export function mostOverdueFirst(a: DueRotation, b: DueRotation): number {
  return a.plan.deadlineMs - b.plan.deadlineMs || a.plan.slotMs - b.plan.slotMs || (a.plan.credentialId < b.plan.credentialId ? -1 : a.plan.credentialId > b.plan.credentialId ? 1 : 0);
}

/**
 * When a rotation may actually start, asked at `now`: its slot if still ahead, else now if the
 * policy allows now, else the next allowed instant. A tick that runs late (an outage, a slow
 * worker) must not start a rotation outside its window or inside a blackout just because the slot
 * passed; the worker re-queues such a rotation for this time.
 */
export function startTime(policy: CompiledPolicy, plan: Pick<Plan, 'slotMs'>, nowMs: number): number {
  return plan.slotMs > nowMs ? plan.slotMs : nextAllowedAt(policy, nowMs);
}

// ---------------------------------------------------------------------------------------------
// Forecast

export interface ForecastDay {
  /** Local date in the forecast's zone. */
  date: string;
  count: number;
  byPolicy: Record<string, number>;
}

export interface Forecast {
  fromMs: number;
  toMs: number;
  timeZone: string;
  /** Slots already passed (the next ticks start them). */
  dueNow: number;
  /** Of those, past their deadline. */
  overdue: number;
  /** Plans that could not be placed before their deadline. */
  late: number;
  days: ForecastDay[];
}

/**
 * What rotates in the next `days` days, per local day in `timeZone` (default UTC): the planner's
 * slots, counted by day and policy. Slots already passed are reported as due now, not spread over
 * days: when they start depends on the pace of the worker.
 */
export function forecast(plans: Iterable<Plan>, nowMs: number, days: number, timeZone = 'UTC'): Forecast {
  const toMs = nowMs + days * DAY_MS;
  const byDate = new Map<string, ForecastDay>();
  // Every local date in range is listed, including quiet ones, so a chart has no gaps (half-day
  // steps: a 24-hour step can jump over a date on the night clocks spring forward).
  for (let t = nowMs; ; t = Math.min(t + DAY_MS / 2, toMs - 1)) {
    const date = localDate(t, timeZone);
    if (!byDate.has(date)) byDate.set(date, { date, count: 0, byPolicy: {} });
    if (t >= toMs - 1) break;
  }
  let dueNow = 0;
  let overdue = 0;
  let late = 0;
  for (const p of plans) {
    if (!p.auto) continue;
    if (p.late) late++;
    if (p.slotMs <= nowMs) {
      dueNow++;
      if (p.deadlineMs < nowMs) overdue++;
      continue;
    }
    if (p.slotMs >= toMs) continue;
    const date = localDate(p.slotMs, timeZone);
    let day = byDate.get(date);
    if (!day) byDate.set(date, (day = { date, count: 0, byPolicy: {} }));
    day.count++;
    day.byPolicy[p.policy] = (day.byPolicy[p.policy] ?? 0) + 1;
  }
  return { fromMs: nowMs, toMs, timeZone, dueNow, overdue, late, days: [...byDate.values()].sort((a, b) => a.date.localeCompare(b.date)) };
}
