import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';
import { AccountRepository, accountView, accountViewJson, fromStored, type StoredAccount } from '../../src/state/accounts.ts';

/**
 * GET /v1/accounts joins each item's JSON text built from the stored fields (accountViewJson):
 * the property is that it is byte for byte JSON.stringify of accountView of the record, which
 * test/unit/list-pages.test.ts proves is the schema serializer's output.
 */
describe('accounts page as text', () => {
  // Dates Date can write, a policy period (90 days) after them included.
  const ms = fc.integer({ min: -8.6e15, max: 8.6e15 });
  const text = fc.string({ unit: 'binary', maxLength: 12 });
  const stored: fc.Arbitrary<StoredAccount> = fc.record(
    { n: text, s: text, p: fc.constantFrom('m', 'q', 'x'), k: text, r: ms, f: ms, o: text, l: fc.array(text, { maxLength: 2 }), q: text, z: fc.constant(1 as const), a: fc.constant(1 as const) },
    { requiredKeys: [] },
  );

  it('is JSON.stringify(accountView(record)) for any stored account and time', () => {
    fc.assert(
      fc.property(text, stored, ms, (sid, a, now) => {
        expect(accountViewJson(sid, a, now)).toBe(JSON.stringify(accountView(fromStored(sid, a), now)));
      }),
      { numRuns: 2000 },
    );
  });

  let dir: string;
  let server: EmbeddedRedis;
  let redis: Redis;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-accpage-'));
    server = await startEmbeddedRedis({ dir, persist: false });
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('listJson pages as list does, each item the view of the record', async () => {
    const accounts = new AccountRepository(redis, 'accpage', { defaultPolicy: 'monthly' });
    const now = Date.now();
    const sid = (i: number) => `AC${i.toString(16).padStart(32, '0')}`;
    await accounts.upsertMany(['Customer "1"', 'a/b\\c', '\u00e9t\u00e9 \ud83d\ude00', '', 'x'].map((friendlyName, i) => ({ accountSid: sid(i), friendlyName, status: i === 2 ? 'suspended' : 'active' })), now - 200 * 86_400_000);
    await accounts.recordRotation(sid(1), `SK${'c'.repeat(32)}`, new Date(now - 3 * 86_400_000).toISOString());
    for (const cursor of [undefined, sid(2), sid(4)]) {
      const page = await accounts.list({ limit: 3, cursor });
      const json = await accounts.listJson({ limit: 3, cursor }, now);
      expect(json.nextCursor).toBe(page.nextCursor);
      expect(json.items).toEqual(page.items.map((a) => JSON.stringify(accountView(a, now))));
    }
  });
});
