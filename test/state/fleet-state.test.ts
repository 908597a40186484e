import { beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { useEmbeddedRedis } from '../helpers/redis.ts';
import { AccountRepository } from '../../src/state/accounts.ts';
import { CredentialRepository } from '../../src/state/credentials.ts';
import { PolicyRepository, UnknownPolicyError } from '../../src/state/policies.ts';
import { FleetDirectory } from '../../src/service/fleet.ts';
import { readFleetPage } from '../../src/state/fleet-page.ts';
import { PolicyValidationError } from '../../src/domain/policy.ts';

const sid = (n: number): string => `AC${n.toString(16).padStart(32, '0')}`;
const key = (n: number): string => `SK${n.toString(16).padStart(32, '0')}`;

/** The fleet's state in a real Redis: credentials, their migration from per-account records, labels, policies. */
describe('fleet state', () => {
  const db = useEmbeddedRedis('fleet');
  let redis: Redis;
  let run = 0;
  const prefix = (): string => `fleet${++run}`;
  beforeAll(() => {
    redis = db.connection();
  });

  it('an earlier version\'s per-account key and last rotation read as the default credential, and migrate once', async () => {
    const p = prefix();
    // As an earlier version wrote them: the account record carries k (current key) and r (rotated at).
    await redis.set(`${p}:account:${sid(1)}`, JSON.stringify({ n: 'one', s: 'active', f: 1000, k: key(1), r: 5000, o: sid(0) }));
    await redis.set(`${p}:account:${sid(2)}`, JSON.stringify({ n: 'two', s: 'active', f: 2000, o: sid(0) }));
    await redis.zadd(`${p}:accounts`, 0, sid(1), 0, sid(2));
    const creds = new CredentialRepository(redis, p);

    // Read through before the migration ran.
    const before = await creds.get({ accountSid: sid(1), name: 'default' });
    expect(before).toMatchObject({ accountSid: sid(1), name: 'default', kind: 'api-key', currentKeySid: key(1), lastRotatedAtMs: 5000, firstSeenAtMs: 1000 });
    expect(await creds.get({ accountSid: sid(2), name: 'default' })).toBeUndefined();

    expect(await creds.migrateFromAccounts(1)).toBe(1);
    expect(await redis.get(`${p}:creds:migrated`)).toBe('1');
    expect(await creds.migrateFromAccounts()).toBe(0);
    await redis.del(`${p}:creds:migrated`);
    expect(await creds.migrateFromAccounts()).toBe(0);
    expect((await creds.list({ limit: 10 })).items.map((c) => `${c.accountSid}/${c.name}`)).toEqual([`${sid(1)}/default`]);

    // A newer rotation is never overwritten by the migration running again.
    await creds.recordFinished({ id: 'r2', accountSid: sid(1), status: 'succeeded', dryRun: false, newKeySid: key(2), finishedAt: new Date(9000).toISOString(), updatedAt: new Date(9000).toISOString() }, 8000);
    await creds.migrateFromAccounts();
    expect(await creds.get({ accountSid: sid(1), name: 'default' })).toMatchObject({ currentKeySid: key(2), keyCreatedAtMs: 8000, lastRotatedAtMs: 9000, lastRotation: { id: 'r2', atMs: 9000, outcome: 'succeeded' } });
  });

  it('records finished rotations per credential: failures keep the key, older news never overwrites newer, dry runs change nothing', async () => {
    const creds = new CredentialRepository(redis, prefix());
    const at = (ms: number): string => new Date(ms).toISOString();
    const a = { accountSid: sid(3), name: 'billing-prod' };
    expect(await creds.ensure(a, { now: 100 })).toBe(true);
    expect(await creds.ensure(a, { now: 200 })).toBe(false);
    await creds.recordFinished({ id: 'x1', accountSid: sid(3), credential: 'billing-prod', status: 'succeeded', dryRun: false, newKeySid: key(10), finishedAt: at(1000), updatedAt: at(1000) });
    await creds.recordFinished({ id: 'x2', accountSid: sid(3), credential: 'billing-prod', status: 'failed', dryRun: false, finishedAt: at(2000), updatedAt: at(2000) });
    await creds.recordFinished({ id: 'x0', accountSid: sid(3), credential: 'billing-prod', status: 'succeeded', dryRun: false, newKeySid: key(9), finishedAt: at(500), updatedAt: at(500) });
    await creds.recordFinished({ id: 'x3', accountSid: sid(3), credential: 'billing-prod', status: 'succeeded', dryRun: true, newKeySid: key(11), finishedAt: at(3000), updatedAt: at(3000) });
    expect(await creds.get(a)).toMatchObject({ currentKeySid: key(10), lastRotatedAtMs: 1000, lastRotation: { id: 'x2', outcome: 'failed' }, firstSeenAtMs: 100, keyCreatedAtMs: null });
    expect(await creds.setKeyCreated(a, key(9), 1)).toBe(false);
    expect(await creds.setKeyCreated(a, key(10), 900)).toBe(true);
    expect((await creds.get(a))?.keyCreatedAtMs).toBe(900);

    // The default credential of the same subaccount is separate, and a subaccount's credentials are one range.
    await creds.ensure({ accountSid: sid(3), name: 'default' });
    await creds.ensure({ accountSid: sid(4), name: 'default' });
    expect((await creds.forAccount(sid(3))).map((c) => c.name)).toEqual(['billing-prod', 'default']);
    expect((await creds.list({ limit: 10, accountSid: sid(4) })).items.map((c) => c.name)).toEqual(['default']);
    const p = await creds.patch(a, { policy: 'hipaa', paused: true });
    expect(p).toMatchObject({ policy: 'hipaa', paused: true, currentKeySid: key(10) });
    expect(await creds.patch(a, { policy: null })).toMatchObject({ policy: null, paused: true });
  });

  it('pages the whole fleet by id', async () => {
    const creds = new CredentialRepository(redis, prefix());
    for (let i = 0; i < 25; i++) await creds.ensure({ accountSid: sid(100 + (i % 7)), name: `app-${i}` });
    const seen: string[] = [];
    for await (const page of creds.all(4)) seen.push(...page.map((c) => `${c.accountSid}/${c.name}`));
    expect(seen).toHaveLength(25);
    expect([...seen].sort()).toEqual(seen);
    expect(await creds.count()).toBe(25);
  });

  it('labels, overrides and pauses resolve to one policy with its reason; stored policies replace built-ins', async () => {
    const p = prefix();
    const accounts = new AccountRepository(redis, p);
    const credentials = new CredentialRepository(redis, p);
    const policies = new PolicyRepository(redis, p);
    const fleet = new FleetDirectory({ credentials, accounts, policies });
    await accounts.upsertMany([{ accountSid: sid(5), friendlyName: 'five', status: 'active', ownerAccountSid: sid(0) }]);
    expect(await accounts.patch(sid(6), { labels: ['hipaa'] })).toBeUndefined();
    expect(await accounts.patch(sid(5), { labels: ['tier=gold', 'hipaa', 'hipaa'] })).toMatchObject({ labels: ['hipaa', 'tier=gold'], policyOverride: null, paused: false });
    await credentials.ensure({ accountSid: sid(5), name: 'default' });
    await credentials.ensure({ accountSid: sid(5), name: 'web' });

    let [d, w] = await fleet.join((await credentials.forAccount(sid(5))));
    expect(d?.assignment).toMatchObject({ source: 'label', reason: 'label hipaa (policy hipaa)' });
    expect(d?.assignment.policy.intervalMs).toBe(30 * 86_400_000);
    expect(w?.paused).toBeNull();

    await policies.put({ name: 'lax', interval: 'P180D' });
    await accounts.patch(sid(5), { policy: 'lax', paused: true });
    await credentials.patch({ accountSid: sid(5), name: 'web' }, { policy: 'default' });
    [d, w] = await fleet.join((await credentials.forAccount(sid(5))));
    expect(d).toMatchObject({ paused: 'account', assignment: { source: 'account override', reason: 'account override (policy lax)' } });
    expect(w).toMatchObject({ paused: 'account', assignment: { source: 'credential override' } });

    // A stored `hipaa` replaces the built-in one; deleting it brings the built-in back.
    await policies.put({ name: 'hipaa', interval: 'P14D', labels: ['hipaa'] });
    expect((await policies.catalog()).get('hipaa')?.intervalMs).toBe(14 * 86_400_000);
    expect(await policies.delete('hipaa')).toBe(true);
    expect(await policies.delete('hipaa')).toBe(false);
    expect((await policies.catalog()).get('hipaa')?.intervalMs).toBe(30 * 86_400_000);
    // Another process's repository sees a change at once (the version counter).
    const other = new PolicyRepository(redis, p);
    await other.catalog();
    await policies.put({ name: 'lax', interval: 'P120D' });
    expect((await other.catalog()).get('lax')?.intervalMs).toBe(120 * 86_400_000);
    await expect(policies.put({ name: 'bad', interval: 'P3X', windows: [{ days: ['mon'], hours: [], timeZone: 'Mars/Base' }] })).rejects.toBeInstanceOf(PolicyValidationError);
  });

  it('overrides are indexed by the policy they name: a named policy is not deleted, a deleted one cannot be named', async () => {
    const p = prefix();
    const accounts = new AccountRepository(redis, p);
    const credentials = new CredentialRepository(redis, p);
    const policies = new PolicyRepository(redis, p);
    await accounts.upsertMany([{ accountSid: sid(7), friendlyName: 'seven', status: 'active', ownerAccountSid: sid(0) }]);
    await policies.put({ name: 'lax', interval: 'P180D' });
    await policies.put({ name: 'strict', interval: 'P7D' });
    await accounts.patch(sid(7), { policy: 'lax' }, { requireStoredPolicy: true });
    await credentials.patch({ accountSid: sid(7), name: 'web' }, { policy: 'lax' }, 1, { requireStoredPolicy: true });
    expect(await policies.overrideCounts(['lax', 'strict', 'hipaa'])).toEqual([2, 0, 0]);
    expect(await policies.deleteUnlessUsed('lax')).toEqual({ result: 'in use', count: 2, users: [sid(7), `${sid(7)}/web`] });

    // Moving an override moves it in the index; clearing removes it.
    await accounts.patch(sid(7), { policy: 'strict' });
    await credentials.patch({ accountSid: sid(7), name: 'web' }, { policy: null });
    expect(await policies.overrideCounts(['lax', 'strict'])).toEqual([0, 1]);
    expect(await policies.deleteUnlessUsed('lax')).toEqual({ result: 'deleted' });
    expect(await policies.deleteUnlessUsed('lax')).toEqual({ result: 'absent' });

    // The write that names a policy checks, in its own script, that it is still stored.
    await expect(accounts.patch(sid(7), { policy: 'lax' }, { requireStoredPolicy: true })).rejects.toBeInstanceOf(UnknownPolicyError);
    await expect(credentials.patch({ accountSid: sid(7), name: 'web' }, { policy: 'lax', paused: true }, 1, { requireStoredPolicy: true })).rejects.toMatchObject({ code: 'unknown_policy' });
    expect((await accounts.get(sid(7)))?.policyOverride).toBe('strict');
    expect((await credentials.get({ accountSid: sid(7), name: 'web' }))?.paused).toBe(false);

    // A built-in named by an override reverts rather than disappears.
    await credentials.patch({ accountSid: sid(7), name: 'web' }, { policy: 'hipaa' });
    await policies.put({ name: 'hipaa', interval: 'P14D', labels: ['hipaa'] });
    expect(await policies.deleteUnlessUsed('hipaa')).toEqual({ result: 'deleted' });
    expect((await policies.get('hipaa'))?.interval).toBe('P30D');
  });

  it('a fleet page in one script reads what list and the accounts read, legacy defaults and unknown subaccounts included', async () => {
    const p = prefix();
    const accounts = new AccountRepository(redis, p);
    const credentials = new CredentialRepository(redis, p);
    await accounts.upsertMany([20, 21, 22].map((n) => ({ accountSid: sid(n), friendlyName: `n${n}`, status: n === 22 ? 'closed' : 'active', ownerAccountSid: sid(0) })));
    await accounts.patch(sid(21), { labels: ['hipaa'], paused: true });
    for (const n of [20, 21, 22, 23]) for (const name of ['default', 'web', 'api']) await credentials.ensure({ accountSid: sid(n), name });
    // A default credential indexed but kept on its account record only (as before the migration ran).
    await redis.del(`${p}:cred:${sid(20)}/default`);
    await redis.set(`${p}:account:${sid(20)}`, JSON.stringify({ n: 'n20', s: 'active', f: 5, k: key(20), r: 7, o: sid(0) }));

    const walk = async (opts: { accountSid?: string } = {}) => {
      const rows: string[] = [];
      let cursor: string | undefined;
      for (;;) {
        const page = await readFleetPage(redis, credentials, { limit: 4, cursor, ...opts });
        rows.push(...page.rows.map((r) => JSON.stringify([r.credential, r.account ?? null])));
        if (!page.nextCursor) return rows;
        cursor = page.nextCursor;
      }
    };
    const expected = async (accountSid?: string) => {
      const { items } = await credentials.list({ limit: 100, accountSid });
      const byId = new Map((await accounts.getMany(items.map((c) => c.accountSid))).map((a) => [a.accountSid, a]));
      return items.map((c) => JSON.stringify([c, byId.get(c.accountSid) ?? null]));
    };
    const all = await walk();
    expect(all).toHaveLength(12);
    expect(all).toEqual(await expected());
    expect(await walk({ accountSid: sid(21) })).toEqual(await expected(sid(21)));
    expect(all.find((r) => r.includes(`"currentKeySid":"${key(20)}"`))).toBeDefined();
    expect(all.filter((r) => r.endsWith(',null]'))).toHaveLength(3);
  });
  it('a fleet page by id or by deadline, either way, pages every credential once (ties too) and names a rotation in flight', async () => {
    const p = prefix();
    const credentials = new CredentialRepository(redis, p);
    const ids: string[] = [];
    for (const n of [30, 31, 32]) for (const name of ['default', 'web', 'api']) {
      await credentials.ensure({ accountSid: sid(n), name });
      ids.push(`${sid(n)}/${name}`);
    }
    // Deadlines as the planner writes them: two ties, and one credential not scheduled.
    const deadline = (id: string) => 1_000 + (ids.indexOf(id) % 4) * 10;
    for (const id of ids.slice(1)) await redis.zadd(`${p}:schedule:deadlines`, deadline(id), id);
    // A rotation in flight holds the default credential's lock (the subaccount's) and another's; a finished one names a stale lock.
    await redis.set(`${p}:lock:${sid(31)}`, 'r-running');
    await redis.set(`${p}:rot:r-running`, '{"id":"r-running","status":"waiting","step":"promote"}');
    await redis.set(`${p}:lock:${sid(32)}:web`, 'r-done');
    await redis.set(`${p}:rot:r-done`, '{"id":"r-done","status":"succeeded","step":"done"}');

    const walk = async (order: 'id' | 'id-desc' | 'deadline' | 'deadline-desc') => {
      const rows: Array<{ id: string; inFlight: unknown }> = [];
      let cursor: string | undefined;
      for (;;) {
        const page = await readFleetPage(redis, credentials, { limit: 2, cursor, order });
        rows.push(...page.rows.map((r) => ({ id: `${r.credential.accountSid}/${r.credential.name}`, inFlight: r.inFlight })));
        if (!page.nextCursor) return rows;
        cursor = page.nextCursor;
      }
    };
    const sorted = [...ids].sort();
    expect((await walk('id')).map((r) => r.id)).toEqual(sorted);
    expect((await walk('id-desc')).map((r) => r.id)).toEqual([...sorted].reverse());
    const byDeadline = [...ids.slice(1)].sort((a, b) => deadline(a) - deadline(b) || (a < b ? -1 : 1));
    expect((await walk('deadline')).map((r) => r.id)).toEqual(byDeadline);
    expect((await walk('deadline-desc')).map((r) => r.id)).toEqual([...byDeadline].reverse());
    const flying = (await walk('id')).filter((r) => r.inFlight);
    expect(flying).toEqual([{ id: `${sid(31)}/default`, inFlight: { id: 'r-running', status: 'waiting', step: 'promote' } }]);
  });
});
