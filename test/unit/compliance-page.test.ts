import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { useEmbeddedRedis } from '../helpers/redis.ts';
import { AccountRepository } from '../../src/state/accounts.ts';
import { CredentialRepository } from '../../src/state/credentials.ts';
import { PolicyRepository } from '../../src/state/policies.ts';
import { ComplianceFacts, scanStatus } from '../../src/state/compliance.ts';
import { ComplianceReader, credentialFacts, RowTextCache } from '../../src/service/compliance.ts';
import { complianceRowsOn, type ComplianceRows } from '../../src/service/compliance-rows.ts';
import { entryOf } from '../../src/service/fleet.ts';
import { credentialRow, credentialRowChangesAt, DAY_MS, type CredentialFacts } from '../../src/domain/compliance.ts';
import { decodeRow, encodeRow, rowValues, storedRowText, type RowText } from '../../src/domain/compliance-row.ts';
import { isoTime } from '../../src/state/iso.ts';
import { replyText } from '../../src/api/routes/compliance.ts';
import { ComplianceReply } from '../../src/api/schemas.ts';

/**
 * The compliance page hands out rows rendered when their inputs change and stored in Redis, with
 * the clock's fields filled in at read time. The properties: a page is what rendering every row
 * afresh from its inputs gives — right after a write (the row is stale: the reader renders it),
 * after the background renderer stored it, after a policy edit, as the clock passes a day or a
 * deadline; a write racing a render is never overwritten by it; the stored template joined at any
 * instant is the domain's row; and the page's bytes are what the schema's serializer makes of them.
 */
const HOUR = 3_600_000;
/** A row as the first stored layout held it (its JSON in parts, the clock's fields cut out), after its stamp. */
const LEGACY_ROW = [
  '{"accountSid":"AC00000000000000000000000000000001","credential":"default","kind":"api-key","labels":["pci"],"subaccountStatus":"active","policy":"default","policyInterval":"P90D","maxKeyAge":null,"allowedKeyAgeDays":90,"keySid":"SK00000000000000000000000000000077","keyCreatedAt":"2026-03-13T12:00:00.000Z","keyAgeDays":',
  '1773403200000',
  ',"lastRotationAt":"2026-03-13T12:00:00.000Z","lastRotationOutcome":"succeeded","nextDueAt":"2026-06-11T12:00:00.000Z","overdue":',
  '1781179200000',
  '1',
  '7776000000',
  '',
  ` days old, beyond the policy default's interval P90D"`,
  ',"scannedAt":"2026-05-31T12:00:00.000Z"}',
  'default',
  'pci',
].join('\x1f');

const T0 = Date.UTC(2026, 5, 1, 12);
const sid = (i: number): string => `AC${i.toString(16).padStart(32, '0')}`;
const key = (i: number): string => `SK${i.toString(16).padStart(32, '0')}`;

