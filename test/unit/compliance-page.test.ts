import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';
import { AccountRepository } from '../../src/state/accounts.ts';
import { CredentialRepository } from '../../src/state/credentials.ts';
import { PolicyRepository } from '../../src/state/policies.ts';
import { ComplianceFacts } from '../../src/state/compliance.ts';
import { ComplianceReader, RowCache } from '../../src/service/compliance.ts';
import { credentialRow, credentialRowChangesAt, DAY_MS, type CredentialFacts } from '../../src/domain/compliance.ts';
import { policyCatalog } from '../../src/domain/policy.ts';
import { replyText } from '../../src/api/routes/compliance.ts';
import { ComplianceReply } from '../../src/api/schemas.ts';

/**
 * The compliance page keeps each credential's rendered row between requests and joins the rows as
 * text. The properties: a kept row is what rendering it afresh gives whenever any of its inputs
 * changed (a rotation finished, labels, a policy, the clock passing a day or a deadline); a row
 * holds for the whole interval credentialRowChangesAt gives it; and the page's bytes are what the
 * schema's serializer makes of them.
 */
const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 5, 1, 12);
const sid = (i: number): string => `AC${i.toString(16).padStart(32, '0')}`;
const key = (i: number): string => `SK${i.toString(16).padStart(32, '0')}`;

