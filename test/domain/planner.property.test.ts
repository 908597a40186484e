/**
 * Property test of the slot invariants over random policies (windows in zones with hour, half-hour
 * and 45-minute offsets, with and without DST, southern and northern hemisphere), blackouts,
 * histories and ids:
 * - a slot is after the last rotation and before the deadline, unless it is `late`, which happens
 *   only when no allowed time lies between the two;
 * - a slot is inside a window by the local wall clock and outside every blackout (checked with a
 *   fresh Intl call, not with the planner's cached transitions);
 * - the same inputs give the same slot, whatever was computed before (the zone cache's state).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DAY_MS, HOUR_MS } from '../../src/domain/duration.ts';
import { checkPolicy, WEEKDAYS, type CompiledPolicy, type Policy, type RotationWindow } from '../../src/domain/policy.ts';
import { allowedIntervals, planRotation, type CredentialClock } from '../../src/domain/planner.ts';

const ZONES = ['America/New_York', 'Europe/London', 'Australia/Lord_Howe', 'Asia/Kolkata', 'UTC', 'Pacific/Chatham', 'America/Santiago'];
const FROM = Date.UTC(2026, 0, 1);
const TO = Date.UTC(2028, 0, 1);

const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;

/** 1–2 disjoint ranges within a day, on a 15-minute grid. */
const hours = fc
  .uniqueArray(fc.integer({ min: 0, max: 96 }), { minLength: 2, maxLength: 4 })
  .filter((xs) => xs.length % 2 === 0)
  .map((xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const ranges = [];
    for (let i = 0; i < s.length; i += 2) ranges.push({ from: hhmm((s[i] as number) * 15), to: hhmm((s[i + 1] as number) * 15) });
    return ranges;
  });

const windows = fc
  .uniqueArray(fc.constantFrom(...ZONES), { minLength: 1, maxLength: 3 })
  .chain((zones) =>
    fc.tuple(...zones.map((timeZone) => fc.record({ days: fc.subarray([...WEEKDAYS], { minLength: 1 }), hours, timeZone: fc.constant(timeZone) }))),
  )
  .map((ws) => ws as RotationWindow[]);

const blackouts = fc
  .uniqueArray(fc.integer({ min: FROM / HOUR_MS, max: TO / HOUR_MS }), { maxLength: 6 })
  .filter((xs) => xs.length % 2 === 0)
  .map((xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const out = [];
    for (let i = 0; i < s.length; i += 2) out.push({ from: new Date((s[i] as number) * HOUR_MS).toISOString(), to: new Date((s[i + 1] as number) * HOUR_MS).toISOString() });
    return out;
  });

const policies = fc
  .record({
    intervalDays: fc.integer({ min: 2, max: 120 }),
    windows: fc.option(windows, { nil: undefined }),
    blackouts: fc.option(blackouts, { nil: undefined }),
    spreadHours: fc.option(fc.integer({ min: 1, max: 24 * 14 }), { nil: undefined }),
  })
  .map(({ intervalDays, windows, blackouts, spreadHours }): CompiledPolicy | null => {
    const written: Policy = { name: 'prop', interval: `P${intervalDays}D`, windows, blackouts };
    if (spreadHours !== undefined && spreadHours * 2 <= intervalDays * 24) written.spread = `PT${spreadHours}H`;
    const r = checkPolicy(written);
    return r.ok ? r.value : null;
  })
  .filter((p): p is CompiledPolicy => p !== null);

const clocks = fc.record({
  id: fc.string({ minLength: 1, maxLength: 40 }).map((s) => `AC${s}/default`),
  firstSeenMs: fc.integer({ min: FROM, max: TO - 130 * DAY_MS }),
  sinceFirstSeen: fc.option(fc.integer({ min: 0, max: 60 * DAY_MS }), { nil: undefined }),
});

const formats = new Map<string, Intl.DateTimeFormat>();
function wallClock(ms: number, zone: string): { day: string; minute: number } {
  let f = formats.get(zone);
  if (!f) formats.set(zone, (f = new Intl.DateTimeFormat('en-US', { timeZone: zone, weekday: 'short', hour: 'numeric', minute: 'numeric', hourCycle: 'h23' })));
  const p = Object.fromEntries(f.formatToParts(ms).map((x) => [x.type, x.value]));
  return { day: String(p.weekday).toLowerCase(), minute: Number(p.hour) * 60 + Number(p.minute) };
}
const toMin = (s: string): number => Number(s.slice(0, 2)) * 60 + Number(s.slice(3));

function allowedByOracle(p: CompiledPolicy, ms: number): boolean {
  for (const b of p.source.blackouts ?? []) if (ms >= Date.parse(b.from) && ms < Date.parse(b.to)) return false;
  const ws = p.source.windows ?? [];
  if (ws.length === 0) return true;
  return ws.some((w) => {
    const local = wallClock(ms, w.timeZone);
    const ranges = Array.isArray(w.hours) ? w.hours : [w.hours];
    return (w.days as string[]).includes(local.day) && ranges.some((r) => local.minute >= toMin(r.from) && local.minute < toMin(r.to));
  });
}

describe('slot invariants (property)', () => {
  it('slot ≤ deadline and after the anchor unless late; inside a window; outside blackouts; deterministic', () => {
    fc.assert(
      fc.property(policies, clocks, clocks, (policy, c, other) => {
        const clock: CredentialClock = { id: c.id, firstSeenMs: c.firstSeenMs, lastRotatedMs: c.sinceFirstSeen === undefined ? null : c.firstSeenMs + c.sinceFirstSeen };
        const plan = planRotation(policy, clock);
        const anchor = clock.lastRotatedMs ?? clock.firstSeenMs;

        expect(allowedByOracle(policy, plan.slotMs)).toBe(true);
        if (plan.late) {
          expect(allowedIntervals(policy, anchor + 1, plan.deadlineMs)).toEqual([]);
          expect(plan.slotMs).toBeGreaterThanOrEqual(plan.deadlineMs);
        } else {
          expect(plan.slotMs).toBeGreaterThan(anchor);
          expect(plan.slotMs).toBeLessThan(plan.deadlineMs);
        }

        // Deterministic, and independent of whatever else was planned in between.
        planRotation(policy, { id: other.id, firstSeenMs: other.firstSeenMs });
        expect(planRotation(policy, { ...clock })).toEqual(plan);
      }),
      { numRuns: 300 },
    );
  });
});
