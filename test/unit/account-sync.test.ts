import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';
import { AccountRepository } from '../../src/state/accounts.ts';
import { CredentialRepository } from '../../src/state/credentials.ts';
import { syncAccounts, type ManageMode } from '../../src/service/accounts.ts';
import { TwilioAdmin } from '../../src/twilio/admin.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { startTwilioEmulator, type TwilioEmulator } from '../emulators/twilio/server.ts';

/**
 * MANAGE_NEW_SUBACCOUNTS against the Twilio emulator's subaccount list and a real Redis: `off`
 * records subaccounts only, `label` manages the labelled ones, `all` every active one; never a
 * suspended or closed subaccount, never twice, and the planner is told what became managed.
 */
describe('subaccount sync: MANAGE_NEW_SUBACCOUNTS', () => {
  let dir: string;
  let server: EmbeddedRedis;
  let redis: Redis;
  let emu: TwilioEmulator;
  let twilio: TwilioAdmin;
  let run = 0;
  let suspended: string;
  let closed: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-sync-'));
    server = await startEmbeddedRedis({ dir, persist: false });
    redis = new Redis(server.url);
    emu = await startTwilioEmulator({ subaccounts: 4 });
    suspended = emu.createSubaccount('Suspended').sid;
    emu.setAccountStatus(suspended, 'suspended');
    closed = emu.createSubaccount('Closed').sid;
    emu.setAccountStatus(closed, 'closed');
    const cfg = loadConfig({ TWILIO_ACCOUNT_SID: emu.parent.accountSid, TWILIO_AUTH_TOKEN: emu.parent.authToken, TWILIO_BASE_URL: emu.url });
    twilio = new TwilioAdmin({ credential: cfg.twilio!, baseUrl: cfg.twilioBaseUrl, timeoutMs: 5_000, gate: { acquire: async () => () => undefined } });
  });
  afterAll(async () => {
    redis?.disconnect();
    await emu?.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const setup = (manage: ManageMode) => {
    const prefix = `sync${++run}`;
    const accounts = new AccountRepository(redis, prefix);
    const credentials = new CredentialRepository(redis, prefix);
    const told: string[][] = [];
    const sync = () => syncAccounts(twilio, accounts, Date.now(), { manage, credentials, onFleetChange: async (ids) => void told.push(ids) });
    const managed = async () => (await credentials.list({ limit: 100 })).items.map((c) => `${c.accountSid}/${c.name}`);
    return { accounts, credentials, told, sync, managed };
  };
  const active = () => emu.subaccounts.filter((s) => s.sid !== suspended && s.sid !== closed).map((s) => s.sid).sort();

  it('off: every subaccount is recorded, none is managed', async () => {
    const t = setup('off');
    expect(await t.sync()).toEqual({ seen: 6, added: 6, managed: 0, unmanaged: 4 });
    expect(await t.accounts.count()).toBe(6);
    expect(await t.managed()).toEqual([]);
    expect(t.told).toEqual([]);
    // Labels change nothing in this mode.
    await t.accounts.patch(active()[0]!, { labels: ['hipaa'] });
    expect((await t.sync()).managed).toBe(0);
    expect(await t.managed()).toEqual([]);
  });

  it('label: the default credential of each labelled active subaccount, once', async () => {
    const t = setup('label');
    await t.sync();
    expect(await t.managed()).toEqual([]);
    const [a, b] = active();
    await t.accounts.patch(a!, { labels: ['hipaa'] });
    await t.accounts.patch(suspended, { labels: ['hipaa'] });
    expect(await t.sync()).toMatchObject({ managed: 1, unmanaged: 3 });
    expect(await t.managed()).toEqual([`${a}/default`]);
    expect(t.told).toEqual([[`${a}/default`]]);
    await t.accounts.patch(b!, { labels: ['tier=gold'] });
    expect(await t.sync()).toMatchObject({ managed: 1, unmanaged: 2 });
    expect((await t.sync()).managed).toBe(0);
    // Removing the label does not stop managing it.
    await t.accounts.patch(a!, { labels: [] });
    await t.sync();
    expect(await t.managed()).toEqual([`${a}/default`, `${b}/default`].sort());
  });

  it('all: every active subaccount\'s default credential, never a suspended or closed one; a managed one is left as it is', async () => {
    const t = setup('all');
    const [a] = active();
    // A credential managed before (with a rotation on record) is not reset by the sync.
    await t.credentials.ensure({ accountSid: a!, name: 'default' }, { now: 1000 });
    const r = await t.sync();
    expect(r).toEqual({ seen: 6, added: 6, managed: 3, unmanaged: 0 });
    expect(await t.managed()).toEqual(active().map((s) => `${s}/default`));
    expect((await t.credentials.get({ accountSid: a!, name: 'default' }))?.firstSeenAtMs).toBe(1000);
    expect(t.told.flat().sort()).toEqual(active().filter((s) => s !== a).map((s) => `${s}/default`));
    expect((await t.sync()).managed).toBe(0);

    // A subaccount created at Twilio since is managed at the next sync.
    const late = emu.createSubaccount('Late').sid;
    expect(await t.sync()).toMatchObject({ added: 1, managed: 1 });
    expect(await t.credentials.get({ accountSid: late, name: 'default' })).toMatchObject({ currentKeySid: null, kind: 'api-key' });
  });

  it('the setting: off by default, anything but off, label or all refused by name', () => {
    const base = { TWILIO_ACCOUNT_SID: `AC${'1'.repeat(32)}`, TWILIO_AUTH_TOKEN: 'x'.repeat(32) };
    expect(loadConfig(base).manageNewSubaccounts).toBe('off');
    expect(loadConfig({ ...base, MANAGE_NEW_SUBACCOUNTS: 'label' }).manageNewSubaccounts).toBe('label');
    expect(() => loadConfig({ ...base, MANAGE_NEW_SUBACCOUNTS: 'yes' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, MANAGE_NEW_SUBACCOUNTS: 'yes' })).toThrow(/MANAGE_NEW_SUBACCOUNTS must be off .*label .*all .*\(got "yes"\)/);
  });
});
