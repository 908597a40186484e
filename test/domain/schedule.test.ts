import { describe, expect, it } from 'vitest';
import { compilePolicy } from '../../src/domain/policy.ts';
import { planRotation } from '../../src/domain/planner.ts';
import { forecastRanges, plannerStalled, scheduleOf, type SchedulingSubject } from '../../src/domain/schedule.ts';
import { DAY_MS } from '../../src/domain/duration.ts';

const T = Date.parse('2026-06-10T12:00:00Z');
const HOUR = 3_600_000;
const policy = compilePolicy({ name: 'default', interval: 'P90D' });
const subject = (over: Partial<SchedulingSubject> = {}): SchedulingSubject => ({
  id: 'AC00000000000000000000000000000001/default',
  policy,
  paused: null,
  subaccountStatus: 'active',
  firstSeenMs: T - 200 * DAY_MS,
  lastRotatedMs: T - 30 * DAY_MS,
  keyCreatedMs: null,
  currentKeySid: 'SK1',
  lastRotation: { id: 'r1', atMs: T - 30 * DAY_MS, outcome: 'succeeded' },
  ...over,
});
const opts = { retryAfterFailureMs: HOUR };

describe('the planner decision for one credential', () => {
  it('is its slot: the same for the same credential, whoever asks', () => {
    const s = scheduleOf(subject(), opts);
    const plan = planRotation(policy, { id: subject().id, firstSeenMs: T - 200 * DAY_MS, lastRotatedMs: T - 30 * DAY_MS });
    expect(s).toEqual({ scheduled: true, atMs: plan.slotMs, plan, why: 'slot' });
    expect(scheduleOf(subject(), opts)).toEqual(s);
  });

  it('leaves alone what is excluded, manual only, paused, or in a subaccount that is not active', () => {
    expect(scheduleOf(subject({ policy: compilePolicy({ name: 'x', interval: 'P90D', exclude: true }) }), opts)).toEqual({ scheduled: false, why: 'excluded' });
    expect(scheduleOf(subject({ policy: compilePolicy({ name: 'm', interval: 'P90D', autoRotate: false }) }), opts)).toEqual({ scheduled: false, why: 'manual only' });
    expect(scheduleOf(subject({ paused: 'account' }), opts)).toEqual({ scheduled: false, why: 'paused' });
    expect(scheduleOf(subject({ subaccountStatus: 'closed' }), opts)).toEqual({ scheduled: false, why: 'subaccount not active' });
  });

  it('bootstraps a credential with no key that was never rotated: due from when it was first seen', () => {
    const s = scheduleOf(subject({ currentKeySid: null, lastRotatedMs: null, lastRotation: null, firstSeenMs: T - 5_000 }), opts);
    expect(s).toMatchObject({ scheduled: true, atMs: T - 5_000, why: 'bootstrap' });
    // A bootstrap that failed is retried after the back-off, not put 90 days away.
    const failed = scheduleOf(subject({ currentKeySid: null, lastRotatedMs: null, lastRotation: { id: 'b1', atMs: T, outcome: 'failed' }, firstSeenMs: T - 5_000 }), opts);
    expect(failed).toMatchObject({ scheduled: true, atMs: T + HOUR, why: 'retry after failure', failure: { rotationId: 'b1', retryAtMs: T + HOUR } });
  });

  it('holds back a credential whose last rotation failed (or was cancelled) until the back-off has passed, when that is later than its slot', () => {
    const overdue = { lastRotatedMs: T - 100 * DAY_MS };
    const s = scheduleOf(subject({ ...overdue, lastRotation: { id: 'r2', atMs: T, outcome: 'failed' } }), opts);
    expect(s).toMatchObject({ atMs: T + HOUR, why: 'retry after failure', failure: { outcome: 'failed' } });
    expect(scheduleOf(subject({ ...overdue, lastRotation: { id: 'r2', atMs: T, outcome: 'cancelled' } }), opts)).toMatchObject({ atMs: T + HOUR });
    // A failure long before the slot changes nothing.
    expect(scheduleOf(subject({ lastRotation: { id: 'r2', atMs: T - 20 * DAY_MS, outcome: 'failed' } }), opts)).toMatchObject({ why: 'slot' });
    // A success after the failure ends the back-off.
    expect(scheduleOf(subject({ lastRotatedMs: T, lastRotation: { id: 'r3', atMs: T, outcome: 'succeeded' } }), opts)).toMatchObject({ why: 'slot' });
  });

  it('forecasts UTC days from just after now, every date listed', () => {
    const r = forecastRanges(T, 2);
    expect(r.map((x) => x.date)).toEqual(['2026-06-10', '2026-06-11', '2026-06-12']);
    expect(r[0]!.fromMs).toBe(T + 1);
    expect(r[1]).toEqual({ date: '2026-06-11', fromMs: Date.parse('2026-06-11T00:00:00Z'), toMs: Date.parse('2026-06-12T00:00:00Z') });
    expect(r[2]!.toMs).toBe(T + 2 * DAY_MS + 1);
    expect(forecastRanges(Date.parse('2026-06-10T00:00:00Z') - 1, 1).map((x) => x.date)).toEqual(['2026-06-10']);
  });

  it('calls the planner stalled after three intervals without a tick', () => {
    expect(plannerStalled(null, 60_000, T)).toBe(true);
    expect(plannerStalled(T - 180_000, 60_000, T)).toBe(false);
    expect(plannerStalled(T - 180_001, 60_000, T)).toBe(true);
  });
});
