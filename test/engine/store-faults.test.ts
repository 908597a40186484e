import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, waitFor, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished, waitWaiting, describeRotation, expectSettled, PromoteHold } from '../helpers/engine.ts';
import type { Runtime } from '../../src/runtime.ts';

describe.each(['aws', 'vault'] as const)('the %s store failing mid-rotation', (kind) => {
  let stack: Stack;
  let rt: Runtime;
  const hold = new PromoteHold();

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 3, drainSeconds: 0.5, store: kind });
    await stack.seedAll();
    rt = await startEngine(stack, {}, { gates: [hold] });
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  it('an outage during the drain delays the rotation, which then finishes consistently', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    // Held in promote until the store is down: the outage must begin before promote runs, however
    // long this test takes to take the store down.
    hold.hold(sid);
    const rec = await startRotation(rt, sid);
    await waitWaiting(rt, rec.id);
    await stack.backend.setDown(true);
    hold.release(sid);
    // The drain ends while the store is down: promote and delete-old must wait for it.
    await waitFor('a retry against the dead store', async () => (await rt.repo.get(rec.id))?.lastError?.code === 'store_unavailable', 60_000, 50, () => describeRotation(rt, rec.id));
    const during = await rt.repo.get(rec.id);
    expect(during?.status).not.toBe('succeeded');
    await stack.backend.setDown(false);
    const done = await waitFinished(rt, rec.id);
    expect(done.status).toBe('succeeded');
    expect(done.history.some((h) => h.status === 'retrying')).toBe(true);
    const settled = await expectSettled(stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(done.newKeySid);
  });

  it('a store that is down before the rotation starts only delays it', async () => {
    const sid = stack.emu.subaccounts[1]!.sid;
    await stack.backend.setDown(true);
    const rec = await startRotation(rt, sid);
    await waitFor('a retry', async () => (await rt.repo.get(rec.id))?.lastError !== undefined, 60_000, 50, () => describeRotation(rt, rec.id));
    await stack.backend.setDown(false);
    const done = await waitFinished(rt, rec.id);
    expect(done.status).toBe('succeeded');
    expect((await expectSettled(stack, sid)).problems).toEqual([]);
  });

  it('a permission error fails the rotation with a readable cause and deletes the key it created', async () => {
    const sid = stack.emu.subaccounts[2]!.sid;
    const before = stack.emu.listKeys(sid).map((k) => k.sid);
    await stack.backend.denyWrites(true);
    try {
      const done = await waitFinished(rt, (await startRotation(rt, sid)).id);
      expect(done.status).toBe('failed');
      expect(done.error?.code).toBe('store_permission');
      expect(done.error?.message).toMatch(/permission|denied|not authorized|policy/i);
      // A key was created at Twilio before the write was refused, and the undo deleted it.
      expect(done.history.some((h) => h.step === 'rollback' && /deleted new key/.test(h.detail ?? ''))).toBe(true);
      expect(stack.emu.listKeys(sid).map((k) => k.sid)).toEqual(before);
      expect((await stack.store.readCurrent(stack.path(sid)))?.apiKeySid).toBe(before[0]);
    } finally {
      await stack.backend.denyWrites(false);
    }
  });

  it('a retry after a fully undone failure stages under a fresh id and succeeds (stores keep what the first attempt staged)', async () => {
    const sid = stack.emu.subaccounts[2]!.sid;
    // The new key is staged as pending, then Twilio refuses it on every verification: the
    // rotation fails in create-secondary, and its undo discards the pending and deletes the key.
    stack.emu.setFaults({ failNext: { count: 4, status: 401, match: { path: '/Messages\\.json$' } } });
    const rec = await startRotation(rt, sid);
    const failed = await waitFinished(rt, rec.id);
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('twilio_new_key_unauthorized');
    const retried = await rt.service.retry(rec.id, 'test');
    expect(retried?.ok).toBe(true);
    const done = await waitFinished(rt, rec.id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.restarts).toBe(1);
    const settled = await expectSettled(stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(done.newKeySid);
  });
});