describe('compliance page: kept rows', () => {
  const embedded = useEmbeddedRedis('cpage');
  let redis: Redis;
  let run = 0;
  beforeAll(() => {
    redis = embedded.connection();
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
    const rows = complianceRowsOn(redis, prefix, { credentials, policies });
    const reader = new ComplianceReader({ redis, prefix, credentials, accounts, policies, facts, keyNamePrefix: 'rotator', rows });
    /** Every row rendered afresh from the repositories, as the report's domain judges it at `now`. */
    const reference = async (now: number) => {
      const catalog = await policies.catalog();
      const out: Array<Record<string, unknown>> = [];
      for await (const page of credentials.all()) {
        for (const c of page) {
          const account = await accounts.get(c.accountSid);
          const scanned = (await facts.getMany([c.accountSid]))[0];
          const row = credentialRow(credentialFacts(entryOf(c, account, catalog), scanned), account?.status ?? scanned?.status ?? 'active', now);
          out.push({ ...row, scannedAt: scanned ? isoTime(scanned.scannedAtMs) : null });
        }
      }
      return out;
    };
    /**
     * The page read twice at `now`: as the reader serves it with the rows as they are (stale after a
     * write), and after the background renderer has stored every row. Both are the reference.
     */
    const page = async (now: number, filter = {}) => {
      const read = async () => (await reader.credentialPage({ limit: 10, filter, now })).rows.map((r) => JSON.parse(r) as Record<string, unknown>);
      const first = await read();
      while (!(await rows.drainOnce()).idle);
      expect(await rows.store.dirtyCount()).toBe(0);
      const stored = await read();
      expect(stored).toEqual(first);
      if (Object.keys(filter).length === 0) expect(stored).toEqual(await reference(now));
      return stored;
    };
    return { accounts, credentials, policies, facts, rows, page, prefix };
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

  it('rows stored in the first layout (before the upgrade) are rendered again: by a reader that meets one, and all of them by one background walk', async () => {
    const f = await fleet();
    const before = await f.page(T0);
    const ids = (await f.rows.store.page('-', 10)).ids;
    /** What the previous release stored: the row's JSON text in parts, under a stamp still current (here a row of another key and label). */
    const downgrade = async () => {
      const p = await f.rows.store.page('-', 10);
      for (const [i, id] of ids.entries()) await redis.set(f.rows.store.keys.complianceRow(id), `${p.stamps[i]}\x1f${LEGACY_ROW}`);
      // …and the version it recorded once every row was rendered: the policies' alone.
      await f.rows.store.setRenderedVersion(await f.policies.version());
    };
    const layouts = async () => (await f.rows.store.rows(ids)).map((r) => r!.split('\x1f')[1]);
    await downgrade();
    const reader = new ComplianceReader({ redis, prefix: f.prefix, credentials: f.credentials, accounts: f.accounts, policies: f.policies, facts: f.facts, keyNamePrefix: 'rotator', rows: f.rows });
    const read = await reader.credentialPage({ limit: 10, filter: {}, now: T0 });
    expect(read.rows.map((r) => JSON.parse(r) as unknown)).toEqual(before);
    expect(await layouts()).toEqual(['c2', 'c2', 'c2']);
    // Nothing was written since: only the recorded version tells the renderer to walk the fleet again.
    await downgrade();
    expect(await f.rows.store.dirtyCount()).toBe(0);
    const first = await f.rows.drainOnce();
    expect(first.walked).toBe(2);
    expect((await f.rows.drainOnce()).idle).toBe(true);
    expect(await layouts()).toEqual(['c2', 'c2', 'c2']);
  });

  it('a page read with its rows and the scan status in one script is what rows() and status() read on their own', async () => {
    const f = await fleet();
    await f.page(T0);
    const both = async () => {
      const p = await f.rows.store.page('-', 2, { withRows: true, withScan: true });
      expect(p.ids).toHaveLength(3);
      expect(p.stamps).toEqual((await f.rows.store.page('-', 2)).stamps);
      expect(p.rows).toEqual(await f.rows.store.rows(p.ids.slice(0, 2)));
      expect(scanStatus(p.scan!.last, p.scan!.lockMs, p.scan!.requestedMs)).toEqual(await f.facts.status());
      return p;
    };
    expect((await both()).scan).toEqual({ last: '', lockMs: '', requestedMs: '' });
    await f.facts.setLastScan({ startedAt: '2026-06-01T00:00:00.000Z', finishedAt: '2026-06-01T00:01:00.000Z', durationMs: 60_000, subaccounts: 2, listed: 1, notListed: 1, credentials: 3, summary: { credentials: 3, assessed: 3, withinPolicy: 2, withinPolicyPercent: 66.6, overdue: 1, oldestKeyAgeDays: 80, oldestKey: null, subaccounts: 2, closedSubaccounts: 0, sprawlKeys: 0, leftoverKeys: 0 } });
    expect(await f.facts.lock(`${T0}:host-1/42/token`, 60_000)).toBe(true);
    await f.facts.request(T0 + 5);
    expect((await both()).scan!.lockMs).toBe(String(T0));
  });

  it('the page is the schema serializer’s output of its own content', async () => {
    const f = await fleet();
    const ref: FastifyInstance = Fastify();
    let payload: unknown;
    ref.get('/', { schema: { response: { 200: ComplianceReply } } }, async () => payload);
    await ref.ready();
    try {
      const reader = new ComplianceReader({ redis, prefix: f.prefix, credentials: f.credentials, accounts: f.accounts, policies: f.policies, facts: f.facts, keyNamePrefix: 'rotator', rows: f.rows });
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

/** The stored rows of the first `limit` credentials, '' where none is current. */
async function currentRows(rows: ComplianceRows, limit: number): Promise<string[]> {
  const p = await rows.store.page('-', limit);
  const ids = p.ids.slice(0, limit);
  const raw = await rows.store.rows(ids);
  return raw.map((r, i) => (r && r.startsWith(`${p.stamps[i]}\x1f`) ? r : ''));
}

describe('stored rows', () => {
  const embedded = useEmbeddedRedis('crows');
  let redis: Redis;
  beforeAll(() => {
    redis = embedded.connection();
  });

  it('a render that read its inputs before a write does not store over it; the subaccount stays dirty until rendered again', async () => {
    const prefix = 'race';
    const accounts = new AccountRepository(redis, prefix);
    const credentials = new CredentialRepository(redis, prefix);
    const policies = new PolicyRepository(redis, prefix);
    const rows = complianceRowsOn(redis, prefix, { credentials, policies });
    await accounts.upsertMany([{ accountSid: sid(1), friendlyName: 'one', status: 'active' }], T0);
    await credentials.ensure({ accountSid: sid(1), name: 'default' }, { now: T0 });
    // What the render read, then a write (labels), then its store with what it read.
    const before = await rows.store.inputs([sid(1)]);
    await accounts.patch(sid(1), { labels: ['hipaa'] });
    expect(await rows.store.store([{ sid: sid(1), gen: before.gens[0] ?? null, rows: [{ id: `${sid(1)}/default`, text: 'old' }] }])).toBe(0);
    expect(await rows.store.dirty(10)).toEqual([sid(1)]);
    expect(await currentRows(rows, 10)).toEqual(['']);
    // Rendered again: stored, clean, and the page hands it out.
    await rows.render([sid(1)]);
    expect(await rows.store.dirtyCount()).toBe(0);
    const after = await currentRows(rows, 10);
    const v = decodeRow(after[0]!)!;
    expect([JSON.parse(v.policy), JSON.parse(v.labels)]).toEqual(['hipaa', ['hipaa']]);
  });

  it('a policy edit makes every row stale until the background re-render, in chunks, has passed it', async () => {
    const prefix = 'walk';
    const accounts = new AccountRepository(redis, prefix);
    const credentials = new CredentialRepository(redis, prefix);
    const policies = new PolicyRepository(redis, prefix);
    const rows = complianceRowsOn(redis, prefix, { credentials, policies });
    await accounts.upsertMany(Array.from({ length: 30 }, (_, i) => ({ accountSid: sid(i), friendlyName: `n${i}`, status: 'active' })), T0);
    for (let i = 0; i < 30; i++) await credentials.ensure({ accountSid: sid(i), name: 'default' }, { now: T0 });
    while (!(await rows.drainOnce({ chunk: 4, maxChunks: 2 })).idle);
    expect((await currentRows(rows, 50)).every((r) => r !== '')).toBe(true);
    await policies.put({ name: 'default', interval: 'P45D' });
    expect((await currentRows(rows, 50)).every((r) => r === '')).toBe(true);
    const walked: number[] = [];
    for (;;) {
      const r = await rows.drainOnce({ chunk: 4, maxChunks: 2 });
      if (r.idle) break;
      walked.push(r.walked);
    }
    // 30 subaccounts, at most 8 credentials a chunk and 2 chunks a round: each round bounded.
    expect(walked.length).toBeGreaterThanOrEqual(2);
    expect(walked.every((n) => n <= 16)).toBe(true);
    expect(walked.reduce((a, b) => a + b, 0)).toBe(30);
    expect((await currentRows(rows, 50)).map((r) => decodeRow(r)!.allowedMs)).toEqual(Array.from({ length: 30 }, () => 45 * DAY_MS));
  });
});

describe('RowTextCache', () => {
  const text = (json: string, stamp = '0:1', at = 0, until = Infinity): RowText => ({ json, stamp, at, until, overdue: false, labels: '[]', policy: '"default"' });

  it('keeps at most its bound, the rows used last among them, each only for its own stamp and the instants its text holds', () => {
    const cache = new RowTextCache(10);
    for (let i = 0; i < 1000; i++) {
      cache.set(`id${i}`, text(`p${i}`, `0:${i}`, 100, 200));
      // id0 is asked for all along: it stays.
      expect(cache.get('id0', '0:0', 150)?.json).toBe('p0');
      expect(cache.size).toBeLessThanOrEqual(10);
    }
    expect(cache.get('id999', '0:999', 100)?.json).toBe('p999');
    // A write (a new stamp), the clock past the text's last instant or before its first: not used.
    expect(cache.get('id999', '1:999', 150)).toBeUndefined();
    expect(cache.get('id999', '0:999', 200)).toBeUndefined();
    expect(cache.get('id999', '0:999', 99)).toBeUndefined();
    expect(cache.get('id500', '0:500', 150)).toBeUndefined();
  });

  it('keeps a row read from Redis from its second read at one stamp: a walk reading each row once leaves the kept rows in place', () => {
    const cache = new RowTextCache(10);
    const t = text('hot');
    expect(cache.admit('hot', t)).toBe(false);
    expect(cache.get('hot', '0:1', 0)).toBeUndefined();
    expect(cache.admit('hot', t)).toBe(true);
    expect(cache.get('hot', '0:1', 0)).toBe(t);
    // Read again after a write (a new stamp): a kept row is replaced at once, the old text not used again.
    const t2 = text('hot2', '0:2');
    expect(cache.admit('hot', t2)).toBe(true);
    expect(cache.get('hot', '0:1', 0)).toBeUndefined();
    expect(cache.get('hot', '0:2', 0)).toBe(t2);
    for (let i = 0; i < 1000; i++) cache.admit(`walk${i}`, t);
    expect(cache.size).toBe(1);
    expect(cache.get('hot', '0:2', 0)).toBe(t2);
  });

  it('keeps none with a bound of 0 (COMPLIANCE_KEEP_ROWS=0)', () => {
    const cache = new RowTextCache(0);
    const t = text('x');
    for (let i = 0; i < 3; i++) expect(cache.admit('x', t)).toBe(false);
    cache.set('x', t);
    expect(cache.size).toBe(0);
    expect(cache.get('x', '0:1', 0)).toBeUndefined();
  });
});

describe('stored row texts', () => {
  const policy = fc.record({ name: fc.constantFrom('default', 'hipaa', "o'brien"), interval: fc.constantFrom(30, 90), maxKeyAge: fc.option(fc.constantFrom(35, 60), { nil: null }) });
  const ms = fc.integer({ min: T0 - 200 * DAY_MS, max: T0 + 10 * DAY_MS });
  const facts = fc
    .record({ policy, keyCreatedAt: fc.option(ms, { nil: null }), hasKey: fc.boolean(), nextDueAt: fc.option(ms, { nil: null }), lastAt: fc.option(ms, { nil: null }), outcome: fc.constantFrom('succeeded', 'failed', 'rolled_back'), labels: fc.subarray(['hipaa', 'pci', 'tier=gold']), name: fc.constantFrom('default', 'web-prod') })
    .map(
      (r): CredentialFacts => ({
        accountSid: sid(7),
        name: r.name,
        kind: 'api-key',
        labels: r.labels,
        policy: { name: r.policy.name, interval: `P${r.policy.interval}D`, intervalMs: r.policy.interval * DAY_MS, maxKeyAge: r.policy.maxKeyAge === null ? null : `P${r.policy.maxKeyAge}D`, maxKeyAgeMs: r.policy.maxKeyAge === null ? null : r.policy.maxKeyAge * DAY_MS },
        currentKeySid: r.hasKey || r.keyCreatedAt !== null ? key(3) : null,
        keyCreatedAt: r.keyCreatedAt,
        lastRotation: r.lastAt === null ? null : { at: r.lastAt, outcome: r.outcome, rotationId: 'r1' },
        nextDueAt: r.nextDueAt,
      }),
    );

  it('a stored row read at any instant is the domain row at that instant, byte for byte, and holds until the instant it gives', () => {
    fc.assert(
      fc.property(facts, fc.constantFrom('active', 'suspended', 'closed'), fc.option(ms, { nil: null }), ms, fc.double({ min: 0, max: 1, noNaN: true }), (c, status, scanned, now, f) => {
        const scannedAt = scanned === null ? null : new Date(scanned).toISOString();
        const stored = encodeRow('3:7', rowValues(c, status, scannedAt));
        const row = (t: number) => JSON.stringify({ ...credentialRow(c, status, t), scannedAt });
        const t = storedRowText(c.accountSid, c.name, stored, now)!;
        expect(t.json).toBe(row(now));
        expect(t).toMatchObject({ stamp: '3:7', at: now, overdue: credentialRow(c, status, now).overdue, labels: JSON.stringify(c.labels), policy: JSON.stringify(c.policy.name) });
        expect(t.until).toBeGreaterThan(now);
        const last = Number.isFinite(t.until) ? t.until - 1 : now + 400 * DAY_MS;
        for (const at of [last, now + Math.floor((last - now) * f)]) expect(row(at)).toBe(t.json);
        // …and not past it: the next instant reads differently.
        if (Number.isFinite(t.until)) expect(row(t.until)).not.toBe(t.json);
      }),
      { numRuns: 3000 },
    );
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
