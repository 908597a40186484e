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
import { rotationSummary } from '../../src/api/routes/rotations.ts';
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
    redis = new Redis(server.url);
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
      undo: opt(fc.record({ reason: fc.constantFrom('cancel', 'rollback', 'failure'), drain: opt(fc.boolean()), deleteAfter: opt(iso), requestedBy: opt(text), completedAt: opt(iso) }, { requiredKeys: ['reason'] })),
      error: opt(fc.record({ code: text, message: text })),
      lastError: opt(fc.record({ code: text, message: text, at: iso })),
      history: fc.array(fc.record({ step: fc.constantFrom(...STEPS), status: fc.constantFrom('created', 'completed', 'failed'), at: iso, detail: opt(text), startedAt: opt(iso), by: opt(text), count: opt(fc.nat(5)) }, { requiredKeys: ['step', 'status', 'at'] }), { maxLength: 6 }),
    })
    .map(({ createdMs, ...r }): RotationRecord => {
      const rec = { ...r, id: newRotationId(createdMs), kind: 'api-key', accountSid: '', createdAt: new Date(createdMs).toISOString(), rev: 0 } as RotationRecord;
      // Absent optional fields stay absent, as the worker leaves them.
      for (const [k, v] of Object.entries(rec)) if (v === undefined) delete (rec as unknown as Record<string, unknown>)[k];
      return rec;
    });

  /** The layout written before history went last: history first, everything else after it. */
  const historyFirst = (rec: RotationRecord): string => {
    const stored = JSON.parse(encodeRecord(rec)) as Record<string, unknown>;
    const { history, ...rest } = stored;
    return JSON.stringify({ history, ...rest });
  };

  it('a rotations page is the schema serializer’s output of the full records, without history', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(record, fc.boolean()), { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 14 }), async (recs, limit) => {
        const prefix = `p${run++}`;
        const repo = new RotationRepository(redis, prefix);
        for (const [i, [rec, oldLayout]] of recs.entries()) {
          rec.accountSid = `AC${i.toString(16).padStart(32, '0')}`;
          expect((await repo.create(rec)).created).toBe(true);
          if (oldLayout) await redis.set(repo.keys.rotation(rec.id), historyFirst(rec));
        }
        const page = await repo.list({ limit, withoutHistory: true });
        const full = await Promise.all(page.items.map(async (r) => (await repo.get(r.id))!));
        expect(page.items.every((r) => r.history.length === 0)).toBe(true);
        const ours = JSON.stringify({ items: page.items.map(rotationSummary), nextCursor: page.nextCursor });
        expect(ours).toBe(await viaSchema('/rotations', { items: full.map(publicRotation), nextCursor: page.nextCursor }));
        expect(page.items).toHaveLength(Math.min(limit, recs.length));
        expect(page.nextCursor !== null).toBe(recs.length > limit);
      }),
      { numRuns: 40 },
    );
  });

  it('pages the same records with and without history, in the same order, with the same cursors', async () => {
    const repo = new RotationRepository(redis, 'same');
    const base = Date.now() - 100_000;
    for (let i = 0; i < 25; i++) {
      const at = new Date(base + Math.floor(i / 3) * 1000).toISOString(); // ties: three per millisecond
      const rec: RotationRecord = { id: newRotationId(base + Math.floor(i / 3) * 1000), kind: 'api-key', accountSid: `AC${i.toString(16).padStart(32, '0')}`, status: 'succeeded', step: 'done', dryRun: false, trigger: 'api', attempts: 1, createdAt: at, updatedAt: at, rev: 0, history: [{ step: 'done', status: 'completed', at }] };
      await repo.create(rec);
      if (i % 2) await redis.set(repo.keys.rotation(rec.id), historyFirst(rec));
    }
    const walk = async (withoutHistory: boolean) => {
      const ids: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 10 && (pages === 0 || cursor); pages++) {
        const page = await repo.list({ limit: 4, cursor, withoutHistory });
        ids.push(...page.items.map((r) => r.id));
        cursor = page.nextCursor ?? undefined;
      }
      return ids;
    };
    const summaries = await walk(true);
    expect(summaries).toHaveLength(25);
    expect(new Set(summaries).size).toBe(25);
    expect(summaries).toEqual(await walk(false));
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

  it('formats epoch milliseconds exactly as Date.prototype.toISOString', () => {
    const edges = [0, -1, 1, -62_167_219_200_000, -62_167_219_200_001, 253_402_300_799_999, 253_402_300_800_000, 951_782_400_000, 1.5, -8.64e15, 8.64e15];
    for (const t of edges) expect(isoTime(t)).toBe(new Date(t).toISOString());
    fc.assert(fc.property(fc.integer({ min: -8.64e15, max: 8.64e15 }), (t) => isoTime(t) === new Date(t).toISOString()), { numRuns: 20_000 });
  });
});
