import { describe, expect, it } from 'vitest';
import { decideGate, describePickup, pickupOf, type ConsumerReport, type GateInput } from '../../src/domain/consumers.ts';
import { checkPolicy } from '../../src/domain/policy.ts';

const OLD = `SK${'0'.repeat(32)}`;
const NEW = `SK${'1'.repeat(32)}`;
const T0 = Date.parse('2026-12-07T12:00:00Z');
const report = (consumer: string, keySid: string, lastSeen = T0): ConsumerReport => ({ consumer, credential: 'default', keySid, lastSeen, by: 'app' });
const input = (over: Partial<GateInput>): GateInput => ({
  policy: { minDrainMs: 30_000, maxWaitMs: 600_000, onMaxWait: 'hold' },
  consumers: [],
  newKeySid: NEW,
  operationalizedAt: T0,
  drainEndsAt: T0 + 900_000,
  now: T0,
  recheckMs: 30_000,
  expiryMs: 300_000,
  ...over,
});

describe('consumer gate decision (issue 15)', () => {
  it('without a gate in the policy, or with no live consumer, waits out the drain as before', () => {
    expect(decideGate(input({ policy: null, consumers: [report('a', NEW)] }))).toMatchObject({ kind: 'wait', until: T0 + 900_000, pickup: null });
    expect(decideGate(input({ consumers: [] }))).toMatchObject({ kind: 'wait', until: T0 + 900_000 });
    expect(decideGate(input({ consumers: [], now: T0 + 900_000 }))).toMatchObject({ kind: 'promote', pickup: null });
  });

  it('promotes once the minimum drain has passed and every live consumer reports the new key, long before the drain', () => {
    const all = [report('a', NEW), report('b', NEW)];
    expect(decideGate(input({ consumers: all, now: T0 + 10_000 }))).toMatchObject({ kind: 'wait', until: T0 + 30_000 });
    expect(decideGate(input({ consumers: all, now: T0 + 30_000 }))).toMatchObject({ kind: 'promote', pickup: { onNewKey: 2, total: 2, lagging: [] } });
  });

  it('waits for a laggard until the maximum wait, looking again at the recheck or when the laggard would expire', () => {
    const d = decideGate(input({ consumers: [report('a', NEW), report('slow', OLD, T0 - 290_000)], now: T0 + 31_000 }));
    expect(d).toMatchObject({ kind: 'wait', until: T0 + 10_000, reason: expect.stringContaining('1 of 2 consumers on the new key; lagging: slow') });
  });

  it('after the maximum wait, holds (naming the laggards) or promotes, as the policy says', () => {
    const consumers = [report('a', NEW, T0 + 600_000), report('stuck', OLD, T0 + 600_000)];
    const held = decideGate(input({ consumers, now: T0 + 600_000 }));
    expect(held).toMatchObject({ kind: 'wait', until: T0 + 630_000, reason: expect.stringContaining('held after the maximum wait: 1 of 2 consumers on the new key; lagging: stuck') });
    expect(decideGate(input({ consumers, now: T0 + 600_000, policy: { minDrainMs: 0, maxWaitMs: 600_000, onMaxWait: 'promote' } }))).toMatchObject({ kind: 'promote' });
  });

  it('says k of n and names laggards in order, capped', () => {
    const p = pickupOf([report('c', OLD), report('a', NEW), report('b', OLD)], NEW);
    expect(describePickup(p)).toBe(`1 of 3 consumers on the new key; lagging: b (${OLD}), c (${OLD})`);
    expect(describePickup(p, 1)).toBe(`1 of 3 consumers on the new key; lagging: b (${OLD}) and 1 more`);
  });
});

describe('policy consumerGate validation', () => {
  it('compiles a gate, with defaults', () => {
    const r = checkPolicy({ name: 'p', interval: 'P30D', consumerGate: { maxWait: 'PT1H' } });
    expect(r.ok && r.value.consumerGate).toEqual({ minDrainMs: 30_000, maxWaitMs: 3_600_000, onMaxWait: 'hold' });
    const none = checkPolicy({ name: 'p', interval: 'P30D' });
    expect(none.ok && none.value.consumerGate).toBeNull();
  });

  it('names every wrong field of the gate', () => {
    const r = checkPolicy({ name: 'p', interval: 'P30D', consumerGate: { minDrain: 'PT2H', maxWait: 'PT1H', onMaxWait: 'later', extra: 1 } });
    expect(r.ok).toBe(false);
    const paths = r.ok ? [] : r.errors.map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['consumerGate.extra', 'consumerGate.onMaxWait', 'consumerGate.minDrain']));
    const missing = checkPolicy({ name: 'p', interval: 'P30D', consumerGate: {} });
    expect(missing.ok ? [] : missing.errors.map((e) => e.path)).toEqual(['consumerGate.maxWait']);
    const long = checkPolicy({ name: 'p', interval: 'P30D', consumerGate: { maxWait: 'P31D' } });
    expect(long.ok ? [] : long.errors.map((e) => e.message)).toEqual([expect.stringContaining('at most P30D')]);
  });
});
