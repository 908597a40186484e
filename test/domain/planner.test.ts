import { describe, expect, it } from 'vitest';
import { DAY_MS, HOUR_MS, MINUTE_MS } from '../../src/domain/duration.ts';
import { compilePolicy, type Policy } from '../../src/domain/policy.ts';
import {
  allowedIntervals,
  dueRotations,
  forecast,
  isAllowedAt,
  nextAllowedAt,
  planRotation,
  rotationDeadline,
  spreadFraction,
  startTime,
  type Plan,
} from '../../src/domain/planner.ts';
import { localDate, zoneOffsets } from '../../src/domain/zone.ts';

const NY = 'America/New_York';
const iso = (ms: number): string => new Date(ms).toISOString();
const ids = (n: number, prefix = 'AC'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(32, '0')}/default`);
const policy = (p: Partial<Policy>): ReturnType<typeof compilePolicy> => compilePolicy({ name: 'p', interval: 'P90D', ...p });

const sundayNight = policy({ interval: 'P30D', windows: [{ days: ['sun'], hours: { from: '01:00', to: '04:00' }, timeZone: NY }] });
const officeHours = policy({ windows: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: { from: '09:00', to: '17:00' }, timeZone: NY }] });

describe('time zones', () => {
  it('finds New York’s 2026 DST changes from Intl', () => {
    const segs = zoneOffsets(NY).segments(Date.UTC(2026, 0, 1), Date.UTC(2027, 0, 1));
    expect(segs.map((s) => [iso(s.start), s.offsetMs / HOUR_MS])).toEqual([
      ['2026-01-01T00:00:00.000Z', -5],
      ['2026-03-08T07:00:00.000Z', -4],
      ['2026-11-01T06:00:00.000Z', -5],
    ]);
    // Half-hour DST (Lord Howe) and a 12:45 offset (Chatham) work the same way.
    expect(zoneOffsets('Australia/Lord_Howe').offsetAt(Date.UTC(2026, 6, 1)) / MINUTE_MS).toBe(630);
    expect(zoneOffsets('Pacific/Chatham').offsetAt(Date.UTC(2026, 0, 1)) / MINUTE_MS).toBe(825);
  });

  it('lists local dates without skipping the short day', () => {
    expect(localDate(Date.UTC(2026, 2, 8, 4, 59), NY)).toBe('2026-03-07');
    expect(localDate(Date.UTC(2026, 2, 8, 5), NY)).toBe('2026-03-08');
  });
});

describe('allowed time', () => {
  it('lays a window out in its zone across DST: 2 hours on the spring-forward night, 4 on the fall-back one', () => {
    const around = (y: number, m: number, d: number): string[][] => allowedIntervals(sundayNight, Date.UTC(y, m, d - 1), Date.UTC(y, m, d + 1)).map((x) => x.map(iso));
    expect(around(2026, 2, 8)).toEqual([['2026-03-08T06:00:00.000Z', '2026-03-08T08:00:00.000Z']]);
    expect(around(2026, 10, 1)).toEqual([['2026-11-01T05:00:00.000Z', '2026-11-01T09:00:00.000Z']]);
    expect(around(2026, 2, 1)).toEqual([['2026-03-01T06:00:00.000Z', '2026-03-01T09:00:00.000Z']]);
    // 09:00 New York is 14:00Z in winter, 13:00Z in summer.
    expect(allowedIntervals(officeHours, Date.UTC(2026, 2, 6), Date.UTC(2026, 2, 10)).map((x) => x.map(iso))).toEqual([
      ['2026-03-06T14:00:00.000Z', '2026-03-06T22:00:00.000Z'],
      ['2026-03-09T13:00:00.000Z', '2026-03-09T21:00:00.000Z'],
    ]);
  });

  it('cuts blackouts out and answers isAllowedAt and nextAllowedAt consistently', () => {
    const p = policy({ ...officeHours.source, blackouts: [{ from: '2026-03-09T12:00:00-04:00', to: '2026-03-11T00:00:00Z' }] });
    expect(allowedIntervals(p, Date.UTC(2026, 2, 9), Date.UTC(2026, 2, 12)).map((x) => x.map(iso))).toEqual([
      ['2026-03-09T13:00:00.000Z', '2026-03-09T16:00:00.000Z'],
      ['2026-03-11T13:00:00.000Z', '2026-03-11T21:00:00.000Z'],
    ]);
    expect(isAllowedAt(p, Date.UTC(2026, 2, 9, 15, 59))).toBe(true);
    expect(isAllowedAt(p, Date.UTC(2026, 2, 9, 16))).toBe(false);
    expect(iso(nextAllowedAt(p, Date.UTC(2026, 2, 9, 16)))).toBe('2026-03-11T13:00:00.000Z');
    expect(nextAllowedAt(p, Date.UTC(2026, 2, 9, 14))).toBe(Date.UTC(2026, 2, 9, 14));
  });
});

describe('deadline', () => {
  const p = policy({ interval: 'P30D', maxKeyAge: 'P45D' });
  const T = Date.UTC(2026, 0, 1);

  it('counts the interval from the last rotation, or from first sight', () => {
    expect(rotationDeadline(p, { id: 'a', firstSeenMs: T })).toEqual({ deadlineMs: T + 30 * DAY_MS, anchorMs: T, by: 'interval' });
    expect(rotationDeadline(p, { id: 'a', firstSeenMs: T, lastRotatedMs: T + 5 * DAY_MS }).deadlineMs).toBe(T + 35 * DAY_MS);
  });

  it('lets the maximum key age win for a key created long before Rotator saw it', () => {
    expect(rotationDeadline(p, { id: 'a', firstSeenMs: T, keyCreatedMs: T - 40 * DAY_MS })).toEqual({ deadlineMs: T + 5 * DAY_MS, anchorMs: T, by: 'max key age' });
  });
});

describe('slot', () => {
  const T = Date.UTC(2026, 0, 1);

  it('is the same for the same credential, different across credentials', () => {
    const a = planRotation(officeHours, { id: 'AC1/default', firstSeenMs: T });
    expect(planRotation(officeHours, { id: 'AC1/default', firstSeenMs: T })).toEqual(a);
    expect(planRotation(officeHours, { id: 'AC1/billing', firstSeenMs: T }).slotMs).not.toBe(a.slotMs);
    expect(spreadFraction('AC1/default')).toBe(spreadFraction('AC1/default'));
  });

  it('spreads credentials due together over the last week of window time before the deadline, evenly per hour', () => {
    const plans = ids(8000).map((id) => planRotation(officeHours, { id, firstSeenMs: T }));
    const deadline = T + 90 * DAY_MS; // Wed 2026-04-01 00:00Z = Tue 20:00 New York
    expect(plans.every((p) => !p.late && p.slotMs < deadline && isAllowedAt(officeHours, p.slotMs))).toBe(true);
    const hours = new Map<number, number>();
    for (const p of plans) hours.set(Math.floor(p.slotMs / HOUR_MS), (hours.get(Math.floor(p.slotMs / HOUR_MS)) ?? 0) + 1);
    expect(hours.size).toBe(40); // Wed 25 March 09:00 … Tue 31 March 17:00, five 8-hour days
    expect(iso(Math.min(...plans.map((p) => p.slotMs)))).toMatch(/^2026-03-25T13:/);
    const counts = [...hours.values()];
    expect(Math.max(...counts) / (plans.length / 40)).toBeLessThan(1.2);
    // No pile-up at the window's opening: the five 09:00–09:01 minutes carry about five minutes'
    // share (~17), where "move to the next window" would put every slot that fell outside one (~¾).
    const openingMinute = plans.filter((p) => new Date(p.slotMs).getUTCMinutes() === 0 && new Date(p.slotMs).getUTCHours() === 13).length;
    expect(openingMinute).toBeLessThan(2 * 5 * (plans.length / (40 * 60)));
  });

  it('without windows, lies in the spread before the deadline', () => {
    const p = policy({ interval: 'P30D' });
    for (const id of ids(200)) {
      const plan = planRotation(p, { id, firstSeenMs: T });
      expect(plan.slotMs).toBeGreaterThanOrEqual(T + 23 * DAY_MS);
      expect(plan.slotMs).toBeLessThan(T + 30 * DAY_MS);
    }
  });

  it('moves earlier, never later, when a blackout covers the days before the deadline', () => {
    // Deadline Wed 2026-04-01 00:00Z; the whole last week before it is frozen.
    const frozen = policy({ ...officeHours.source, blackouts: [{ from: '2026-03-23T00:00:00Z', to: '2026-04-15T00:00:00Z' }] });
    const plans = ids(500).map((id) => planRotation(frozen, { id, firstSeenMs: T }));
    for (const p of plans) {
      expect(p.late).toBe(false);
      expect(p.slotMs).toBeLessThan(Date.UTC(2026, 2, 23));
      expect(isAllowedAt(frozen, p.slotMs)).toBe(true);
    }
    // Still a week of window time (40 hours), just the week before the freeze.
    expect(new Set(plans.map((p) => Math.floor(p.slotMs / HOUR_MS))).size).toBe(40);
  });

  it('is late only when no allowed time lies between the last rotation and the deadline', () => {
    const p = policy({ interval: 'P30D', blackouts: [{ from: '2025-12-31T00:00:00Z', to: '2026-02-15T00:00:00Z' }] });
    const plan = planRotation(p, { id: 'AC1/default', firstSeenMs: T });
    expect(plan.late).toBe(true);
    expect(iso(plan.slotMs)).toBe('2026-02-15T00:00:00.000Z');
    // A key found older than its maximum age is due at once.
    const aged = planRotation(policy({ interval: 'P30D', maxKeyAge: 'P60D' }), { id: 'AC1/default', firstSeenMs: T, keyCreatedMs: T - 90 * DAY_MS });
    expect(aged.late).toBe(true);
    expect(aged.deadlineBy).toBe('max key age');
    expect(aged.slotMs).toBe(T + 1); // due at once: the first instant after Rotator first saw it
  });

  it('uses both 01:00s of the fall-back night, inside the window by the local clock', () => {
    // Deadline Sun 2026-11-01 12:00Z; a two-week spread of this 3-hour window wants 6 hours: the
    // 4 of the fall-back night, then the last 2 of the Sunday before.
    const p = policy({ ...sundayNight.source, spread: 'P14D' });
    const lastRotatedMs = Date.UTC(2026, 10, 1, 12) - 30 * DAY_MS;
    const slots = ids(600).map((id) => planRotation(p, { id, firstSeenMs: 0, lastRotatedMs }).slotMs);
    const firstOne = slots.filter((t) => t >= Date.UTC(2026, 10, 1, 5) && t < Date.UTC(2026, 10, 1, 6)); // 01:00–02:00 EDT
    const secondOne = slots.filter((t) => t >= Date.UTC(2026, 10, 1, 6) && t < Date.UTC(2026, 10, 1, 7)); // 01:00–02:00 EST
    const before = slots.filter((t) => t < Date.UTC(2026, 10, 1));
    expect(firstOne.length).toBeGreaterThan(50);
    expect(secondOne.length).toBeGreaterThan(50);
    expect(before.length).toBeGreaterThan(100);
    expect(before.every((t) => t >= Date.UTC(2026, 9, 25, 6) && t < Date.UTC(2026, 9, 25, 8))).toBe(true); // 02:00–04:00 EDT, 25 Oct
    expect(slots.every((t) => new Intl.DateTimeFormat('en-US', { timeZone: NY, hour: 'numeric', hourCycle: 'h23' }).format(t).match(/^0?[123]$/))).toBe(true);
  });

  it('shares a window narrower than the spread among everyone due, still before the deadline', () => {
    // One hour a week (Monday 09:00) and a deadline on a Wednesday: the week's single hour takes them all.
    const narrow = policy({ windows: [{ days: ['mon'], hours: { from: '09:00', to: '10:00' }, timeZone: NY }] });
    const plans = ids(600).map((id) => planRotation(narrow, { id, firstSeenMs: T }));
    expect(new Set(plans.map((p) => iso(p.slotMs).slice(0, 13)))).toEqual(new Set(['2026-03-30T13']));
    const tenMinutes = new Map<number, number>();
    for (const p of plans) tenMinutes.set(Math.floor(p.slotMs / (10 * MINUTE_MS)), (tenMinutes.get(Math.floor(p.slotMs / (10 * MINUTE_MS))) ?? 0) + 1);
    expect(tenMinutes.size).toBe(6);
  });
});

describe('due rotations, catch-up and forecast', () => {
  const now = Date.UTC(2026, 5, 1, 12);
  const plan = (id: string, slotMs: number, deadlineMs: number, auto = true, policyName = 'default'): Plan => ({ credentialId: id, policy: policyName, deadlineMs, deadlineBy: 'interval', slotMs, late: false, auto });

  it('lists what is due, most overdue first, each once; ties by slot then id', () => {
    const plans = [
      plan('AC3/a', now - 3 * DAY_MS, now + DAY_MS),
      plan('AC1/a', now - 1 * DAY_MS, now - 2 * DAY_MS),
      plan('AC2/a', now - 9 * DAY_MS, now - 5 * DAY_MS),
      plan('AC5/b', now - 2 * DAY_MS, now - 2 * DAY_MS),
      plan('AC4/a', now - 2 * DAY_MS, now - 2 * DAY_MS),
      plan('AC6/a', now + HOUR_MS, now + 2 * DAY_MS),
      plan('AC7/a', now - DAY_MS, now - 7 * DAY_MS, false),
    ];
    const due = dueRotations(plans, now);
    expect(due.map((d) => d.plan.credentialId)).toEqual(['AC2/a', 'AC4/a', 'AC5/b', 'AC1/a', 'AC3/a']);
    expect(due.map((d) => d.overdueMs / DAY_MS)).toEqual([5, 2, 2, 2, 0]);
  });

  it('starts a missed slot at the next allowed instant, not outside the window', () => {
    const sat = Date.UTC(2026, 5, 6, 12); // Saturday
    expect(iso(startTime(officeHours, { slotMs: sat - DAY_MS }, sat))).toBe('2026-06-08T13:00:00.000Z');
    expect(startTime(officeHours, { slotMs: sat + DAY_MS }, sat)).toBe(sat + DAY_MS);
    const wed = Date.UTC(2026, 5, 3, 15);
    expect(startTime(officeHours, { slotMs: wed - DAY_MS }, wed)).toBe(wed);
  });

  it('forecasts per local day, listing quiet days and the short DST day', () => {
    const from = Date.UTC(2026, 2, 6, 12);
    const plans = [
      plan('AC1/a', Date.UTC(2026, 2, 9, 14), Date.UTC(2026, 2, 10)),
      plan('AC2/a', Date.UTC(2026, 2, 9, 3), Date.UTC(2026, 2, 10), true, 'hipaa'), // 23:00 on the 8th in New York
      plan('AC3/a', Date.UTC(2026, 2, 1), Date.UTC(2026, 2, 5)),
      plan('AC4/a', Date.UTC(2026, 2, 6), Date.UTC(2026, 2, 20)),
      plan('AC5/a', Date.UTC(2026, 4, 1), Date.UTC(2026, 4, 5)),
      plan('AC6/a', Date.UTC(2026, 2, 9, 15), Date.UTC(2026, 2, 10), false),
    ];
    const f = forecast(plans, from, 5, NY);
    expect([f.dueNow, f.overdue, f.late]).toEqual([2, 1, 0]);
    expect(f.days.map((d) => [d.date, d.count])).toEqual([
      ['2026-03-06', 0],
      ['2026-03-07', 0],
      ['2026-03-08', 1],
      ['2026-03-09', 1],
      ['2026-03-10', 0],
      ['2026-03-11', 0],
    ]);
    expect(f.days[2]?.byPolicy).toEqual({ hipaa: 1 });
  });
});
