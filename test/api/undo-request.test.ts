import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFinished, expectSettled } from '../helpers/engine.ts';
import { waitFor } from '../helpers/stack.ts';
import { bearer, rotationIn, startApiHarness, type ApiHarness } from './support.ts';
import type { RotationEvent } from '../../src/state/rotations.ts';

const newSid = (): string => `AC${randomBytes(16).toString('hex')}`;

/**
 * Issue 12 item 16: an accepted cancel or rollback is visible at once — in the action's answer, the
 * detail, the list and the events — as `undoRequested: {action, at, by}`, written in the same
 * update as the check that allowed it, while status and step still say where the rotation was.
 */
describe('an accepted cancel or rollback is visible in the record', () => {
  let h: ApiHarness;
  const op = () => bearer(h.tokens.operator);

  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'warn' });
  });
  afterAll(async () => h?.close());

  for (const action of ['cancel', 'rollback'] as const) {
    it(`${action}: the answer, the detail, the list and the event say so`, async () => {
      const sid = newSid();
      const rec = await rotationIn(h.rt, sid, 'waiting', { step: 'promote' });
      const before = (await h.app.inject({ method: 'GET', url: `/v1/rotations/${rec.id}`, headers: op() })).json();
      expect(before.undoRequested).toBeNull();

      const res = await h.app.inject({ method: 'POST', url: `/v1/rotations/${rec.id}/${action}`, headers: op() });
      expect(res.statusCode).toBe(200);
      const answer = res.json();
      // Where the rotation is (the worker has not run yet), and that an undo is coming.
      expect(answer).toMatchObject({ status: 'waiting', step: 'promote', undoRequested: { action, at: expect.any(String), by: 'ci' } });
      const requested = answer.undoRequested;
      expect(requested.at).toBe(answer.history.at(-1).at);
      expect(answer.history.at(-1)).toMatchObject({ step: 'rollback', status: 'undo', detail: `${action} requested by ci` });

      const detail = (await h.app.inject({ method: 'GET', url: `/v1/rotations/${rec.id}`, headers: op() })).json();
      expect(detail.undoRequested).toEqual(requested);
      const list = (await h.app.inject({ method: 'GET', url: `/v1/rotations?accountSid=${sid}`, headers: op() })).json();
      expect(list.items).toHaveLength(1);
      expect(list.items[0].undoRequested).toEqual(requested);

      const events = (await h.rt.repo.events('0', 100_000)).map((e) => e.event).filter((e) => e.type === 'rotation' && e.id === rec.id) as RotationEvent[];
      expect(events.at(-1)).toMatchObject({ status: 'waiting', step: 'promote', undoRequested: requested, transition: { status: 'undo' } });
      expect(events.slice(0, -1).every((e) => e.undoRequested === undefined)).toBe(true);
    });
  }

  it('a refused request leaves no trace of one', async () => {
    const rec = await rotationIn(h.rt, newSid(), 'running', { step: 'delete-old' });
    const res = await h.app.inject({ method: 'POST', url: `/v1/rotations/${rec.id}/cancel`, headers: op() });
    expect(res.statusCode).toBe(409);
    expect((await h.app.inject({ method: 'GET', url: `/v1/rotations/${rec.id}`, headers: op() })).json().undoRequested).toBeNull();
  });

  it("a failure's undo is not shown as a request", async () => {
    const rec = await rotationIn(h.rt, newSid(), 'running', { step: 'operationalize', undo: { reason: 'failure' } });
    const detail = (await h.app.inject({ method: 'GET', url: `/v1/rotations/${rec.id}`, headers: op() })).json();
    expect(detail).toMatchObject({ undo: { reason: 'failure' }, undoRequested: null });
  });
});

/**
 * With a worker: cancel and rollback, asked at the same point (the promote drain), do the same
 * undo and differ only in the final status; the request stays on the record.
 */
describe('cancel and rollback run one undo', () => {
  let h: ApiHarness;

  beforeAll(async () => {
    h = await startApiHarness({ worker: true, stack: { subaccounts: 2, drainSeconds: 1.5 }, logLevel: 'warn' });
    await h.stack.seedAll();
  });
  afterAll(async () => h?.close());

  it('during the drain: the old key is current again, the new key deleted after a drain; cancelled vs rolled_back', async () => {
    const api = (method: 'GET' | 'POST', url: string, payload?: object) => h.app.inject({ method, url, headers: bearer(h.tokens.operator), ...(payload ? { payload } : {}) });
    const runs = await Promise.all(
      (['cancel', 'rollback'] as const).map(async (action, i) => {
        const sid = h.stack.emu.subaccounts[i]!.sid;
        const oldKey = (await h.stack.store.readCurrent(h.stack.path(sid)))!.apiKeySid;
        const id = (await api('POST', '/v1/rotations', { accountSid: sid })).json().id as string;
        await waitFor('the promote drain', async () => {
          const r = await h.rt.repo.get(id);
          return r?.status === 'waiting' && r.step === 'promote';
        }, 30_000, 20);
        const answer = await api('POST', `/v1/rotations/${id}/${action}`);
        expect(answer.statusCode).toBe(200);
        expect(answer.json().undoRequested).toMatchObject({ action, by: 'ci' });
        const done = await waitFinished(h.rt, id, 30_000);
        const settled = await expectSettled(h.stack, sid);
        return { action, done, detail: (await api('GET', `/v1/rotations/${id}`)).json(), settled, oldKey };
      }),
    );
    const shapes = runs.map(({ action, done, detail, settled, oldKey }) => {
      expect(done.status).toBe(action === 'cancel' ? 'cancelled' : 'rolled_back');
      expect(detail.undoRequested).toEqual({ action, at: done.undo?.requestedAt, by: 'ci' });
      expect(settled.problems).toEqual([]);
      expect(settled.currentKeySid).toBe(oldKey);
      // The undo's phases, without times, workers or the request's wording.
      return done.history.filter((e) => e.step === 'rollback').map((e) => `${e.status}:${(e.detail ?? '').replace(/SK[0-9a-f]{32}/g, 'SK…').replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, 'T').replace(/^(cancel|rollback) requested by ci$/, 'requested')}`);
    });
    expect(shapes[0]).toEqual(shapes[1]);
    expect(shapes[0]).toEqual(expect.arrayContaining([expect.stringMatching(/current again/), expect.stringMatching(/^finished:deleted new key/)]));
  });
});
