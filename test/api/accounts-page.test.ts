import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { useEmbeddedRedis } from '../helpers/redis.ts';
import { AccountRepository, accountView, AccountViewCache, fromStored, type StoredAccount } from '../../src/state/accounts.ts';

/**
 * GET /v1/accounts joins each item's JSON text, kept per subaccount (AccountViewCache) while its
 * stored text and the view's time-dependent fields (keyAgeDays, overdue) hold: the property is that
 * it is byte for byte JSON.stringify of accountView of the record at that time, which
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

  it('a kept item is JSON.stringify(accountView(record)) at any later or earlier time, for any stored account', () => {
    const day = 86_400_000;
    // Times near the day and deadline boundaries of the stored times, and anywhere.
    const near = (base: number) => fc.integer({ min: -400, max: 400 }).chain((d) => fc.constantFrom(base + d * day, base + d * day - 1, base + d * day + 1));
    fc.assert(
      fc.property(text, stored, ms, fc.array(fc.oneof(ms, near(0)), { minLength: 1, maxLength: 8 }), (sid, a, t0, offsets) => {
        const views = new AccountViewCache();
        const raw = JSON.stringify(a);
        const base = typeof a.r === 'number' ? a.r : typeof a.f === 'number' ? a.f : 0;
        for (const t of [t0, ...offsets.map((o) => (Math.abs(o) < 500 * day ? base + o : o))]) {
          if (Math.abs(t) > 8.6e15) continue;
          expect(views.json(sid, raw, t)).toBe(JSON.stringify(accountView(fromStored(sid, a), t)));
        }
      }),
      { numRuns: 3000 },
    );
  });

  const embedded = useEmbeddedRedis('accpage');
  let redis: Redis;
  beforeAll(() => {
    redis = embedded.connection();
  });

  it('listJson pages as list does, each item the view of the record', async () => {
    const accounts = new AccountRepository(redis, 'accpage', { defaultPolicy: 'monthly' });
    const now = Date.now();
    const sid = (i: number) => `AC${i.toString(16).padStart(32, '0')}`;
    await accounts.upsertMany(['Customer "1"', 'a/b\\c', '\u00e9t\u00e9 \ud83d\ude00', '', 'x'].map((friendlyName, i) => ({ accountSid: sid(i), friendlyName, status: i === 2 ? 'suspended' : 'active' })), now - 200 * 86_400_000);
    await accounts.recordRotation(sid(1), `SK${'c'.repeat(32)}`, new Date(now - 3 * 86_400_000).toISOString());
    // Read twice (the second from the kept items), then after a write, and a year later.
    for (const [pass, t] of [[0, now], [1, now], [2, now], [3, now + 365 * 86_400_000]] as const) {
      if (pass === 2) await accounts.recordRotation(sid(0), `SK${'d'.repeat(32)}`, new Date(now).toISOString());
      for (const cursor of [undefined, sid(2), sid(4)]) {
        const page = await accounts.list({ limit: 3, cursor });
        const json = await accounts.listJson({ limit: 3, cursor }, t);
        expect(json.nextCursor).toBe(page.nextCursor);
        expect(json.items).toEqual(page.items.map((a) => JSON.stringify(accountView(a, t))));
      }
    }
  });
});