describe('compliance page: kept rows', () => {
  let dir: string;
  let server: EmbeddedRedis;
  let redis: Redis;
  let run = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-cpage-'));
    server = await startEmbeddedRedis({ dir, persist: false });
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** A fleet of three credentials in two subaccounts, and a reader over it. */
  async function fleet() {
    const prefix = `cp${run++}`;
    const accounts = new AccountRepository(redis, prefix);
    const credentials = new CredentialRepository(redis, prefix);
    const policies = new PolicyRepository(redis, prefix);
    const facts = new ComplianceFacts(redis, prefix);
    await accounts.upsertMany([sid(1), sid(2)].map((s) => ({ accountSid: s, friendlyName: `n ${s}`, status: 'active' })), T0 - 100 * DAY_MS);
    const rotated = T0 - 80 * DAY_MS - HOUR;
    for (const [i, ref] of [{ accountSid: sid(1), name: 'default' }, { accountSid: sid(1), name: 'web' }, { accountSid: sid(2), name: 'default' }].entries()) {
      await credentials.ensure(ref, { now: T0 - 100 * DAY_MS });
      await credentials.recordFinished({ id: `r${i}`, accountSid: ref.accountSid, credential: ref.name, status: 'succeeded', dryRun: false, newKeySid: key(i), finishedAt: new Date(rotated).toISOString(), updatedAt: new Date(rotated).toISOString() }, rotated);
    }
    await facts.put({ accountSid: sid(1), friendlyName: 'one', status: 'active', scannedAtMs: T0 - DAY_MS, keys: [{ sid: key(0), friendlyName: 'x', dateCreated: rotated }, { sid: key(1), friendlyName: 'y', dateCreated: rotated }], note: null, stages: [{ name: 'default', current: key(0), pending: null, previous: null }, { name: 'web', current: key(1), pending: null, previous: null }], knownRotationIds: [], sprawl: 0, leftover: 0 });
    const deps = { redis, prefix, credentials, accounts, policies, facts, keyNamePrefix: 'rotator' };
    const reader = new ComplianceReader(deps);
    /** The page as the kept rows give it, and as a reader that keeps nothing renders it at the same time. */
    const page = async (now: number, filter = {}) => {
      const kept = (await reader.credentialPage({ limit: 10, filter, now })).rows.map((r) => JSON.parse(r) as Record<string, unknown>);
      const fresh = (await new ComplianceReader(deps).credentialPage({ limit: 10, filter, now })).rows.map((r) => JSON.parse(r) as Record<string, unknown>);
      expect(kept).toEqual(fresh);
      return kept;
    };
    return { accounts, credentials, policies, facts, page };
  }

  it('a kept row changes when a rotation finishes, labels change, a policy is edited, or a scan reads the subaccount again', async () => {
    const f = await fleet();
    const before = await f.page(T0);
    expect(before.map((r) => r.keySid)).toEqual([key(0), key(1), key(2)]);
    expect(await f.page(T0 + 1000)).toEqual(before);

    const done = T0 + 2000;
    await f.credentials.recordFinished({ id: 'r9', accountSid: sid(2), credential: 'default', status: 'succeeded', dryRun: false, newKeySid: key(9), finishedAt: new Date(done).toISOString(), updatedAt: new Date(done).toISOString() }, done);
    const rotated = await f.page(T0 + 3000);
    expect(rotated[2]).toMatchObject({ keySid: key(9), lastRotationAt: new Date(done).toISOString(), keyAgeDays: 0 });
    expect(rotated.slice(0, 2)).toEqual(before.slice(0, 2));

    await f.accounts.patch(sid(1), { labels: ['hipaa'] });
    const labelled = await f.page(T0 + 4000);
    expect(labelled[0]).toMatchObject({ labels: ['hipaa'], policy: 'hipaa', overdue: true, withinPolicy: false });
    expect(await f.page(T0 + 4000, { label: 'hipaa' })).toHaveLength(2);

    await f.policies.put({ name: 'default', interval: 'P120D' });
    expect((await f.page(T0 + 5000))[2]).toMatchObject({ policyInterval: 'P120D', allowedKeyAgeDays: 120 });

    await f.facts.put({ accountSid: sid(1), friendlyName: 'one', status: 'active', scannedAtMs: T0 + 6000, keys: [], note: null, stages: [{ name: 'default', current: key(0), pending: null, previous: null }], knownRotationIds: [], sprawl: 0, leftover: 0 });
    const rescanned = await f.page(T0 + 7000);
    expect(rescanned[0]).toMatchObject({ keyCreatedAt: null, scannedAt: new Date(T0 + 6000).toISOString() });
  });

  it('a kept row changes when the clock passes a day of key age or a deadline, and when it goes back', async () => {
    const f = await fleet();
    const at = await f.page(T0);
    // Rotated 80 days and an hour before T0: 81 days old an hour before the next day boundary.
    expect(at[0]).toMatchObject({ keyAgeDays: 80, overdue: false, withinPolicy: true });
    expect((await f.page(T0 + DAY_MS - HOUR - 1))[0]).toMatchObject({ keyAgeDays: 80 });
    expect((await f.page(T0 + DAY_MS - HOUR))[0]).toMatchObject({ keyAgeDays: 81 });
    // P90D after the rotation: overdue and out of policy from the ms after.
    const due = T0 + 10 * DAY_MS - HOUR;
    expect((await f.page(due))[0]).toMatchObject({ overdue: false, withinPolicy: true });
    expect((await f.page(due + 1))[0]).toMatchObject({ overdue: true, withinPolicy: false, keyAgeDays: 90 });
    // A clock that goes back (another process's, a test's) is answered for its own time.
    expect(await f.page(T0)).toEqual(at);
  });

  it('the page is the schema serializer’s output of its own content', async () => {
    const f = await fleet();
    const ref: FastifyInstance = Fastify();
    let payload: unknown;
    ref.get('/', { schema: { response: { 200: ComplianceReply } } }, async () => payload);
    await ref.ready();
    try {
      const reader = new ComplianceReader({ redis, prefix: `cp${run - 1}`, credentials: f.credentials, accounts: f.accounts, policies: f.policies, facts: f.facts, keyNamePrefix: 'rotator' });
      const page = await reader.credentialPage({ limit: 2, filter: {}, now: T0 });
      const states = [
        { lastStartedAt: null, lastFinishedAt: null, ageSeconds: null, subaccounts: null, notListed: null, running: null, requestedAt: null, summary: null },
        { lastStartedAt: '2026-06-01T00:00:00.000Z', lastFinishedAt: '2026-06-01T00:01:00.000Z', ageSeconds: 5, subaccounts: 2, notListed: 0, running: { startedAt: '2026-06-01T00:02:00.000Z' }, requestedAt: null, summary: { credentials: 3, assessed: 3, withinPolicy: 2, withinPolicyPercent: 66.6, overdue: 1, oldestKeyAgeDays: 80, oldestKey: { accountSid: sid(1), credential: 'default', keySid: key(0) }, subaccounts: 2, closedSubaccounts: 0, sprawlKeys: 0, leftoverKeys: 0 } },
      ];
      for (const state of states) {
        const text = replyText(T0, state, 'credentials', `[${page.rows.join(',')}]`, 'Y3Vyc29y');
        payload = JSON.parse(text);
        expect(text).toBe((await ref.inject({ method: 'GET', url: '/' })).body);
      }
    } finally {
      await ref.close();
    }
  });
});

