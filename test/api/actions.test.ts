import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RotationRecord, RotationStatus, Step } from '../../src/domain/rotation.ts';
import { dumpRedis } from '../helpers/leaks.ts';
import { bearer, rotationIn, startApiHarness, type ApiHarness } from './support.ts';


describe('actions, their state rules, and Idempotency-Key', () => {
  let h: ApiHarness;
  const op = () => bearer(h.tokens.operator);
  // A real subaccount of the parent: POST /v1/rotations refuses any other account.
  const newSid = (): string => h.stack.emu.createSubaccount('actions test').sid;

  beforeAll(async () => {
    // No worker: records stay in the state each test puts them in.
    h = await startApiHarness({ logLevel: 'warn' });
  });
  afterAll(async () => h?.close());

  const act = (id: string, action: 'cancel' | 'rollback' | 'retry') => h.app.inject({ method: 'POST', url: `/v1/rotations/${id}/${action}`, headers: op() });
  const completedUndo = () => ({ reason: 'failure' as const, drain: false, completedAt: new Date().toISOString() });

  type Case = { state: string; status: RotationStatus; step?: Step; undo?: RotationRecord['undo']; cancel: RegExp | 200; rollback: RegExp | 200; retry: RegExp | 200 };
  const cases: Case[] = [
    { state: 'pending', status: 'pending', cancel: 200, rollback: 200, retry: /only a failed rotation can be retried; this one is pending/ },
    { state: 'running operationalize', status: 'running', step: 'operationalize', cancel: 200, rollback: 200, retry: /this one is running/ },
    { state: 'waiting in promote (drain)', status: 'waiting', step: 'promote', cancel: 200, rollback: 200, retry: /this one is waiting/ },
    { state: 'running delete-old', status: 'running', step: 'delete-old', cancel: /reached delete-old.*can no longer be cancelled/, rollback: /can no longer be rolled back/, retry: /this one is running/ },
    { state: 'being undone', status: 'running', step: 'operationalize', undo: { reason: 'cancel' }, cancel: /already being undone \(cancel\)/, rollback: /already being undone/, retry: /this one is running/ },
    { state: 'succeeded', status: 'succeeded', step: 'done', cancel: /already succeeded/, rollback: /already succeeded/, retry: /this one is succeeded/ },
    { state: 'cancelled', status: 'cancelled', cancel: /already cancelled/, rollback: /already cancelled/, retry: /this one is cancelled/ },
    { state: 'rolled back', status: 'rolled_back', cancel: /already rolled_back/, rollback: /already rolled_back/, retry: /this one is rolled_back/ },
    { state: 'failed, undone', status: 'failed', undo: { reason: 'failure', completedAt: new Date().toISOString() }, cancel: /already failed/, rollback: /already failed/, retry: 200 },
    { state: 'failed, out of attempts', status: 'failed', step: 'promote', cancel: /already failed/, rollback: /already failed/, retry: 200 },
  ];

  for (const c of cases) {
    for (const action of ['cancel', 'rollback', 'retry'] as const) {
      const want = c[action];
      it(`${action} of a rotation that is ${c.state} → ${want === 200 ? '200' : '409'}`, async () => {
        const rec = await rotationIn(h.rt, newSid(), c.status, { step: c.step, undo: c.undo });
        const res = await act(rec.id, action);
        const after = await h.rt.repo.get(rec.id);
        if (want === 200) {
          expect(res.statusCode).toBe(200);
          expect(res.json()).toMatchObject({ id: rec.id, status: action === 'retry' ? 'pending' : c.status });
          if (action !== 'retry') expect(after?.undo?.reason).toBe(action);
        } else {
          expect(res.statusCode).toBe(409);
          expect(res.json()).toMatchObject({ id: rec.id, error: { code: 'action_not_allowed', message: expect.stringMatching(want) } });
          expect(after?.rev).toBe(rec.rev);
        }
      });
    }
  }

  it('retry of a fully undone failure starts afresh from create-secondary, takes the lock and enqueues the job', async () => {
    const sid = newSid();
    const rec = await rotationIn(h.rt, sid, 'failed', { step: 'promote', newKeySid: `SK${'1'.repeat(32)}`, undo: completedUndo(), error: { code: 'twilio_admin_unauthorized', message: 'refused' } });
    expect(await h.rt.repo.inFlightFor(sid)).toBeUndefined();
    const res = await act(rec.id, 'retry');
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ status: 'pending', step: 'create-secondary', newKeySid: null, oldKeySid: null, undo: null, attempts: 0, finishedAt: null });
    expect(body.error).toBeUndefined();
    expect(body.history.at(-1)).toMatchObject({ step: 'create-secondary', status: 'retrying', detail: expect.stringMatching(/by ci: starting again from create-secondary/) });
    expect(await h.rt.repo.inFlightFor(sid)).toBe(rec.id);
    const job = await h.rt.queue.getJob(rec.id);
    expect(await job?.getState()).toBe('waiting');
    // Now in flight: a second retry is refused, and so is a new rotation of the account.
    expect((await act(rec.id, 'retry')).statusCode).toBe(409);
    const start = await h.app.inject({ method: 'POST', url: '/v1/rotations', headers: op(), payload: { accountSid: sid } });
    expect(start.statusCode).toBe(409);
    expect(start.json().id).toBe(rec.id);
  });

  it('retry after transient errors ran out resumes the step it was in; an interrupted undo is finished first', async () => {
    const stuck = await rotationIn(h.rt, newSid(), 'failed', { step: 'promote', newKeySid: `SK${'2'.repeat(32)}`, error: { code: 'twilio_unavailable', message: 'gave up' } });
    const resumed = (await act(stuck.id, 'retry')).json();
    expect(resumed).toMatchObject({ status: 'pending', step: 'promote', newKeySid: `SK${'2'.repeat(32)}` });
    expect(resumed.history.at(-1).detail).toMatch(/resuming promote/);

    const halfUndone = await rotationIn(h.rt, newSid(), 'failed', { step: 'operationalize', undo: { reason: 'failure', drain: true }, error: { code: 'store_permission', message: 'undo stopped' } });
    const finishing = (await act(halfUndone.id, 'retry')).json();
    expect(finishing).toMatchObject({ status: 'pending', step: 'operationalize', undo: { reason: 'failure' } });
    expect(finishing.history.at(-1)).toMatchObject({ step: 'rollback', detail: expect.stringMatching(/finishing the interrupted undo/) });
  });

  it('retry is refused (409 with the other id) while another rotation of the account is in flight', async () => {
    const sid = newSid();
    const failed = await rotationIn(h.rt, sid, 'failed', { undo: completedUndo() });
    const other = (await h.app.inject({ method: 'POST', url: '/v1/rotations', headers: op(), payload: { accountSid: sid } })).json();
    const res = await act(failed.id, 'retry');
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ id: other.id, error: { code: 'rotation_in_flight', message: expect.stringMatching(new RegExp(`rotation ${other.id} is in flight`)) } });
    expect((await h.rt.repo.get(failed.id))?.status).toBe('failed');
    // Once the other one is over, the retry goes through.
    await h.rt.repo.update(other.id, (r) => ({ ...r, status: 'cancelled', finishedAt: new Date().toISOString() }));
    expect((await act(failed.id, 'retry')).statusCode).toBe(200);
    expect(await h.rt.repo.inFlightFor(sid)).toBe(failed.id);
  });

  it('a retry racing a new rotation of the same account: exactly one of them wins the lock', async () => {
    for (let round = 0; round < 10; round++) {
      const sid = newSid();
      const failed = await rotationIn(h.rt, sid, 'failed', { undo: completedUndo() });
      const [retry, start, retry2] = await Promise.all([
        act(failed.id, 'retry'),
        h.app.inject({ method: 'POST', url: '/v1/rotations', headers: op(), payload: { accountSid: sid } }),
        act(failed.id, 'retry'),
      ]);
      const winners = [retry.statusCode === 200, start.statusCode === 202, retry2.statusCode === 200].filter(Boolean);
      expect(winners, `round ${round}: ${retry.statusCode}/${start.statusCode}/${retry2.statusCode}`).toHaveLength(1);
      const holder = await h.rt.repo.inFlightFor(sid);
      expect(holder).toBe(start.statusCode === 202 ? start.json().id : failed.id);
    }
  });

  describe('Idempotency-Key on POST /v1/rotations', () => {
    const start = (key: string | undefined, body: object, token = h.tokens.operator) =>
      h.app.inject({ method: 'POST', url: '/v1/rotations', headers: { ...bearer(token), ...(key !== undefined ? { 'idempotency-key': key } : {}) }, payload: body });

    it('same key and body: the same rotation and status, once', async () => {
      const sid = newSid();
      const key = `deploy-${randomBytes(6).toString('hex')}`;
      const first = await start(key, { accountSid: sid, reason: 'leak' });
      const again = await start(key, { reason: 'leak', accountSid: sid });
      expect(first.statusCode).toBe(202);
      expect(again.statusCode).toBe(202);
      expect(again.json()).toEqual(first.json());
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.headers.location).toBe(first.headers.location);
      expect((await h.rt.repo.list({ accountSid: sid, limit: 10 })).items).toHaveLength(1);
    });

    it('same key, different body: 422 saying so, nothing started', async () => {
      const key = `k-${randomBytes(6).toString('hex')}`;
      const sid = newSid();
      expect((await start(key, { accountSid: sid })).statusCode).toBe(202);
      const other = newSid();
      const res = await start(key, { accountSid: other });
      expect(res.statusCode).toBe(422);
      expect(res.json().error).toMatchObject({ code: 'idempotency_key_reused', message: expect.stringMatching(/different request body/) });
      expect(await h.rt.repo.inFlightFor(other)).toBeUndefined();
      expect((await start(key, { accountSid: sid, dryRun: true })).statusCode).toBe(422);
    });

    it('a 409 (rotation in flight) is repeated as a 409 with the same id', async () => {
      const sid = newSid();
      const running = (await start(undefined, { accountSid: sid })).json();
      const key = 'conflict-key';
      const a = await start(key, { accountSid: sid });
      const b = await start(key, { accountSid: sid });
      expect([a.statusCode, b.statusCode]).toEqual([409, 409]);
      expect(a.json().id).toBe(running.id);
      expect(b.json()).toMatchObject({ id: running.id, error: { code: 'rotation_in_flight' } });
      expect(b.json().error.requestId).not.toBe(a.json().error.requestId);
    });

    it('keys are per principal: another token with the same key is a new request', async () => {
      const key = `shared-${randomBytes(4).toString('hex')}`;
      const mine = await start(key, { accountSid: newSid() }, h.tokens.operator);
      const theirs = await start(key, { accountSid: newSid() }, h.tokens.admin);
      expect([mine.statusCode, theirs.statusCode]).toEqual([202, 202]);
      expect(theirs.json().id).not.toBe(mine.json().id);
    });

    it('concurrent repeats of one key start one rotation', async () => {
      const sid = newSid();
      const key = `burst-${randomBytes(4).toString('hex')}`;
      const answers = await Promise.all(Array.from({ length: 8 }, () => start(key, { accountSid: sid })));
      const ids = new Set(answers.filter((r) => r.statusCode === 202).map((r) => r.json().id));
      expect(ids.size).toBe(1);
      for (const r of answers) {
        expect([202, 409]).toContain(r.statusCode);
        if (r.statusCode === 409) expect(r.json().error.code).toBe('idempotency_in_progress');
      }
      expect((await h.rt.repo.list({ accountSid: sid, limit: 10 })).items).toHaveLength(1);
    });

    it('stores only a hash of the key, for 24 hours', async () => {
      const key = `distinctive-idempotency-key-${randomBytes(8).toString('hex')}`;
      expect((await start(key, { accountSid: newSid() })).statusCode).toBe(202);
      const dump = await dumpRedis(h.rt.redisUrl);
      expect(dump.some((v) => v.includes(key))).toBe(false);
      const keys = await h.rt.redis.keys(`${h.stack.cfg.redisPrefix}:idem:ci:*`);
      expect(keys.length).toBeGreaterThan(0);
      const ttls = await Promise.all(keys.map((k) => h.rt.redis.ttl(k)));
      for (const ttl of ttls) expect(ttl).toBeGreaterThan(86_000);
    });

    it('refuses a malformed key with 400', async () => {
      for (const bad of ['', 'x'.repeat(256), 'naïve-key', 'tab\there']) {
        const res = await start(bad, { accountSid: newSid() });
        expect(res.statusCode, JSON.stringify(bad)).toBe(400);
        expect(res.json().error).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/idempotency-key/) });
      }
      expect((await start('x'.repeat(255), { accountSid: newSid() })).statusCode).toBe(202);
    });
  });
});
