import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';

const DAY_MS = 86_400_000;

/** GET /v1/schedule (viewer) and the fleet-wide pause (admin, audited). */
describe('schedule API', () => {
  let h: ApiHarness;

  beforeAll(async () => {
    h = await startApiHarness({ env: { PLANNER_TICK_SECONDS: '30', PLANNER_MAX_STARTS_PER_TICK: '7' } });
    // Two credentials: one rotated 70 days ago (its slot ~13–20 days ahead), one 100 days ago (due, overdue).
    const [a, b] = h.stack.emu.subaccounts.map((s) => s.sid);
    for (const [sid, days] of [[a!, 70], [b!, 100]] as const) {
      const at = Date.now() - days * DAY_MS;
      await h.rt.credentials.recordFinished({ id: `seed-${sid}`, accountSid: sid, status: 'succeeded', dryRun: false, newKeySid: `SK${'0'.repeat(31)}1`, finishedAt: new Date(at).toISOString(), updatedAt: new Date(at).toISOString() });
    }
    await h.rt.planner.rebuildAll();
  }, 60_000);
  afterAll(async () => h?.close());

  const get = (url: string, token = h.tokens.viewer) => h.app.inject({ method: 'GET', url, headers: bearer(token) });
  const post = (url: string, body: unknown, token = h.tokens.admin) => h.app.inject({ method: 'POST', url, headers: bearer(token), payload: body as object });

  it("shows the planner's state and a forecast per UTC day and policy", async () => {
    const res = await get('/v1/schedule?days=30');
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({
      paused: null,
      tickSeconds: 30,
      maxStartsPerTick: 7,
      // No worker runs in this process: nothing has ticked.
      lastTick: null,
      stalled: true,
      scheduled: 2,
      dueNow: 1,
      overdue: 1,
      inFlight: 0,
      failing: { count: 0, items: [] },
      plannedAgainst: { policyVersion: '0', rebuiltAt: expect.any(String), rebuilding: false },
      forecast: { days: 30, timeZone: 'UTC' },
    });
    expect(body.forecast.items).toHaveLength(31);
    expect(body.forecast.items[0].date).toBe(new Date().toISOString().slice(0, 10));
    const counted = body.forecast.items.filter((d: { count: number }) => d.count > 0);
    expect(counted).toHaveLength(1);
    expect(counted[0]).toMatchObject({ count: 1, byPolicy: { default: 1 } });
    // The default is 14 days.
    expect((await get('/v1/schedule')).json().forecast.days).toBe(14);
  });

  it('refuses a days outside 1–90, naming it, and unknown parameters', async () => {
    for (const q of ['days=0', 'days=91', 'days=abc', 'days=1.5']) {
      const res = await get(`/v1/schedule?${q}`);
      expect(res.statusCode, q).toBe(400);
      expect(res.json().error.message, q).toMatch(/query parameter days/);
    }
    const unknown = await get('/v1/schedule?day=3');
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().error.message).toMatch(/unknown query parameter day; did you mean days\?/);
  });

  it('pause and resume: admin only, a reason required, shown by GET and recorded in the audit trail', async () => {
    expect((await post('/v1/schedule/pause', { reason: 'x' }, h.tokens.operator)).statusCode).toBe(403);
    const noReason = await post('/v1/schedule/pause', {});
    expect(noReason.statusCode).toBe(400);
    expect(noReason.json().error.message).toMatch(/reason/);

    const paused = await post('/v1/schedule/pause', { reason: 'change freeze until Monday' });
    expect(paused.statusCode).toBe(200);
    expect(paused.json()).toEqual({ paused: { at: expect.any(String), by: 'sec', reason: 'change freeze until Monday' } });
    expect((await get('/v1/schedule')).json().paused).toMatchObject({ by: 'sec', reason: 'change freeze until Monday' });
    // A tick while paused starts nothing and says so.
    const tick = await h.rt.planner.tick();
    expect(tick).toMatchObject({ paused: true, started: 0 });
    expect((await get('/v1/schedule')).json()).toMatchObject({ lastTick: { paused: true }, stalled: false, dueNow: 1 });

    const resumed = await post('/v1/schedule/resume', { reason: 'freeze over' });
    expect(resumed.json()).toEqual({ paused: null });
    expect((await get('/v1/schedule')).json().paused).toBeNull();

    const audit = await h.rt.audit.list({ limit: 20 });
    const actions = audit.items.filter((e) => e.action.startsWith('schedule.')).map((e) => [e.action, e.actor, e.status, e.detail]);
    expect(actions).toEqual([
      ['schedule.resume', 'sec', 200, expect.stringMatching(/^fleet-wide resume \(paused by sec at .*\): freeze over$/)],
      ['schedule.pause', 'sec', 200, 'fleet-wide pause: change freeze until Monday'],
      ['schedule.pause', 'sec', 400, undefined],
      ['schedule.pause', 'ci', 403, undefined],
    ]);
  });
});
