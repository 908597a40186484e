import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, waitFor, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished, waitWaiting, expectSettled, PromoteHold } from '../helpers/engine.ts';
import { SimulatedConsumer } from '../helpers/consumer.ts';
import type { Runtime } from '../../src/runtime.ts';

describe('undo: cancel, rollback and failure before delete-old', () => {
  let stack: Stack;
  let rt: Runtime;
  // Each test acts on a rotation that waits in promote: held there until it has, so the action
  // never races the end of the 0.6 s drain.
  const hold = new PromoteHold();

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 3, drainSeconds: 0.6 });
    await stack.seedAll();
    rt = await startEngine(stack, {}, { gates: [hold] });
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  it('a cancel during the drain restores the old key, drains the new one, then deletes it — no consumer sees a 401', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    const oldKey = (await stack.store.readCurrent(stack.path(sid)))!.apiKeySid;
    const consumers = [0, 1, 2].map(() => new SimulatedConsumer({ store: stack.store, pathOf: stack.path, accounts: [sid], refreshMs: 300, baseUrl: stack.emu.url }));
    consumers.forEach((c) => c.start());
    hold.hold(sid);
    const rec = await startRotation(rt, sid);
    const waiting = await waitWaiting(rt, rec.id);
    // Every consumer picks up the new key before the cancel: they all hold it when the undo starts.
    await waitFor('every consumer to use the new key', async () => consumers.every((c) => c.stats.keysUsed.has(waiting.newKeySid!)));
    const verdict = await rt.service.undo(rec.id, 'cancel', 'test');
    hold.release(sid);
    expect(verdict?.ok).toBe(true);
    const done = await waitFinished(rt, rec.id);
    const stats = await Promise.all(consumers.map((c) => c.stop()));

    expect(done.status).toBe('cancelled');
    expect(stats.flatMap((s) => s.failures)).toEqual([]);
    expect(stats.every((s) => s.keysUsed.has(done.newKeySid!))).toBe(true);
    const deleted = done.history.find((h) => h.step === 'rollback' && h.status === 'finished')!;
    const restored = done.history.find((h) => h.step === 'rollback' && h.detail?.includes('current again'))!;
    expect(Date.parse(deleted.at) - Date.parse(restored.at)).toBeGreaterThanOrEqual(600);
    const settled = await expectSettled(stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(oldKey);
  });

  it('a rollback requested at once leaves the old key current and no new key', async () => {
    const sid = stack.emu.subaccounts[1]!.sid;
    const oldKey = (await stack.store.readCurrent(stack.path(sid)))!.apiKeySid;
    hold.hold(sid);
    const rec = await startRotation(rt, sid);
    expect((await rt.service.undo(rec.id, 'rollback', 'test'))?.ok).toBe(true);
    hold.release(sid);
    const done = await waitFinished(rt, rec.id);
    expect(done.status).toBe('rolled_back');
    const settled = await expectSettled(stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(oldKey);
  });

  it('a new key deleted behind Rotator\'s back fails the rotation in promote and restores the old key', async () => {
    const sid = stack.emu.subaccounts[2]!.sid;
    const oldKey = (await stack.store.readCurrent(stack.path(sid)))!.apiKeySid;
    hold.hold(sid);
    const rec = await startRotation(rt, sid);
    const waiting = await waitWaiting(rt, rec.id);
    stack.emu.revokeCredential(waiting.newKeySid!);
    hold.release(sid);
    const done = await waitFinished(rt, rec.id);
    expect(done.status).toBe('failed');
    expect(done.error?.code).toBe('twilio_new_key_unauthorized');
    const settled = await expectSettled(stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(oldKey);
    // A failed rotation releases the subaccount: the next one can start.
    const next = await waitFinished(rt, (await startRotation(rt, sid)).id);
    expect(next.status).toBe('succeeded');
  });
});
