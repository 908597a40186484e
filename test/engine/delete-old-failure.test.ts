import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, testLogger, type Stack } from '../helpers/stack.ts';
import { startRotation, waitFinished, expectSettled } from '../helpers/engine.ts';
import { loadConfig } from '../../src/config.ts';
import { startRuntime, type Runtime } from '../../src/runtime.ts';
import { StoreError } from '../../providers/store-error.ts';
import type { SecretStore } from '../../providers/secret-store.ts';

/**
 * Found by the chaos suite: delete-old deleted the old key at Twilio, then failed permanently (a
 * store write refused, or the admin credential refused on a re-run). The failure was undone like
 * any other, and the undo made the old — already deleted — key current again: every application
 * that refreshed got 401s.
 */
describe('a permanent failure in delete-old after the old key is gone', () => {
  let stack: Stack;
  let rt: Runtime;
  let refuseDropPrevious = false;

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 1, drainSeconds: 0.2 });
    await stack.seedAll();
    const inner = stack.store;
    const store: SecretStore = {
      kind: inner.kind,
      readCurrent: (p) => inner.readCurrent(p),
      read: (p) => inner.read(p),
      putPending: (p, id, c) => inner.putPending(p, id, c),
      promotePending: (p, id, sid) => inner.promotePending(p, id, sid),
      discardPending: (p, id) => inner.discardPending(p, id),
      restorePrevious: (p, sid) => inner.restorePrevious(p, sid),
      dropPrevious: async (p, sid) => {
        if (refuseDropPrevious) throw new StoreError('store_permission', 'writes refused for this test');
        return inner.dropPrevious(p, sid);
      },
      check: () => inner.check(),
      close: async () => undefined,
    };
    rt = await startRuntime(loadConfig(stack.env), { api: false, worker: true, log: testLogger(stack.logs), store });
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  it('stops without undoing: the new key stays current, and a retry finishes the rotation', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    const oldKey = (await stack.store.readCurrent(stack.path(sid)))!.apiKeySid;
    refuseDropPrevious = true;
    const rec = await startRotation(rt, sid);
    const failed = await waitFinished(rt, rec.id);
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('store_permission');
    expect(failed.step).toBe('delete-old');
    expect(failed.undo).toBeUndefined();
    // The old key is gone at Twilio, and the store never hands it out again.
    expect(stack.emu.listKeys(sid).map((k) => k.sid)).toEqual([failed.newKeySid]);
    expect((await stack.store.readCurrent(stack.path(sid)))?.apiKeySid).toBe(failed.newKeySid);
    expect((await stack.store.read(stack.path(sid))).previous?.credential.apiKeySid).toBe(oldKey);

    refuseDropPrevious = false;
    expect((await rt.service.retry(rec.id, 'test'))?.ok).toBe(true);
    const done = await waitFinished(rt, rec.id);
    expect(done.status).toBe('succeeded');
    const settled = await expectSettled(stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(done.newKeySid);
  });
});
