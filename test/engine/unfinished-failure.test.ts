import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, testLogger, type Stack } from '../helpers/stack.ts';
import { startRotation, waitFinished, waitWaiting, expectSettled, PromoteHold } from '../helpers/engine.ts';
import { loadConfig } from '../../src/config.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';
import { StoreError } from '../../providers/store-error.ts';
import type { SecretStore } from '../../providers/secret-store.ts';

/**
 * Found by the chaos suite: a rotation whose undo stopped half-way (the store refused the write
 * that restores the old key) released its subaccount. The next rotation took the half-undone
 * state as its starting point — pushing the old key out of the store while it stayed valid at
 * Twilio — and when an operator then retried the first rotation, its undo rolled back the second
 * one's key too and left the store with no current key at all.
 *
 * A rotation that failed part-way now keeps its subaccount until a retry finishes it.
 */
describe('a rotation that failed part-way', () => {
  let stack: Stack;
  let rt: Runtime;
  let refuseRestore = false;
  let refusePending = false;
  // Holds the first rotation in promote until the test has cancelled it: the cancel must not race
  // the end of the drain.
  const hold = new PromoteHold();

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 1, drainSeconds: 0.3 });
    await stack.seedAll();
    const inner = stack.store;
    const store: SecretStore = {
      kind: inner.kind,
      readCurrent: (p) => inner.readCurrent(p),
      read: (p) => inner.read(p),
      putPending: async (p, id, c) => {
        if (refusePending) throw new StoreError('store_permission', 'writes refused for this test');
        return inner.putPending(p, id, c);
      },
      promotePending: (p, id, sid) => inner.promotePending(p, id, sid),
      discardPending: (p, id) => inner.discardPending(p, id),
      restorePrevious: async (p, sid) => {
        if (refuseRestore) throw new StoreError('store_permission', 'writes refused for this test');
        return inner.restorePrevious(p, sid);
      },
      dropPrevious: (p, sid) => inner.dropPrevious(p, sid),
      check: () => inner.check(),
      close: async () => undefined,
    };
    rt = await startRuntime(loadConfig(stack.env), { api: false, worker: true, log: testLogger(stack.logs), store, gates: [hold] });
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  it('keeps its subaccount until a retry finishes it; then rotations go on and nothing is lost', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    const oldKey = (await stack.store.readCurrent(stack.path(sid)))!.apiKeySid;
    hold.hold(sid);
    const first = await startRotation(rt, sid);
    await waitWaiting(rt, first.id);
    refuseRestore = true;
    expect((await rt.service.undo(first.id, 'cancel', 'test'))?.ok).toBe(true);
    hold.release(sid);
    const stopped = await waitFinished(rt, first.id);
    expect(stopped.status).toBe('failed');
    expect(stopped.error?.message).toMatch(/undo stopped/);

    // Half-undone: the new key is still current. No other rotation may start on top of that.
    const second = await rt.service.start({ accountSid: sid, trigger: 'api', requestedBy: 'test' });
    expect(second.started).toBe(false);
    expect(!second.started && second.existing.id).toBe(first.id);
    expect(await rt.repo.inFlightFor(sid)).toBe(first.id);

    // The operator lifts the cause and retries: the undo finishes, the old key is current again.
    refuseRestore = false;
    expect((await rt.service.retry(first.id, 'test'))?.ok).toBe(true);
    const finished = await waitFinished(rt, first.id);
    expect(finished.status).toBe('cancelled');
    expect((await expectSettled(stack, sid)).currentKeySid).toBe(oldKey);

    // Released: the next rotation runs, and the subaccount ends with one key, current in the store.
    const next = await waitFinished(rt, (await startRotation(rt, sid)).id);
    expect(next.status).toBe('succeeded');
    expect(next.oldKeySid).toBe(oldKey);
    const settled = await expectSettled(stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(next.newKeySid);
  });

  it('a failure whose undo completed releases the subaccount at once', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    const before = stack.emu.listKeys(sid).map((k) => k.sid);
    refusePending = true;
    try {
      const failed = await waitFinished(rt, (await startRotation(rt, sid)).id);
      expect(failed.status).toBe('failed');
      expect(failed.error?.code).toBe('store_permission');
      expect(failed.undo?.completedAt).toBeDefined();
      expect(stack.emu.listKeys(sid).map((k) => k.sid)).toEqual(before);
      expect(await rt.repo.inFlightFor(sid)).toBeUndefined();
    } finally {
      refusePending = false;
    }
    expect((await waitFinished(rt, (await startRotation(rt, sid)).id)).status).toBe('succeeded');
  });
});
