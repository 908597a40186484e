import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { canarySize, createBatch, orderCredentials, planWaves, stepSize, type BatchRequest, type CanarySpec } from '../../src/domain/batch.ts';

const sid = (i: number): string => `AC${i.toString(16).padStart(32, '0')}`;

describe('the wave plan', () => {
  // [N, canary, step] → sizes, each worked out by hand: canary first (a percentage rounded up),
  // then waves of ceil(step% of N), the last taking the remainder.
  const table: Array<[number, CanarySpec, number, number[]]> = [
    [1, 1, 10, [1]],
    [1, '1%', 1, [1]],
    [2, 1, 100, [1, 1]],
    [3, 3, 1, [3]],
    [3, '100%', 50, [3]],
    [5, '10%', 10, [1, 1, 1, 1, 1]],
    [7, '50%', 50, [4, 3]],
    [10, 1, 10, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
    [10, '10%', 25, [1, 3, 3, 3]],
    [10, 2, 30, [2, 3, 3, 2]],
    [100, 5, 20, [5, 20, 20, 20, 20, 15]],
    [100, '1%', 100, [1, 99]],
    [100, '99%', 1, [99, 1]],
    [101, 1, 33, [1, 34, 34, 32]],
    [1000, '5%', 10, [50, 100, 100, 100, 100, 100, 100, 100, 100, 100, 50]],
    [1000, 10, 25, [10, 250, 250, 250, 240]],
    [10_000, 1, 1, [1, ...Array<number>(99).fill(100), 99]],
  ];
  it.each(table)('N=%i canary=%s step=%i%% → %j', (n, canary, step, sizes) => {
    expect(planWaves(n, { canary, step })).toEqual({ ok: true, value: sizes });
  });

  it('refuses a canary larger than the selection, and an empty selection, naming the field', () => {
    expect(planWaves(3, { canary: 4, step: 10 })).toEqual({ ok: false, errors: [{ path: 'waves.canary', message: '4 is more than the 3 selected credentials' }] });
    expect(planWaves(1, { canary: 2, step: 10 })).toEqual({ ok: false, errors: [{ path: 'waves.canary', message: '2 is more than the 1 selected credential' }] });
    expect(planWaves(0, { canary: 1, step: 10 })).toEqual({ ok: false, errors: [{ path: 'selector', message: 'matches no credential: a batch needs at least one' }] });
  });

  it('rounds percentages up exactly, with no floating-point drift, at any fleet size', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 2 ** 40 }), (pct, n) => {
        const exact = Number((BigInt(pct) * BigInt(n) + 99n) / 100n);
        expect(canarySize(`${pct}%`, n)).toBe(exact);
        expect(stepSize(pct, n)).toBe(Math.max(1, exact));
      }),
    );
  });

  it('property: the waves partition the selection, canary first, sizes summing to N', () => {
    const canaryArb = (n: number) => fc.oneof(fc.integer({ min: 1, max: n }), fc.integer({ min: 1, max: 100 }).map((p) => `${p}%` as CanarySpec));
    const arb = fc.integer({ min: 1, max: 3000 }).chain((n) => fc.record({ n: fc.constant(n), canary: canaryArb(n), step: fc.integer({ min: 1, max: 100 }), shuffle: fc.integer() }));
    fc.assert(
      fc.property(arb, ({ n, canary, step, shuffle }) => {
        const planned = planWaves(n, { canary, step });
        if (!planned.ok) throw new Error(JSON.stringify(planned.errors));
        const sizes = planned.value;
        const c = canarySize(canary, n);
        const s = stepSize(step, n);
        expect(sizes.reduce((a, b) => a + b, 0)).toBe(n);
        expect(sizes[0]).toBe(c);
        expect(sizes.length).toBe(1 + Math.ceil((n - c) / s));
        sizes.slice(1, -1).forEach((size) => expect(size).toBe(s));
        if (sizes.length > 1) expect(sizes.at(-1)).toBeGreaterThanOrEqual(1);
        if (sizes.length > 1) expect(sizes.at(-1)).toBeLessThanOrEqual(s);

        // The batch built on it: contiguous slices of the plan order, canary at offset 0, nothing
        // twice, nothing left out — whatever order the selection arrived in.
        const ids = Array.from({ length: n }, (_, i) => `${sid((i * 7919 + shuffle) % (n * 3))}/c${i}`);
        const request: BatchRequest = { selector: 'all', reason: 'test', dryRun: false, waves: { canary, step, bakeSeconds: 0 }, maxFailureRate: 0 };
        const created = createBatch({ id: 'b', request, credentials: ids, at: 0 });
        if (!created.ok) throw new Error(JSON.stringify(created.errors));
        const b = created.value;
        expect(b.waves.map((w) => w.size)).toEqual(sizes);
        expect(b.waves[0]!.offset).toBe(0);
        const slices = b.waves.flatMap((w) => b.credentials.slice(w.offset, w.offset + w.size));
        expect(slices).toEqual(b.credentials);
        expect(new Set(slices).size).toBe(n);
        expect([...slices].sort()).toEqual([...ids].sort());
      }),
      { numRuns: 300 },
    );
  });

  it('orders credentials by id in code-unit order, whatever order they came in, without duplicates', () => {
    const a = `${sid(1)}/default`;
    const b = `${sid(1)}/Zeta`; // upper case sorts before lower case in code units (not locale order)
    const c = `${sid(1)}/billing-prod`;
    const d = `${sid(2)}/default`;
    expect(orderCredentials([d, c, a, b, a])).toEqual([b, c, a, d]);
    fc.assert(
      fc.property(fc.shuffledSubarray([a, b, c, d], { minLength: 4, maxLength: 4 }), (shuffled) => {
        expect(orderCredentials(shuffled)).toEqual([b, c, a, d]);
      }),
    );
  });
});
