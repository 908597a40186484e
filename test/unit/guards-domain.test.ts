import { describe, expect, it } from 'vitest';
import { subaccountVerdict } from '../../src/domain/subaccount.ts';
import { canAbandon, canRetry, drainMsOf, holdsCredential, isUntouched, leftBehind, newRotationId, rotationIdInKeyName, type RotationRecord } from '../../src/domain/rotation.ts';

const PARENT = `AC${'1'.repeat(32)}`;
const SUB = `AC${'2'.repeat(32)}`;
const OTHER = `AC${'3'.repeat(32)}`;

function record(over: Partial<RotationRecord> = {}): RotationRecord {
  const at = new Date(0).toISOString();
  return { id: newRotationId(0), kind: 'api-key', accountSid: SUB, credential: 'default', status: 'pending', step: 'create-secondary', dryRun: false, trigger: 'api', attempts: 0, createdAt: at, updatedAt: at, rev: 0, history: [], ...over };
}

describe('subaccountVerdict', () => {
  it('admits an active subaccount of the parent, and only that', () => {
    expect(subaccountVerdict(SUB, PARENT, { accountSid: SUB, ownerAccountSid: PARENT, status: 'active' })).toEqual({ ok: true });
    expect(subaccountVerdict(PARENT, PARENT, { accountSid: PARENT, ownerAccountSid: PARENT, status: 'active' })).toMatchObject({ ok: false, code: 'not_a_subaccount', message: expect.stringContaining(PARENT) });
    // Without the parent's SID (an API process without credentials), a parent is still known by owning itself.
    expect(subaccountVerdict(OTHER, undefined, { accountSid: OTHER, ownerAccountSid: OTHER, status: 'active' })).toMatchObject({ ok: false, code: 'not_a_subaccount' });
    expect(subaccountVerdict(SUB, PARENT, { accountSid: SUB, ownerAccountSid: OTHER, status: 'active' })).toMatchObject({ ok: false, code: 'not_a_subaccount', message: expect.stringContaining(OTHER) });
    expect(subaccountVerdict(SUB, PARENT, undefined)).toMatchObject({ ok: false, code: 'subaccount_not_found', message: expect.stringContaining(SUB) });
    for (const status of ['suspended', 'closed']) {
      expect(subaccountVerdict(SUB, PARENT, { accountSid: SUB, ownerAccountSid: PARENT, status })).toMatchObject({ ok: false, code: 'subaccount_inactive', message: expect.stringContaining(status) });
    }
  });
});

describe('rotationIdInKeyName', () => {
  it('reads the id only from a name that is exactly <prefix>:<uuid>', () => {
    const id = newRotationId();
    expect(rotationIdInKeyName('rotator', `rotator:${id}`)).toBe(id);
    expect(rotationIdInKeyName('rotator', `rotator:${id}x`)).toBeUndefined();
    expect(rotationIdInKeyName('rotator', `rotator:${id.toUpperCase()}`)).toBeUndefined();
    expect(rotationIdInKeyName('rotator', 'rotator:ci-build-key')).toBeUndefined();
    expect(rotationIdInKeyName('rotator', `other:${id}`)).toBeUndefined();
    expect(rotationIdInKeyName('rot', `rotator:${id}`)).toBeUndefined();
  });
});

describe('drainMsOf', () => {
  it('is the configured drain, or an urgent rotation\'s own, never longer than the configured one', () => {
    expect(drainMsOf({}, 900_000)).toBe(900_000);
    expect(drainMsOf({ drainSeconds: 0 }, 900_000)).toBe(900_000);
    expect(drainMsOf({ urgent: true }, 900_000)).toBe(0);
    expect(drainMsOf({ urgent: true, drainSeconds: 30 }, 900_000)).toBe(30_000);
    expect(drainMsOf({ urgent: true, drainSeconds: 5_000 }, 900_000)).toBe(900_000);
  });
});

describe('holding a subaccount, and abandoning', () => {
  const halfUndone = record({ status: 'failed', step: 'operationalize', newKeySid: `SK${'a'.repeat(32)}`, oldKeySid: `SK${'b'.repeat(32)}`, undo: { reason: 'failure', drain: false }, attempts: 3 });

  it('a failed rotation whose undo did not finish holds, until abandoned', () => {
    expect(holdsCredential(halfUndone)).toBe(true);
    expect(canAbandon(halfUndone)).toEqual({ ok: true });
    const abandoned = { ...halfUndone, abandoned: { at: new Date(0).toISOString(), leftBehind: [] } };
    expect(holdsCredential(abandoned)).toBe(false);
    expect(canAbandon(abandoned)).toMatchObject({ ok: false, reason: expect.stringMatching(/already abandoned/) });
    expect(canRetry(abandoned)).toMatchObject({ ok: false, reason: expect.stringMatching(/abandoned/) });
  });

  it('only a failed rotation that holds may be abandoned', () => {
    expect(canAbandon(record({ status: 'running' }))).toMatchObject({ ok: false, reason: expect.stringMatching(/this one is running/) });
    expect(canAbandon(record({ status: 'failed', undo: { reason: 'failure', completedAt: new Date(0).toISOString() } }))).toMatchObject({ ok: false, reason: expect.stringMatching(/does not hold/) });
  });

  it('says what may be left behind, from how far the rotation got', () => {
    const where = { secretPath: 'twilio/x', keyNamePrefix: 'rotator' };
    expect(leftBehind(halfUndone, where).join('\n')).toMatch(new RegExp(`new key ${halfUndone.newKeySid} may remain at Twilio[^\\n]*\\na pending version staged under ${halfUndone.id} at twilio/x`));
    const early = record({ status: 'failed', attempts: 1, undo: { reason: 'failure', drain: false } });
    expect(leftBehind(early, where)[0]).toContain(`rotator:${early.id}`);
    const current = { ...halfUndone, step: 'promote' as const, operationalizedAt: new Date(0).toISOString(), undo: { reason: 'failure' as const, drain: true } };
    expect(leftBehind(current, where).join('\n')).toMatch(/may be the current version at twilio\/x[\s\S]*old key SKb+ is still valid/);
    const last = { ...halfUndone, step: 'delete-old' as const, undo: undefined };
    expect(leftBehind(last, where)).toEqual([expect.stringMatching(/old key SKb+ may still be valid at Twilio/)]);
  });

  it('a rotation is untouched until a run counts an attempt', () => {
    expect(isUntouched(record())).toBe(true);
    expect(isUntouched(record({ attempts: 1 }))).toBe(false);
    expect(isUntouched(record({ status: 'running' }))).toBe(false);
    expect(isUntouched(record({ undo: { reason: 'cancel' } }))).toBe(false);
  });
});