describe('RowCache', () => {
  it('keeps at most its bound, the rows used last among them', () => {
    const cache = new RowCache(10);
    const catalog = policyCatalog();
    const row = (i: number) => ({ json: `{"i":${i}}`, overdue: false, policy: 'default', labels: [], untilMs: 100, credentialRaw: `c${i}`, accountRaw: null, factsRaw: null, catalog, fromMs: 0 });
    for (let i = 0; i < 1000; i++) {
      cache.set(`id${i}`, row(i));
      // id0 is asked for all along: it stays.
      expect(cache.get('id0', 'c0', null, null, catalog, 1)?.json).toBe('{"i":0}');
      expect(cache.size).toBeLessThanOrEqual(10);
    }
    expect(cache.get('id999', 'c999', null, null, catalog, 1)?.json).toBe('{"i":999}');
    expect(cache.get('id500', 'c500', null, null, catalog, 1)).toBeUndefined();
  });
});

describe('credentialRowChangesAt', () => {
  const policy = fc.record({ interval: fc.constantFrom(30, 90), maxKeyAge: fc.option(fc.constantFrom(35, 60), { nil: null }) });
  const ms = fc.integer({ min: T0 - 200 * DAY_MS, max: T0 + 10 * DAY_MS });
  const facts = fc.record({ policy, keyCreatedAt: fc.option(ms, { nil: null }), hasKey: fc.boolean(), nextDueAt: fc.option(ms, { nil: null }), lastAt: fc.option(ms, { nil: null }) }).map(
    (r): CredentialFacts => ({
      accountSid: sid(1),
      name: 'default',
      kind: 'api-key',
      labels: ['hipaa'],
      policy: { name: 'p', interval: `P${r.policy.interval}D`, intervalMs: r.policy.interval * DAY_MS, maxKeyAge: r.policy.maxKeyAge === null ? null : `P${r.policy.maxKeyAge}D`, maxKeyAgeMs: r.policy.maxKeyAge === null ? null : r.policy.maxKeyAge * DAY_MS },
      currentKeySid: r.hasKey || r.keyCreatedAt !== null ? key(1) : null,
      keyCreatedAt: r.keyCreatedAt,
      lastRotation: r.lastAt === null ? null : { at: r.lastAt, outcome: 'succeeded' },
      nextDueAt: r.nextDueAt,
    }),
  );

  it('a row reads the same from now until the instant it gives, at every instant in between', () => {
    fc.assert(
      fc.property(facts, fc.constantFrom('active', 'suspended', 'closed'), ms, fc.double({ min: 0, max: 1, noNaN: true }), (c, status, now, f) => {
        const until = credentialRowChangesAt(c, status, now);
        expect(until).toBeGreaterThan(now);
        const row = credentialRow(c, status, now);
        const last = Number.isFinite(until) ? until - 1 : now + 400 * DAY_MS;
        for (const t of [last, now + Math.floor((last - now) * f)]) expect(credentialRow(c, status, t)).toEqual(row);
      }),
      { numRuns: 2000 },
    );
  });
});
