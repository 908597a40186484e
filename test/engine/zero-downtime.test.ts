import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, waitFor, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished, expectSettled } from '../helpers/engine.ts';
import { contractFailures, SimulatedConsumer } from '../helpers/consumer.ts';
import { dumpRedis, findSecrets } from '../helpers/leaks.ts';
import type { Runtime } from '../../src/runtime.ts';
import { ENGINE_STORE_BACKENDS, storeBackendUnavailable, type StoreBackendKind } from '../helpers/stores.ts';
import { Redis } from 'ioredis';

async function keysOf(url: string): Promise<string[]> {
  const r = new Redis(url);
  try {
    return await r.keys('*');
  } finally {
    r.disconnect();
  }
}

const REFRESH_MS = 250;
const DRAIN_SECONDS = 0.5; // ≥ the consumers' refresh interval, as the drain contract requires
const ROTATIONS_PER_ACCOUNT = 7;
/** Subaccounts 0–2 start with a key current in the store; the last one starts empty (bootstrap). */
const SEEDED = 3;

/**
 * Each store on one Redis server; the file store once more on a three-primary Redis Cluster
 * (issue 18: the same rotations with every key Rotator and BullMQ use under one hash tag); and
 * the file store once more with the consumer gate (issue 15) deciding promote: the consumers
 * report the key they read before they use it, the drain maximum is far longer than the test,
 * and the gate alone lets each rotation through once all five have moved.
 */
type Variant = { kind: StoreBackendKind; redis: 'single' | 'cluster'; gate: boolean; name: string };
const VARIANTS: readonly Variant[] = [
  ...ENGINE_STORE_BACKENDS.map((kind): Variant => ({ kind, redis: 'single', gate: false, name: `${kind} store on single` })),
  { kind: 'file', redis: 'cluster', gate: false, name: 'file store on cluster' },
  { kind: 'file', redis: 'single', gate: true, name: 'file store (consumer gate) on single' },
];
const GATE_DRAIN_SECONDS = 600;

describe.each(VARIANTS)('zero downtime with the $name Redis', ({ kind, redis, gate }) => {
  const unavailable = storeBackendUnavailable(kind);
  let stack: Stack;
  let rt: Runtime;
  const drainSeconds = gate ? GATE_DRAIN_SECONDS : DRAIN_SECONDS;
  let consumerNames = 0;
  /** A heartbeat for each credential read (gate variant), straight into the registry the gate reads. */
  const reporter = () => {
    const consumer = `zd-${++consumerNames}`;
    return gate ? { onKey: async (accountSid: string, keySid: string) => void (await rt.consumers.report({ consumer, accountSid, credential: 'default', keySid, by: 'test' }, Date.now())) } : {};
  };

  beforeAll(async () => {
    if (unavailable) return;
    stack = await startStack({ subaccounts: SEEDED + 1, drainSeconds, store: kind, redis, ...(gate ? { env: { CONSUMER_GATE_RECHECK_SECONDS: '0.2' } } : {}) });
    await stack.seed(stack.emu.subaccounts.slice(0, SEEDED).map((s) => s.sid));
    rt = await startEngine(stack);
    if (gate) await rt.policies.put({ name: 'default', interval: 'P90D', consumerGate: { minDrain: 'PT0S', maxWait: 'PT1H', onMaxWait: 'hold' } });
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  it.skipIf(!!unavailable)('5 consumers re-reading the store never get a 401 through 21 rotations over 3 subaccounts', async () => {
    const accounts = stack.emu.subaccounts.slice(0, SEEDED).map((s) => s.sid);
    const consumers = Array.from({ length: 5 }, () => new SimulatedConsumer({ store: stack.store, pathOf: stack.path, accounts, refreshMs: REFRESH_MS, baseUrl: stack.emu.url, ...reporter() }));
    consumers.forEach((c) => c.start());
    // Gate variant: every consumer has reported before the first rotation (else the drain decides).
    if (gate) await waitFor('5 consumers to report on each subaccount', async () => (await Promise.all(accounts.map((sid) => rt.consumers.forCredential(sid, 'default', Date.now())))).every((l) => l.length === 5));

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
      if (!gate) expect(deletedAt - Date.parse(r.operationalizedAt!)).toBeGreaterThanOrEqual(DRAIN_SECONDS * 1000);
      // With the gate: long before the drain maximum, once all five consumers reported the new key.
      else {
        expect(deletedAt).toBeLessThan(Date.parse(r.promoteAfter!));
        expect(r.history.find((h) => h.step === 'promote' && h.status === 'completed')!.detail).toContain('5 of 5 consumers on the new key');
      }
    }
    const total = stats.reduce((a, s) => ({ requests: a.requests + s.requests, unauthorized: a.unauthorized + s.unauthorized, keys: a.keys + s.keysUsed.size }), { requests: 0, unauthorized: 0, keys: 0 });
    // Every 401 within the contract is a failure; one with a credential read more than a drain
    // before Twilio refused it is this process being starved, not Rotator (contractFailures).
    const failed = contractFailures(stats.flatMap((s) => s.failures), stack.emu, drainSeconds * 1000);
    expect(failed.within, JSON.stringify(failed.within)).toEqual([]);
    if (failed.late) console.log(`zero-downtime (${kind}): ${failed.late} 401(s) with a credential used more than a drain after it was read (host starved), outside the contract`);
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
    expect(findSecrets(secrets, await dumpRedis(stack.redis.urls))).toEqual([]);
    expect(findSecrets(secrets, [stack.logs.text()])).toEqual([]);

    // On the Cluster, every key (Rotator's and BullMQ's) carries the one hash tag: all on one node.
    if (redis === 'cluster') {
      const keysByNode = await Promise.all(stack.redis.urls.map((url) => keysOf(url)));
      expect(keysByNode.flat().filter((k) => !k.startsWith('{rotator}:'))).toEqual([]);
      expect(keysByNode.filter((keys) => keys.length > 0)).toHaveLength(1);
    }
  });

  it.skipIf(!!unavailable)('bootstraps the subaccount whose store entry is empty, then rotates it like any other', async () => {
    const sid = stack.emu.subaccounts[SEEDED]!.sid;
    expect(await stack.store.readCurrent(stack.path(sid))).toBeUndefined();
    const consumer = new SimulatedConsumer({ store: stack.store, pathOf: stack.path, accounts: [sid], refreshMs: REFRESH_MS, baseUrl: stack.emu.url, ...reporter() });
    consumer.start();
    const bootstrap = await waitFinished(rt, (await startRotation(rt, sid, 'bootstrap')).id);
    const next = await waitFinished(rt, (await startRotation(rt, sid, 'after bootstrap')).id);
    const stats = await consumer.stop();

    expect(bootstrap.status, JSON.stringify(bootstrap.error ?? bootstrap.lastError)).toBe('succeeded');
    // Steps 1–2 only: no old key, so no drain and nothing deleted.
    expect(bootstrap.oldKeySid).toBeNull();
    expect(bootstrap.history.filter((h) => h.status === 'completed').map((h) => h.step)).toEqual(['create-secondary', 'operationalize']);
    expect(next.status, JSON.stringify(next.error ?? next.lastError)).toBe('succeeded');
    expect(next.oldKeySid).toBe(bootstrap.newKeySid);
    const settled = await expectSettled(stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(next.newKeySid);
    // The consumer waited while the entry was empty, then used the keys without a 401.
    expect(contractFailures(stats.failures, stack.emu, drainSeconds * 1000).within).toEqual([]);
    expect(stats.keysUsed.has(next.newKeySid!)).toBe(true);
  });
});
