import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectOptions } from 'fastify';
import { startStack, testLogger, waitFor, type Stack } from '../helpers/stack.ts';
import { waitFinished } from '../helpers/engine.ts';
import { loadConfig } from '../../src/config.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';
import { mintToken } from '../../src/api/tokens.ts';
import { PermanentError } from '../../src/domain/errors.ts';
import { newRotationId } from '../../src/domain/rotation.ts';
import { TwilioAdmin, type TwilioKeyOps } from '../../src/twilio/admin.ts';
import { syncAccounts } from '../../src/service/accounts.ts';
import { StoreError } from '../../providers/store-error.ts';
import type { SecretStore } from '../../providers/secret-store.ts';

/**
 * Issue 12, "what may be rotated and deleted" (items 1–3): only active subaccounts of the parent
 * are rotated, refused in the API and again in the worker; orphan cleanup deletes only keys named
 * for rotations Rotator has records of; a failure that changed nothing does not hold its
 * subaccount, and an admin can abandon one that does.
 */
describe('what may be rotated and deleted', () => {
  let stack: Stack;
  let rt: Runtime;
  let twilio: TwilioAdmin;
  const operator = mintToken('ops', 'operator');
  const admin = mintToken('sec', 'admin');
  /** Subaccounts whose keys Twilio stops knowing after the subaccount check (404 on key operations). */
  const vanished = new Set<string>();
  /** Store paths whose writes (promote, discard) are refused. */
  const frozen = new Set<string>();

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 5, drainSeconds: 0.2, env: { ACCOUNT_SYNC_SECONDS: '0' } });
    await stack.seedAll();
    twilio = new TwilioAdmin({ credential: stack.cfg.twilio!, baseUrl: stack.cfg.twilioBaseUrl, timeoutMs: 5_000, gate: { acquire: async () => () => undefined } });
    const gone = (sid: string) => new PermanentError('twilio_not_found', `not found at Twilio (HTTP 404, Twilio error 20404): ${sid}`);
    const faulty: TwilioKeyOps = {
      listKeys: async (sid) => (vanished.has(sid) ? Promise.reject(gone(sid)) : twilio.listKeys(sid)),
      createKey: async (sid, name) => (vanished.has(sid) ? Promise.reject(gone(sid)) : twilio.createKey(sid, name)),
      deleteKey: async (sid, key) => (vanished.has(sid) ? Promise.reject(gone(sid)) : twilio.deleteKey(sid, key)),
      verifyKey: (sid, key, secret) => twilio.verifyKey(sid, key, secret),
      listSubaccounts: () => twilio.listSubaccounts(),
      fetchAccount: (sid) => twilio.fetchAccount(sid),
    };
    const inner = stack.store;
    const refuse = (p: string) => {
      if (frozen.has(p)) throw new StoreError('store_permission', 'writes refused for this test');
    };
    const store: SecretStore = {
      kind: inner.kind,
      readCurrent: (p) => inner.readCurrent(p),
      read: (p) => inner.read(p),
      putPending: (p, id, c) => inner.putPending(p, id, c),
      promotePending: async (p, id, sid) => (refuse(p), inner.promotePending(p, id, sid)),
      discardPending: async (p, id) => (refuse(p), inner.discardPending(p, id)),
      restorePrevious: async (p, sid) => (refuse(p), inner.restorePrevious(p, sid)),
      dropPrevious: (p, sid) => inner.dropPrevious(p, sid),
      check: () => inner.check(),
      close: async () => undefined,
    };
    rt = await startRuntime(loadConfig({ ...stack.env, API_TOKENS: `${operator.entry},${admin.entry}` }), { api: true, worker: true, log: testLogger(stack.logs), twilio: faulty, store });
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  const post = (url: string, payload: object, token = operator.token) => rt.app!.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}` }, payload } as InjectOptions);
  const get = (url: string) => rt.app!.inject({ method: 'GET', url, headers: { authorization: `Bearer ${admin.token}` } });
  const sub = (i: number) => stack.emu.subaccounts[i]!.sid;
  const parent = () => stack.emu.parent.accountSid;

  describe('item 1: only active subaccounts of the parent', () => {
    it('the API refuses the parent, an unknown SID and a suspended subaccount, naming the SID, before anything exists', async () => {
      const suspended = stack.emu.createSubaccount('Suspended customer').sid;
      stack.emu.setAccountStatus(suspended, 'suspended');
      const unknown = `AC${'5'.repeat(32)}`;
      const parentKeys = stack.emu.listKeys(parent()).length;
      const cases: Array<[string, number, string]> = [
        [parent(), 422, 'not_a_subaccount'],
        [unknown, 404, 'subaccount_not_found'],
        [suspended, 422, 'subaccount_inactive'],
      ];
      for (const [sid, status, code] of cases) {
        for (const body of [{ accountSid: sid, reason: 'try' }, { accountSid: sid, dryRun: true }]) {
          const res = await post('/v1/rotations', body);
          expect(res.statusCode, `${sid} ${JSON.stringify(body)}`).toBe(status);
          expect(res.json().error).toMatchObject({ code, message: expect.stringContaining(sid) });
        }
        expect((await rt.repo.list({ accountSid: sid, limit: 10 })).items).toEqual([]);
        expect(await rt.repo.inFlightFor(sid)).toBeUndefined();
      }
      expect(stack.emu.listKeys(parent())).toHaveLength(parentKeys);
      expect((await stack.store.read(stack.path(parent()))).current).toBeUndefined();
      // A subaccount created after the last inventory sync is looked up at Twilio (this process has the credential).
      const fresh = stack.emu.createSubaccount('New customer').sid;
      expect((await post('/v1/rotations', { accountSid: fresh, dryRun: true })).statusCode).toBe(202);
    });

    it('the worker refuses again a record created without the API: failed, nothing created, the subaccount not held', async () => {
      const suspended = stack.emu.createSubaccount('Suspended later').sid;
      stack.emu.setAccountStatus(suspended, 'suspended');
      const parentKeys = stack.emu.listKeys(parent()).map((k) => k.sid);
      for (const [sid, code] of [
        [parent(), 'not_a_subaccount'],
        [`AC${'6'.repeat(32)}`, 'subaccount_not_found'],
        [suspended, 'subaccount_inactive'],
      ] as const) {
        const started = await rt.service.start({ accountSid: sid, trigger: 'schedule', reason: 'stale inventory' });
        expect(started.started).toBe(true);
        const rec = await waitFinished(rt, started.started ? started.record.id : '');
        expect(rec.status).toBe('failed');
        expect(rec.error?.code).toBe(code);
        expect(rec.error?.message).toContain(sid);
        // Changed nothing: no undo ran, and the subaccount is free.
        expect(rec.history.map((h) => h.status)).toEqual(['created', 'finished']);
        expect(rec.history.at(-1)?.detail).toMatch(/refused before anything was changed/);
        expect(await rt.repo.inFlightFor(sid)).toBeUndefined();
        expect((await get(`/v1/rotations/${rec.id}`)).json()).toMatchObject({ status: 'failed', holdsSubaccount: false });
      }
      expect(stack.emu.listKeys(parent()).map((k) => k.sid)).toEqual(parentKeys);
      expect(stack.emu.listKeys(suspended)).toEqual([]);
      expect((await stack.store.read(stack.path(parent()))).current).toBeUndefined();
    });
  });

  describe('item 2: orphan cleanup deletes only keys Rotator provably created', () => {
    it("deletes a leftover key of an earlier rotation of this subaccount; leaves other prefixed keys in place and reports them as sprawl", async () => {
      const sid = sub(0);
      const earlier = await waitFinished(rt, (await rt.service.start({ accountSid: sid, trigger: 'api', reason: 'first' }) as { record: { id: string } }).record.id);
      expect(earlier.status).toBe('succeeded');
      const elsewhere = await waitFinished(rt, (await rt.service.start({ accountSid: sub(1), trigger: 'api', reason: 'other' }) as { record: { id: string } }).record.id);
      // A key an earlier rotation of this subaccount left (its secret lost): Rotator's, deletable.
      const leftover = stack.emu.seedKey(sid, `rotator:${earlier.id}`);
      // Keys with the prefix that Rotator cannot prove it created: another deployment's (same
      // default prefix), a person's, one named for a rotation of another subaccount.
      const otherDeployment = stack.emu.seedKey(sid, `rotator:${newRotationId()}`);
      const person = stack.emu.seedKey(sid, 'rotator:ci-build-key');
      const crossed = stack.emu.seedKey(sid, `rotator:${elsewhere.id}`);
      const before = (await rt.metrics.keySprawl.get()).values[0]?.value ?? 0;

      const rec = await waitFinished(rt, (await rt.service.start({ accountSid: sid, trigger: 'api', reason: 'second' }) as { record: { id: string } }).record.id);
      expect(rec.status).toBe('succeeded');
      const atTwilio = stack.emu.listKeys(sid).map((k) => k.sid);
      expect(atTwilio).not.toContain(leftover.sid);
      for (const k of [otherDeployment, person, crossed]) expect(atTwilio).toContain(k.sid);
      const created = rec.history.find((h) => h.step === 'create-secondary' && h.status === 'completed');
      expect(created?.detail).toMatch(/3 key\(s\) with Rotator's prefix that Rotator did not create \(sprawl\)/);
      for (const k of [otherDeployment, person, crossed]) expect(created?.detail).toContain(k.sid);
      expect(stack.logs.text()).toMatch(/did not create: left in place/);
      expect((await rt.metrics.keySprawl.get()).values[0]?.value).toBe(before + 3);
    });
  });

  describe('item 3: failures that changed nothing, and abandoning those that did', () => {
    it('a subaccount Twilio no longer knows fails the rotation without holding it, retry after retry', async () => {
      const sid = sub(2);
      vanished.add(sid);
      try {
        const id = (await rt.service.start({ accountSid: sid, trigger: 'api', reason: 'vanishing' }) as { record: { id: string } }).record.id;
        let rec = await waitFinished(rt, id);
        for (let retry = 0; retry < 2; retry++) {
          expect(rec.status).toBe('failed');
          expect(rec.error?.code).toBe('twilio_not_found');
          expect(rec.undo?.completedAt).toBeDefined();
          expect(rec.history.map((h) => h.detail ?? '').filter((d) => /undo stopped/.test(d))).toEqual([]);
          expect(await rt.repo.inFlightFor(sid)).toBeUndefined();
          const again = await post(`/v1/rotations/${id}/retry`, {});
          expect(again.statusCode).toBe(200);
          rec = await waitFor('the retried rotation to fail again', async () => {
            const r = await rt.repo.get(id);
            return r && r.status === 'failed' && r.history.length > rec.history.length ? r : undefined;
          });
        }
      } finally {
        vanished.delete(sid);
      }
    });

    it('a failure that left work half-done holds its subaccount (own 409 code) until an admin abandons it, confirming the SID', async () => {
      const sid = sub(3);
      frozen.add(stack.path(sid));
      let id: string;
      try {
        const started = await post('/v1/rotations', { accountSid: sid, reason: 'will stop half-way' });
        expect(started.statusCode).toBe(202);
        id = started.json().id;
        const stopped = await waitFinished(rt, id);
        expect(stopped.status).toBe('failed');
        expect(stopped.error?.message).toMatch(/undo stopped/);
      } finally {
        frozen.delete(stack.path(sid));
      }
      const detail = (await get(`/v1/rotations/${id}`)).json();
      expect(detail).toMatchObject({ status: 'failed', holdsSubaccount: true, abandoned: null });

      const blocked = await post('/v1/rotations', { accountSid: sid });
      expect(blocked.statusCode).toBe(409);
      expect(blocked.json()).toMatchObject({ id, error: { code: 'subaccount_held_by_failed_rotation', message: expect.stringMatching(/abandon/) } });

      expect((await post(`/v1/rotations/${id}/abandon`, { confirm: sid })).statusCode).toBe(403);
      const wrong = await post(`/v1/rotations/${id}/abandon`, { confirm: sub(0) }, admin.token);
      expect(wrong.statusCode).toBe(422);
      expect(wrong.json().error.code).toBe('confirmation_mismatch');
      expect(await rt.repo.inFlightFor(sid)).toBe(id);

      const abandoned = await post(`/v1/rotations/${id}/abandon`, { confirm: sid }, admin.token);
      expect(abandoned.statusCode).toBe(200);
      const body = abandoned.json();
      expect(body).toMatchObject({ status: 'failed', holdsSubaccount: false, abandoned: { by: 'sec', leftBehind: expect.any(Array) } });
      expect(body.abandoned.leftBehind.join(' ')).toContain(detail.newKeySid);
      expect(body.abandoned.leftBehind.join(' ')).toMatch(/pending version staged under/);
      expect(body.history.at(-1)).toMatchObject({ status: 'abandoned', detail: expect.stringMatching(/abandoned by sec/) });
      expect(await rt.repo.inFlightFor(sid)).toBeUndefined();
      expect((await post(`/v1/rotations/${id}/abandon`, { confirm: sid }, admin.token)).statusCode).toBe(409);
      expect((await post(`/v1/rotations/${id}/retry`, {})).json().error.message).toMatch(/abandoned/);
      const audit = (await get(`/v1/audit?rotationId=${id}`)).json().items as Array<{ action: string; actor: string; status?: number }>;
      expect(audit).toEqual(expect.arrayContaining([expect.objectContaining({ action: 'rotation.abandon', actor: 'sec', status: 200 })]));

      // Released: the next rotation of the subaccount runs.
      const next = await post('/v1/rotations', { accountSid: sid, reason: 'after abandon' });
      expect(next.statusCode).toBe(202);
      expect((await waitFinished(rt, next.json().id)).status).toBe('succeeded');
    });
  });

  describe('an API process without Twilio credentials', () => {
    it('admits only subaccounts the inventory sync confirmed, and says how a new one becomes known', async () => {
      const { TWILIO_ACCOUNT_SID: _a, TWILIO_AUTH_TOKEN: _b, TWILIO_BASE_URL: _c, ...env } = stack.env;
      const api = await startRuntime(loadConfig({ ...env, API_TOKENS: operator.entry }, { requireTwilio: false }), { api: true, worker: false, log: testLogger(stack.logs) });
      try {
        const start = (accountSid: string) => api.app!.inject({ method: 'POST', url: '/v1/rotations', headers: { authorization: `Bearer ${operator.token}` }, payload: { accountSid, dryRun: true } });
        const synced = stack.emu.createSubaccount('Synced').sid;
        const late = stack.emu.createSubaccount('Created after the sync').sid;
        const closed = stack.emu.createSubaccount('Closed').sid;
        stack.emu.setAccountStatus(closed, 'closed');
        // Listed by a finished rotation only (as an earlier version listed the parent): proves nothing.
        const unconfirmed = `AC${'7'.repeat(32)}`;
        await api.accounts.recordRotation(unconfirmed, `SK${'7'.repeat(32)}`, new Date().toISOString());
        await syncAccounts({ listSubaccounts: async () => (await twilio.listSubaccounts()).filter((s) => s.sid !== late) }, api.accounts);

        expect((await start(synced)).statusCode).toBe(202);
        const unknown = await start(late);
        expect(unknown.statusCode).toBe(404);
        expect(unknown.json().error).toMatchObject({ code: 'subaccount_not_found', message: expect.stringMatching(new RegExp(`${late}.*inventory.*ACCOUNT_SYNC_SECONDS`)) });
        expect((await start(unconfirmed)).statusCode).toBe(404);
        expect((await start(parent())).statusCode).toBe(404);
        const inactive = await start(closed);
        expect(inactive.statusCode).toBe(422);
        expect(inactive.json().error.code).toBe('subaccount_inactive');
      } finally {
        await api.close();
      }
    });
  });
});
