import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished, expectSettled } from '../helpers/engine.ts';
import type { Runtime } from '../../src/runtime.ts';

describe('Twilio faults', () => {
  let stack: Stack;
  let rt: Runtime;

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 4, drainSeconds: 0 });
    await stack.seedAll();
    rt = await startEngine(stack);
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  it('rotations succeed while 20% of Twilio calls fail with 429, 500 or a reset', async () => {
    const accounts = stack.emu.subaccounts.slice(0, 3).map((s) => s.sid);
    stack.emu.setFaults({ failRate: { rate: 0.2, kinds: [429, 500, 'reset'] }, seed: 7 });
    try {
      const done = await Promise.all(
        accounts.map(async (sid) => {
          const out = [];
          for (let i = 0; i < 3; i++) out.push(await waitFinished(rt, (await startRotation(rt, sid)).id, 120_000));
          return out;
        }),
      );
      expect(done.flat().map((r) => r.status)).toEqual(Array(9).fill('succeeded'));
      expect(stack.emu.stats().faultsInjected).toBeGreaterThan(5);
    } finally {
      stack.emu.setFaults({ failRate: null });
    }
    for (const sid of accounts) expect((await expectSettled(stack, sid)).problems).toEqual([]);
  }, 180_000);

  it('a key created at Twilio whose answer was lost is found and deleted, not orphaned', async () => {
    const sid = stack.emu.subaccounts[3]!.sid;
    // Twilio creates the key, then the connection drops: the secret is never seen.
    stack.emu.setFaults({ failNext: { count: 1, status: 'reset', phase: 'after', match: { method: 'POST', path: '/Keys\\.json$' } } });
    const rec = await waitFinished(rt, (await startRotation(rt, sid)).id);
    expect(rec.status).toBe('succeeded');
    expect(stack.emu.stats().faultsInjected).toBeGreaterThan(0);
    const settled = await expectSettled(stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(rec.newKeySid);
  });

  it('with the admin credential revoked, the rotation fails naming the cause and leaves no new key', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    const before = stack.emu.listKeys(sid).map((k) => k.sid);
    stack.emu.revokeCredential(stack.emu.parent.accountSid);
    try {
      const rec = await waitFinished(rt, (await startRotation(rt, sid)).id);
      expect(rec.status).toBe('failed');
      expect(rec.error?.code).toBe('twilio_admin_unauthorized');
      expect(rec.error?.message).toMatch(/admin credential/);
      expect(rec.error?.message).toMatch(/TWILIO_AUTH_TOKEN/);
      expect(stack.emu.listKeys(sid).map((k) => k.sid)).toEqual(before);
      // The store is untouched: applications keep their working key.
      expect((await stack.store.readCurrent(stack.path(sid)))?.apiKeySid).toBe(before[0]);
    } finally {
      stack.emu.restoreCredential(stack.emu.parent.accountSid);
    }
  });

  it('a subaccount closed at Twilio fails with that reason, not as a bad admin credential', async () => {
    const sid = stack.emu.subaccounts[1]!.sid;
    stack.emu.setAccountStatus(sid, 'closed');
    try {
      const rec = await waitFinished(rt, (await startRotation(rt, sid)).id);
      expect(rec.status).toBe('failed');
      // Refused by the subaccount check before anything was created: the subaccount is not held.
      expect(rec.error?.code).toBe('subaccount_inactive');
      expect(rec.error?.message).toMatch(/closed/);
      expect(await rt.repo.inFlightFor(sid)).toBeUndefined();
    } finally {
      stack.emu.setAccountStatus(sid, 'active');
    }
  });
});
