import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished, expectSettled } from '../helpers/engine.ts';
import { SimulatedConsumer } from '../helpers/consumer.ts';
import { dumpRedis, findSecrets } from '../helpers/leaks.ts';
import type { Runtime } from '../../src/runtime.ts';
import { STORE_KINDS } from '../helpers/stores.ts';

const REFRESH_MS = 250;
const DRAIN_SECONDS = 0.5; // ≥ the consumers' refresh interval, as the drain contract requires
const ROTATIONS_PER_ACCOUNT = 7;

describe.each(STORE_KINDS)('zero downtime with the %s store', (kind) => {
  let stack: Stack;
  let rt: Runtime;

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 3, drainSeconds: DRAIN_SECONDS, store: kind });
    await stack.seedAll();
    rt = await startEngine(stack);
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  it('5 consumers re-reading the store never get a 401 through 21 rotations over 3 subaccounts', async () => {
    const accounts = stack.emu.subaccounts.map((s) => s.sid);
    const consumers = Array.from({ length: 5 }, () => new SimulatedConsumer({ store: stack.store, pathOf: stack.path, accounts, refreshMs: REFRESH_MS, baseUrl: stack.emu.url }));
    consumers.forEach((c) => c.start());

    const finished = await Promise.all(
      accounts.map(async (sid) => {
        const done = [];
        for (let i = 0; i < ROTATIONS_PER_ACCOUNT; i++) {
          const rec = await startRotation(rt, sid, `zero-downtime ${i}`);
          done.push(await waitFinished(rt, rec.id));
        }
        return done;
      }),
    );
    const stats = await Promise.all(consumers.map((c) => c.stop()));

    const all = finished.flat();
    expect(all).toHaveLength(21);
    expect(all.map((r) => r.status)).toEqual(all.map(() => 'succeeded'));
    // Each rotation really replaced a key and waited out the drain before deleting it.
    for (const r of all) {
      expect(r.oldKeySid).toMatch(/^SK/);
      expect(r.newKeySid).toMatch(/^SK/);
      const deletedAt = Date.parse(r.history.find((h) => h.step === 'delete-old' && h.status === 'completed')!.at);
      expect(deletedAt - Date.parse(r.operationalizedAt!)).toBeGreaterThanOrEqual(DRAIN_SECONDS * 1000);
    }
    const total = stats.reduce((a, s) => ({ requests: a.requests + s.requests, unauthorized: a.unauthorized + s.unauthorized, keys: a.keys + s.keysUsed.size }), { requests: 0, unauthorized: 0, keys: 0 });
    expect(total.unauthorized, JSON.stringify(stats.flatMap((s) => s.failures))).toBe(0);
    expect(total.requests).toBeGreaterThan(200);
    // Consumers did move through the new keys (not just the first one).
    expect(new Set(stats.flatMap((s) => [...s.keysUsed])).size).toBeGreaterThanOrEqual(15);

    for (const sid of accounts) {
      const settled = await expectSettled(stack, sid);
      expect(settled.problems).toEqual([]);
      expect(settled.currentKeySid).toBe(finished[accounts.indexOf(sid)]!.at(-1)!.newKeySid);
    }

    // No key secret or auth token the emulator ever issued is anywhere in Redis or the logs.
    const secrets = [...stack.emu.issuedSecrets(), ...stack.backend.secrets];
    expect(secrets.length).toBeGreaterThan(21);
    expect(findSecrets(secrets, await dumpRedis(stack.redis.url))).toEqual([]);
    expect(findSecrets(secrets, [stack.logs.text()])).toEqual([]);
  });
});
