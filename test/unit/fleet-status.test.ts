import { describe, expect, it } from 'vitest';
import { policyCatalog, DEFAULT_POLICIES, type Policy } from '../../src/domain/policy.ts';
import { planRotation } from '../../src/domain/planner.ts';
import { entryOf } from '../../src/service/fleet.ts';
import { cachedPlan, credentialStatus } from '../../src/service/fleet-status.ts';
import type { ManagedCredential } from '../../src/state/credentials.ts';
import type { AccountRecord } from '../../src/state/accounts.ts';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 5, 1, 12);
const SID = `AC${'1'.repeat(32)}`;

const cred = (over: Partial<ManagedCredential> = {}): ManagedCredential => ({
  accountSid: SID, name: 'default', kind: 'api-key', currentKeySid: null, keyCreatedAtMs: null, lastRotatedAtMs: null, lastRotation: null, firstSeenAtMs: NOW - 10 * DAY, policy: null, paused: false, ...over,
});
const account = (over: Partial<AccountRecord> = {}): AccountRecord => ({
  accountSid: SID, friendlyName: 'one', status: 'active', policy: 'quarterly', currentKeySid: null, lastRotatedAtMs: null, firstSeenAtMs: 0, ownerAccountSid: null, labels: [], policyOverride: null, paused: false, ...over,
});
const catalog = (extra: Policy[] = []) => policyCatalog([...DEFAULT_POLICIES, ...extra]);

describe('credential status', () => {
  it('key age counts from the key\'s creation, else the last rotation, else first sight, and says which', () => {
    const cat = catalog();
    const at = (c: ManagedCredential) => credentialStatus(entryOf(c, account(), cat), NOW);
    expect(at(cred())).toMatchObject({ keyAgeDays: 10, keyAgeFrom: 'first_seen' });
    expect(at(cred({ lastRotatedAtMs: NOW - 3 * DAY }))).toMatchObject({ keyAgeDays: 3, keyAgeFrom: 'last_rotation' });
    expect(at(cred({ lastRotatedAtMs: NOW - 3 * DAY, keyCreatedAtMs: NOW - 4 * DAY }))).toMatchObject({ keyAgeDays: 4, keyAgeFrom: 'key_created', keySince: new Date(NOW - 4 * DAY).toISOString() });
  });

  it('says why nothing is scheduled: excluded, subaccount not active, paused, not auto-rotated', () => {
    const cat = catalog([{ name: 'skip', interval: 'P30D', exclude: true }, { name: 'manual', interval: 'P30D', autoRotate: false }]);
    const status = (c: ManagedCredential, a: AccountRecord) => credentialStatus(entryOf(c, a, cat), NOW);
    expect(status(cred(), account())).toMatchObject({ notScheduled: null, nextRotationAt: expect.any(String), overdue: false });
    expect(status(cred({ policy: 'skip' }), account())).toMatchObject({ notScheduled: 'policy skip excludes it from the schedule', deadline: null, nextRotationAt: null, overdue: false });
    expect(status(cred(), account({ status: 'closed' }))).toMatchObject({ notScheduled: 'the subaccount is closed at Twilio', nextRotationAt: null });
    expect(status(cred({ paused: true }), account({ paused: true }))).toMatchObject({ notScheduled: 'the credential is paused', pausedBy: 'credential' });
    expect(status(cred({ firstSeenAtMs: NOW - 40 * DAY }), account({ policyOverride: 'manual' }))).toMatchObject({ notScheduled: expect.stringMatching(/autoRotate: false/), overdue: true, deadline: new Date(NOW - 10 * DAY).toISOString() });
  });

  it('a remembered plan is the planner\'s, and a changed policy (a new compiled object) is planned again', () => {
    const clock = { id: `${SID}/default`, firstSeenMs: NOW - 10 * DAY, lastRotatedMs: null, keyCreatedMs: null };
    const before = catalog().get('default')!;
    expect(cachedPlan(before, clock)).toEqual(planRotation(before, clock));
    expect(cachedPlan(before, clock)).toBe(cachedPlan(before, clock));
    const after = policyCatalog([{ name: 'default', interval: 'P20D' }]).get('default')!;
    expect(cachedPlan(after, clock).deadlineMs).toBe(NOW + 10 * DAY);
    expect(cachedPlan(before, { ...clock, lastRotatedMs: NOW }).deadlineMs).toBe(NOW + 90 * DAY);
  });
});
