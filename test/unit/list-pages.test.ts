import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';
import { encodeRecord, RotationRepository } from '../../src/state/rotations.ts';
import { AccountRepository, accountView } from '../../src/state/accounts.ts';
import { isoTime } from '../../src/state/iso.ts';
import { newRotationId, publicRotation, STATUSES, STEPS, type RotationRecord } from '../../src/domain/rotation.ts';
import { AccountsReply, ListReply } from '../../src/api/schemas.ts';

/**
 * List pages skip the stored history and are serialised natively rather than through the response
 * schema. The properties: a page's bytes are exactly what the schema's serializer makes of the
 * full records (as GET /v1/rotations/{id} reads them), for any content, in the stored layout
 * written now and in the one written before (history not last).
 */
describe('list pages', () => {
  let dir: string;
  let server: EmbeddedRedis;
  let redis: Redis;
  /** The schema serializer Fastify uses for these routes, as the reference. */
  let ref: FastifyInstance;
  let refPayload: unknown;
  let run = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-pages-'));
    server = await startEmbeddedRedis({ dir, persist: false });
    // Auto-pipelined, as the shared connection is in a process that runs a worker (the API's is not).
    redis = new Redis(server.url, { enableAutoPipelining: true });
    ref = Fastify();
    ref.get('/rotations', { schema: { response: { 200: ListReply } } }, async () => refPayload);
    ref.get('/accounts', { schema: { response: { 200: AccountsReply } } }, async () => refPayload);
    await ref.ready();
  });
  afterAll(async () => {
    await ref?.close();
    redis?.disconnect();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const viaSchema = async (url: string, payload: unknown): Promise<string> => {
    refPayload = payload;
    return (await ref.inject({ method: 'GET', url })).body;
  };

  // Strings that could confuse a reader of the stored JSON, and Unicode (lone surrogates included).
  const text = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.constantFrom('"history":[', '"history":["x"]}', ']}', '\\', '\\"', 'a\nb', '\ud800', '</script>'),
  );
  const ms = fc.integer({ min: 0, max: 4_102_444_800_000 });
  const iso = ms.map((t) => new Date(t).toISOString());
  const opt = <T,>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
  const record = fc
    .record({
      createdMs: ms,
      status: fc.constantFrom(...STATUSES),
      step: fc.constantFrom(...STEPS),
      reason: opt(text),
      dryRun: fc.boolean(),
      trigger: fc.constantFrom('api', 'schedule', 'demo'),
      requestedBy: opt(text),
      oldKeySid: opt(fc.option(fc.constant(`SK${'a'.repeat(32)}`), { nil: null })),
      newKeySid: opt(fc.constant(`SK${'b'.repeat(32)}`)),
      updatedAt: iso,
      operationalizedAt: opt(iso),
      promoteAfter: opt(iso),
      finishedAt: opt(iso),
      attempts: fc.nat(9),
      restarts: opt(fc.nat(3)),
      undo: opt(fc.record({ reason: fc.constantFrom('cancel', 'rollback', 'failure'), drain: opt(fc.boolean()), deleteAfter: opt(iso), requestedBy: opt(text), requestedAt: opt(iso), completedAt: opt(iso) }, { requiredKeys: ['reason'] })),
      error: opt(fc.record({ code: text, message: text })),
      lastError: opt(fc.record({ code: text, message: text, at: iso })),
      // 'undo' entries with "… requested" details: where undoRequested takes its time from when the undo has no requestedAt.
      history: fc.array(fc.record({ step: fc.constantFrom(...STEPS), status: fc.constantFrom('created', 'completed', 'failed', 'undo'), at: iso, detail: opt(fc.oneof(text, fc.constantFrom('cancel requested by ci', 'rollback requested'))), startedAt: opt(iso), by: opt(text), count: opt(fc.nat(5)) }, { requiredKeys: ['step', 'status', 'at'] }), { maxLength: 6 }),
    })
    .map(({ createdMs, ...r }): RotationRecord => {
      const rec = { ...r, id: newRotationId(createdMs), kind: 'api-key', credential: 'default', accountSid: '', createdAt: new Date(createdMs).toISOString(), rev: 0 } as RotationRecord;
      // Absent optional fields stay absent, as the worker leaves them.
      for (const [k, v] of Object.entries(rec)) if (v === undefined) delete (rec as unknown as Record<string, unknown>)[k];
      return rec;
    });

  /**
   * Layouts earlier versions wrote, which must still read: one JSON object with the times as epoch
   * milliseconds, history last (`v1`) or, before that, first.
   */
  const v1 = (rec: RotationRecord, historyAt: 'last' | 'first' = 'last'): string => {
    const ms = (t: string | undefined) => (t === undefined ? undefined : Date.parse(t));
    const { history, ...rest } = rec;
    const top: Record<string, unknown> = { ...rest };
    for (const k of ['createdAt', 'updatedAt', 'operationalizedAt', 'promoteAfter', 'finishedAt'] as const) if (rec[k] !== undefined) top[k] = ms(rec[k]);
    if (rec.undo) top.undo = { ...rec.undo, ...(rec.undo.deleteAfter ? { deleteAfter: ms(rec.undo.deleteAfter) } : {}), ...(rec.undo.completedAt ? { completedAt: ms(rec.undo.completedAt) } : {}) };
    const h = history.map((e) => ({ ...e, at: ms(e.at), ...(e.startedAt ? { startedAt: ms(e.startedAt) } : {}) }));
    return JSON.stringify(historyAt === 'last' ? { ...top, history: h } : { history: h, ...top });
  };
  const historyFirst = (rec: RotationRecord): string => v1(rec, 'first');
  const layouts = ['now', 'v1', 'history first'] as const;
  const storeAs = async (redis: Redis, repo: RotationRepository, rec: RotationRecord, layout: (typeof layouts)[number]) => {
    if (layout !== 'now') await redis.set(repo.keys.rotation(rec.id), v1(rec, layout === 'v1' ? 'last' : 'first'));
  };

  it('a rotations page is the schema serializer’s output of the full records, without history', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(record, fc.constantFrom(...layouts)), { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 14 }), async (recs, limit) => {
        const prefix = `p${run++}`;
        const repo = new RotationRepository(redis, prefix);
        for (const [i, [rec, layout]] of recs.entries()) {
          rec.accountSid = `AC${i.toString(16).padStart(32, '0')}`;
          expect((await repo.create(rec)).created).toBe(true);
          await storeAs(redis, repo, rec, layout);
          // Every layout reads back as the record written.
          expect(await repo.get(rec.id)).toEqual(rec);
        }
        const page = await repo.summaryPage({ limit });
        const full = await repo.list({ limit });
        const ours = `{"items":[${page.items.join(',')}],"nextCursor":${JSON.stringify(page.nextCursor)}}`;
        expect(ours).toBe(await viaSchema('/rotations', { items: full.items.map(publicRotation), nextCursor: full.nextCursor }));
        expect(page.items).toHaveLength(Math.min(limit, recs.length));
        expect(page.nextCursor !== null).toBe(recs.length > limit);
        expect(page.nextCursor).toBe(full.nextCursor);
      }),
      { numRuns: 40 },
    );
  });

  it('pages the same records as list() does, in the same order, with ties, filters and every layout', async () => {
    const repo = new RotationRepository(redis, 'same');
    const base = Date.now() - 100_000;
    const statuses = ['succeeded', 'failed', 'running'] as const;
    for (let i = 0; i < 40; i++) {
      const at = new Date(base + Math.floor(i / 3) * 1000).toISOString(); // ties: three per millisecond
      const rec: RotationRecord = { id: newRotationId(base + Math.floor(i / 3) * 1000), kind: 'api-key', credential: 'default', accountSid: `AC${(i % 3).toString(16).padStart(32, '0')}`, status: statuses[i % 3]!, step: 'done', dryRun: false, trigger: 'api', attempts: 1, createdAt: at, updatedAt: at, rev: 0, history: [{ step: 'done', status: 'completed', at }] };
      // A distinct account per record keeps the in-flight lock out of the way; the index is what counts.
      await repo.create({ ...rec, accountSid: `AC${i.toString(16).padStart(32, 'f')}` });
      await redis.zadd(repo.keys.accountRotations(rec.accountSid), String(Date.parse(at)), rec.id);
      await redis.set(repo.keys.rotation(rec.id), i % 3 === 0 ? v1(rec) : i % 3 === 1 ? historyFirst(rec) : encodeRecord(rec));
    }
    const walk = async (filter: { accountSid?: string; status?: (typeof statuses)[number] }, limit: number, summaries: boolean) => {
      const ids: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 60 && (pages === 0 || cursor); pages++) {
        if (summaries) {
          const page = await repo.summaryPage({ ...filter, limit, cursor });
          ids.push(...page.items.map((b) => (JSON.parse(b.toString()) as { id: string }).id));
          cursor = page.nextCursor ?? undefined;
        } else {
          const page = await repo.list({ ...filter, limit, cursor });
          ids.push(...page.items.map((r) => r.id));
          cursor = page.nextCursor ?? undefined;
        }
      }
      return ids;
    };
    for (const [filter, expected] of [
      [{}, 40],
      [{ status: 'failed' }, 13],
      [{ accountSid: `AC${'1'.padStart(32, '0')}` }, 13],
      [{ accountSid: `AC${'1'.padStart(32, '0')}`, status: 'failed' }, 13],
      [{ accountSid: `AC${'1'.padStart(32, '0')}`, status: 'running' }, 0],
    ] as const) {
      for (const limit of [1, 4, 50]) {
        const ids = await walk(filter, limit, true);
        expect(ids, JSON.stringify(filter)).toHaveLength(expected);
        expect(new Set(ids).size).toBe(expected);
        expect(ids).toEqual(await walk(filter, limit, false));
      }
    }
  });

  it('older layouts keep working in the write scripts: update, restart, prune, the in-flight check', async () => {
    const repo = new RotationRepository(redis, 'old');
    const at = new Date(Date.now() - 10 * 86_400_000).toISOString();
    const sid = `AC${'9'.padStart(32, '0')}`;
    const rec: RotationRecord = { id: newRotationId(Date.parse(at)), kind: 'api-key', credential: 'default', accountSid: sid, status: 'running', step: 'promote', dryRun: false, trigger: 'api', attempts: 1, createdAt: at, updatedAt: at, rev: 3, undo: { reason: 'failure', completedAt: at }, history: [{ step: 'promote', status: 'started', at }] };
    expect((await repo.create(rec)).created).toBe(true);
    await redis.set(repo.keys.rotation(rec.id), v1(rec));
    // In flight in the old layout: holds the account.
    const other = { ...rec, id: newRotationId(Date.parse(at) + 1), rev: 0 };
    expect(await repo.create(other)).toEqual({ created: false, existingId: rec.id });
    // rev read from the old layout: a stale base is refused and retried, the write lands.
    const failed = await repo.update(rec.id, (r) => ({ ...r, status: 'failed', step: 'promote' }), undefined, { ...rec, rev: 2 });
    expect(failed.rev).toBe(4);
    expect((await redis.get(repo.keys.rotation(rec.id)))!.includes('\n{"rev":4')).toBe(true);
    // Failed with its undo completed: no longer holds the account.
    await redis.set(repo.keys.rotation(rec.id), v1({ ...failed, rev: 4 }));
    expect((await repo.create(other)).created).toBe(true);
    expect(await repo.prune(Date.now())).toBe(1);
    expect(await repo.get(rec.id)).toBeUndefined();
    expect(await redis.zscore(repo.keys.accountRotations(sid), rec.id)).toBeNull();
  });

  it('an accounts page is the schema serializer’s output', async () => {
    const accounts = new AccountRepository(redis, 'acc');
    const now = Date.now();
    await accounts.upsertMany(['Customer "1"', 'a/b\\c', '\u00e9t\u00e9 \ud83d\ude00', ''].map((friendlyName, i) => ({ accountSid: `AC${i.toString(16).padStart(32, '0')}`, friendlyName, status: i === 2 ? 'suspended' : 'active' })), now - 200 * 86_400_000);
    await accounts.recordRotation(`AC${'1'.padStart(32, '0')}`, `SK${'c'.repeat(32)}`, new Date(now - 3 * 86_400_000).toISOString());
    const page = await accounts.list({ limit: 3 });
    expect(page.items.map((a) => a.accountSid)).toEqual([0, 1, 2].map((i) => `AC${i.toString(16).padStart(32, '0')}`));
    expect(page.nextCursor).toBe(`AC${'2'.padStart(32, '0')}`);
    const payload = { items: page.items.map((a) => accountView(a, now)), nextCursor: 'QUJD' };
    expect(JSON.stringify(payload)).toBe(await viaSchema('/accounts', payload));
    expect((await accounts.list({ limit: 3, cursor: page.nextCursor! })).items.map((a) => a.friendlyName)).toEqual(['']);
  });

  it('an accounts page serialised natively is the schema serializer’s output, for any content and time', async () => {
    const account = fc.record({
      accountSid: text,
      friendlyName: text,
      status: text,
      policy: fc.constantFrom('quarterly', 'monthly'),
      currentKeySid: fc.option(text, { nil: null }),
      lastRotatedAtMs: fc.option(ms, { nil: null }),
      firstSeenAtMs: ms,
    });
    await fc.assert(
      fc.asyncProperty(fc.array(account, { maxLength: 5 }), ms, async (items, now) => {
        const payload = { items: items.map((a) => accountView(a, now)), nextCursor: null };
        expect(JSON.stringify(payload)).toBe(await viaSchema('/accounts', payload));
      }),
      { numRuns: 300 },
    );
  });

  it('formats epoch milliseconds exactly as Date.prototype.toISOString', () => {
    const edges = [0, -1, 1, -62_167_219_200_000, -62_167_219_200_001, 253_402_300_799_999, 253_402_300_800_000, 951_782_400_000, 1.5, -8.64e15, 8.64e15];
    for (const t of edges) expect(isoTime(t)).toBe(new Date(t).toISOString());
    fc.assert(fc.property(fc.integer({ min: -8.64e15, max: 8.64e15 }), (t) => isoTime(t) === new Date(t).toISOString()), { numRuns: 20_000 });
  });
});
