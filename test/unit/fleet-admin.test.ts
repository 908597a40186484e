import { beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { useEmbeddedRedis } from '../helpers/redis.ts';
import { AccountRepository } from '../../src/state/accounts.ts';
import { CredentialRepository } from '../../src/state/credentials.ts';
import { PolicyRepository } from '../../src/state/policies.ts';
import { FleetAdmin } from '../../src/service/fleet-admin.ts';
import type { ManageMode } from '../../src/service/accounts.ts';

const sid = (n: number): string => `AC${n.toString(16).padStart(32, '0')}`;

/** The fleet's writes tell the planner what moved (and only when something did); labelling manages under MANAGE_NEW_SUBACCOUNTS=label. */
describe('FleetAdmin', () => {
  const db = useEmbeddedRedis('fleet-admin');
  let redis: Redis;
  let run = 0;
  beforeAll(() => {
    redis = db.connection();
  });

  const setup = async (manage: ManageMode = 'off', listener?: (ids: string[] | 'all') => Promise<void>) => {
    const prefix = `admin${++run}`;
    const accounts = new AccountRepository(redis, prefix);
    const credentials = new CredentialRepository(redis, prefix);
    const policies = new PolicyRepository(redis, prefix);
    await accounts.upsertMany([1, 2].map((n) => ({ accountSid: sid(n), friendlyName: `n${n}`, status: 'active', ownerAccountSid: sid(0) })));
    const told: Array<string[] | 'all'> = [];
    const warnings: string[] = [];
    const admin = new FleetAdmin({ accounts, credentials, policies, manage, onFleetChange: listener ?? (async (ids) => void told.push(ids)), warn: (m) => void warnings.push(m) });
    return { accounts, credentials, policies, admin, told, warnings };
  };

  it('tells the planner which credentials each change may move, and nothing when nothing changed', async () => {
    const t = await setup();
    await t.credentials.ensure({ accountSid: sid(1), name: 'default' });
    expect(await t.admin.addCredential({ accountSid: sid(1), name: 'web' })).toMatchObject({ ok: true, value: { created: true } });
    expect(await t.admin.addCredential({ accountSid: sid(1), name: 'web' })).toMatchObject({ ok: true, value: { created: false } });
    expect(t.told).toEqual([[`${sid(1)}/web`]]);

    expect(await t.admin.patchAccount(sid(1), { labels: ['hipaa'] })).toMatchObject({ ok: true, value: { changes: ['labels [] → [hipaa]'], managed: null } });
    expect(t.told.at(-1)).toEqual([`${sid(1)}/default`, `${sid(1)}/web`]);
    await t.admin.patchAccount(sid(1), { labels: ['hipaa'], paused: false });
    expect(t.told).toHaveLength(2);

    await t.admin.patchCredential({ accountSid: sid(1), name: 'web' }, { paused: true });
    expect(t.told.at(-1)).toEqual([`${sid(1)}/web`]);
    expect(await t.admin.putPolicy('lax', { interval: 'P120D' })).toMatchObject({ ok: true, value: { created: true, policy: { name: 'lax' } } });
    expect(await t.admin.deletePolicy('lax')).toEqual({ result: 'deleted' });
    expect(t.told.slice(-2)).toEqual(['all', 'all']);
    // Refused input and refused deletes tell nobody.
    const before = t.told.length;
    expect(await t.admin.putPolicy('bad', { interval: 'P0D' })).toMatchObject({ ok: false });
    expect(await t.admin.patchAccount(sid(1), { policy: 'nope' })).toMatchObject({ ok: false, errors: [{ path: 'policy' }] });
    expect(await t.admin.patchAccount(sid(9), { paused: true })).toBeUndefined();
    expect(t.told).toHaveLength(before);
  });

  it('MANAGE_NEW_SUBACCOUNTS=label: labelling an active subaccount manages its default credential at once', async () => {
    const t = await setup('label');
    const r = await t.admin.patchAccount(sid(2), { labels: ['pci'] });
    expect(r).toMatchObject({ ok: true, value: { managed: `${sid(2)}/default`, changes: ['labels [] → [pci]', 'now manages default (MANAGE_NEW_SUBACCOUNTS=label)'] } });
    expect(await t.credentials.get({ accountSid: sid(2), name: 'default' })).toBeDefined();
    expect(t.told).toEqual([[`${sid(2)}/default`]]);
    // Off: labels alone manage nothing.
    const off = await setup('off');
    await off.admin.patchAccount(sid(2), { labels: ['pci'] });
    expect(await off.credentials.get({ accountSid: sid(2), name: 'default' })).toBeUndefined();
  });

  it('a planner that cannot be told does not fail the write (it is logged)', async () => {
    const t = await setup('off', async () => {
      throw new Error('planner down');
    });
    expect(await t.admin.patchAccount(sid(1), { paused: true, labels: ['a'] })).toMatchObject({ ok: true });
    await t.credentials.ensure({ accountSid: sid(1), name: 'default' });
    expect(await t.admin.patchCredential({ accountSid: sid(1), name: 'default' }, { paused: true })).toMatchObject({ ok: true });
    expect((await t.accounts.get(sid(1)))?.paused).toBe(true);
    expect(t.warnings).toEqual([expect.stringMatching(/could not tell the planner/)]);
  });
});
