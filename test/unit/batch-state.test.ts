import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  adoptRotation,
  advance,
  cancelBatch,
  claimStarts,
  createBatch,
  decide,
  inFlightRotations,
  outcomeOfRotation,
  parseBatchRequest,
  pauseBatch,
  recordOutcomes,
  resumeBatch,
  selectCredentials,
  skipCredentials,
  waveFailure,
  type BatchRequest,
  type BatchState,
  type FleetCredential,
  type WaveSpec,
} from '../../src/domain/batch.ts';

const T0 = Date.UTC(2026, 5, 1, 12);
const sid = (i: number): string => `AC${i.toString(16).padStart(32, '0')}`;
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `${sid(i + 1)}/default`);

function batch(n: number, waves: Partial<WaveSpec> = {}, maxFailureRate = 0.2): BatchState {
  const request: BatchRequest = { selector: 'all', reason: 'quarterly', dryRun: false, waves: { canary: 2, step: 25, bakeSeconds: 60, ...waves }, maxFailureRate };
  const created = createBatch({ id: 'batch-1', request, credentials: ids(n), at: T0, by: 'ops' });
  if (!created.ok) throw new Error(JSON.stringify(created.errors));
  return created.value;
}

/** Start what `decide` says, as the worker would: claim, then (here) nothing else. */
function startDue(s: BatchState, now: number, maxInFlight?: number): { state: BatchState; started: string[] } {
  const d = decide(s, now, maxInFlight === undefined ? {} : { maxInFlight });
  const c = claimStarts(
    d.state,
    d.start.map((id) => ({ credentialId: id, rotationId: `rot-${id}` })),
    now,
  );
  expect(c.refused).toEqual([]);
  return { state: c.state, started: c.claimed };
}

function finish(s: BatchState, which: string[], outcome: 'succeeded' | 'failed' | 'cancelled', at: number): BatchState {
  const r = recordOutcomes(
    s,
    which.map((id) => ({ credentialId: id, rotationId: `rot-${id}`, outcome })),
    at,
  );
  expect(r.refused).toEqual([]);
  return r.state;
}

describe('a batch run', () => {
  it('runs the canary, bakes, then each wave in turn, never starting beyond the current wave', () => {
    let s = batch(10); // waves 2, 3, 3, 2
    expect(s.status).toBe('planned');
    expect(s.waves.map((w) => w.size)).toEqual([2, 3, 3, 2]);

    let r = startDue(s, T0);
    s = r.state;
    expect(s.status).toBe('running');
    expect(r.started).toEqual(ids(10).slice(0, 2));
    expect(decide(s, T0 + 1).start).toEqual([]); // the canary is all started; nothing else yet

    // A credential of wave 2 cannot be claimed while the canary runs.
    const early = claimStarts(s, [{ credentialId: ids(10)[2]!, rotationId: 'x' }], T0 + 1);
    expect(early.refused).toEqual([{ credentialId: ids(10)[2], reason: 'in wave 2 of 4; the current wave is 1' }]);
    expect(early.state).toBe(s);

    s = finish(s, r.started, 'succeeded', T0 + 10_000);
    expect(s.status).toBe('baking');
    expect(s.waves[0]).toMatchObject({ succeeded: 2, endedAt: T0 + 10_000, bakeUntil: T0 + 70_000 });

    const waiting = decide(s, T0 + 69_999);
    expect(waiting.start).toEqual([]);
    expect(waiting.wakeAt).toBe(T0 + 70_000);
    expect(waiting.state).toBe(s); // nothing changed: the caller can skip the write

    r = startDue(s, T0 + 70_000);
    s = r.state;
    expect(s.status).toBe('running');
    expect(s.current).toBe(1);
    expect(r.started).toEqual(ids(10).slice(2, 5));
    expect(s.waves[1]!.startedAt).toBe(T0 + 70_000);

    let t = T0 + 70_000;
    for (const wave of [1, 2]) {
      s = finish(s, ids(10).slice(s.waves[wave]!.offset, s.waves[wave]!.offset + s.waves[wave]!.size), 'succeeded', (t += 5_000));
      expect(s.status).toBe('baking');
      s = startDue(s, (t += 60_000)).state;
      expect(s.current).toBe(wave + 1);
    }
    s = finish(s, ids(10).slice(8), 'succeeded', (t += 5_000));
    expect(s.status).toBe('completed');
    expect(s.finishedAt).toBe(t);
    expect(s.waves.map((w) => w.succeeded)).toEqual([2, 3, 3, 2]);
    expect(s.history.map((e) => e.type)).toEqual(['planned', 'started', 'wave-started', 'wave-ended', 'baking', 'wave-started', 'wave-ended', 'baking', 'wave-started', 'wave-ended', 'baking', 'wave-started', 'wave-ended', 'completed']);
    expect(decide(s, t + 1e9).start).toEqual([]);
  });

  it('with bakeSeconds 0 the next wave starts in the same transition that ends the current one', () => {
    let s = batch(4, { canary: 1, step: 50, bakeSeconds: 0 });
    const r = startDue(s, T0);
    s = finish(r.state, r.started, 'succeeded', T0 + 5);
    expect(s.status).toBe('running');
    expect(s.current).toBe(1);
    expect(decide(s, T0 + 5).start).toEqual(ids(4).slice(1, 3));
  });

  it('caps the rotations in flight in a wave with maxInFlight', () => {
    let s = batch(20, { canary: 10 });
    let r = startDue(s, T0, 4);
    expect(r.started).toEqual(ids(20).slice(0, 4));
    s = finish(r.state, r.started.slice(0, 1), 'succeeded', T0 + 1);
    r = startDue(s, T0 + 1, 4);
    expect(r.started).toEqual(ids(20).slice(4, 5));
  });

  it('a skipped credential ends its part without counting as a failure', () => {
    let s = startDue(batch(4, { canary: 2 }, 0), T0).state;
    const [a, b] = ids(4);
    // Only a credential not yet started can be skipped.
    expect(skipCredentials(s, [{ credentialId: a!, reason: 'closed' }], T0).refused[0]!.reason).toBe(`already started as rotation rot-${a}`);
    s = batch(4, { canary: 2 }, 0);
    s = advance(s, T0).state;
    s = skipCredentials(s, [{ credentialId: b!, reason: 'subaccount closed since planning' }], T0).state;
    const d = decide(s, T0);
    expect(d.start).toEqual([a]);
    s = claimStarts(d.state, [{ credentialId: a!, rotationId: `rot-${a}` }], T0).state;
    s = finish(s, [a!], 'succeeded', T0 + 1);
    expect(s.waves[0]).toMatchObject({ succeeded: 1, skipped: 1, failed: 0, endedAt: T0 + 1 });
    expect(s.status).toBe('baking');
    expect(s.items[b!]).toEqual({ wave: 0, rotationId: null, startedAt: null, outcome: 'skipped', endedAt: T0, detail: 'subaccount closed since planning' });
  });
});

describe('the halt rule', () => {
  function canaryOf10(max: number): BatchState {
    return startDue(batch(50, { canary: 10, step: 20 }, max), T0).state;
  }

  it('halts as soon as a wave failure rate is certain to pass maxFailureRate, naming the wave and the numbers', () => {
    let s = canaryOf10(0.2);
    const canary = ids(50).slice(0, 10);
    s = finish(s, canary.slice(0, 2), 'failed', T0 + 1);
    expect(s.status).toBe('running'); // 2 of 10 = 20%: not above
    s = finish(s, canary.slice(2, 3), 'failed', T0 + 2);
    expect(s.status).toBe('halted');
    expect(s.halt).toEqual({
      wave: 0,
      failed: 3,
      counted: 10,
      finished: 3,
      rate: 0.3,
      maxFailureRate: 0.2,
      at: T0 + 2,
      reason: 'wave 1 of 5 (canary): 3 of 10 rotations failed (30%), above maxFailureRate 0.2 (20%); decided with 3 of 10 finished',
    });
    // Nothing else starts — not the canary's remaining credentials' successors, not wave 2.
    expect(decide(s, T0 + 1e9).start).toEqual([]);
    expect(claimStarts(s, [{ credentialId: ids(50)[10]!, rotationId: 'r' }], T0 + 3).refused[0]!.reason).toBe('the batch is halted');
    // The rotations still in flight end and are recorded; then the batch is finished.
    expect(inFlightRotations(s).map((r) => r.credentialId)).toEqual(canary.slice(3));
    s = finish(s, canary.slice(3, 9), 'succeeded', T0 + 4);
    expect(s.finishedAt).toBeNull();
    s = finish(s, canary.slice(9), 'succeeded', T0 + 5);
    expect(s.finishedAt).toBe(T0 + 5);
    expect(s.status).toBe('halted');
    expect(s.history.at(-1)).toMatchObject({ type: 'settled' });
    expect(Object.keys(s.items).sort()).toEqual(canary); // nothing outside the canary was touched
  });

  it('a rate exactly at the threshold does not halt', () => {
    let s = canaryOf10(0.2);
    const canary = ids(50).slice(0, 10);
    s = finish(s, canary.slice(0, 2), 'failed', T0 + 1);
    s = finish(s, canary.slice(2), 'succeeded', T0 + 2);
    expect(s.status).toBe('baking');
    expect(waveFailure(s.waves[0]!, 0.2)).toEqual({ failed: 2, counted: 10, rate: 0.2, exceeded: false });
  });

  it('maxFailureRate 0 halts on the first failure; 1 never halts', () => {
    const first = finish(canaryOf10(0), [ids(50)[0]!], 'failed', T0 + 1);
    expect(first.status).toBe('halted');
    expect(first.halt!.reason).toBe('wave 1 of 5 (canary): 1 of 10 rotations failed (10%), above maxFailureRate 0 (0%); decided with 1 of 10 finished');

    let s = batch(3, { canary: 1, step: 50, bakeSeconds: 0 }, 1);
    for (let i = 0; i < 3; i++) {
      const r = startDue(s, T0 + i);
      s = finish(r.state, r.started, 'failed', T0 + i);
    }
    expect(s.status).toBe('completed');
  });

  it('cancelled and skipped rotations are not counted in the rate; the reason says so', () => {
    let s = startDue(batch(8, { canary: 4, step: 50 }, 0.5), T0).state;
    const c = ids(8).slice(0, 4);
    s = finish(s, c.slice(0, 2), 'cancelled', T0 + 1);
    s = finish(s, c.slice(2, 3), 'failed', T0 + 2);
    s = finish(s, c.slice(3, 4), 'succeeded', T0 + 3);
    expect(s.status).toBe('baking'); // 1 of 2 counted = 50%: not above

    s = advance(batch(8, { canary: 4, step: 50 }, 0.5), T0).state;
    s = skipCredentials(s, c.slice(0, 2).map((id) => ({ credentialId: id, reason: 'gone' })), T0).state;
    s = claimStarts(s, c.slice(2).map((id) => ({ credentialId: id, rotationId: `rot-${id}` })), T0).state;
    s = finish(s, c.slice(2, 3), 'failed', T0 + 1);
    expect(s.status).toBe('running'); // 1 of 2 counted: 50%, not above
    s = finish(s, c.slice(3, 4), 'failed', T0 + 2);
    expect(s.status).toBe('halted');
    expect(s.halt!.reason).toBe('wave 1 of 2 (canary): 2 of 2 rotations failed (100%), above maxFailureRate 0.5 (50%); 2 cancelled or skipped not counted');
  });

  it('the last wave passing the threshold leaves the batch halted, not completed', () => {
    let s = batch(2, { canary: 1, step: 50, bakeSeconds: 0 }, 0);
    let r = startDue(s, T0);
    s = finish(r.state, r.started, 'succeeded', T0 + 1);
    r = startDue(s, T0 + 1);
    s = finish(r.state, r.started, 'failed', T0 + 2);
    expect(s.status).toBe('halted');
    expect(s.halt!.wave).toBe(1);
    expect(s.halt!.reason.startsWith('wave 2 of 2: 1 of 1 rotations failed (100%)')).toBe(true);
    expect(s.finishedAt).toBe(T0 + 2);
  });

  it('a pause does not stop the halt rule', () => {
    let s = canaryOf10(0);
    s = (pauseBatch(s, T0 + 1, 'ops') as { state: BatchState }).state;
    s = finish(s, [ids(50)[0]!], 'failed', T0 + 2);
    expect(s.status).toBe('halted');
    expect(s.pause).toBeNull();
  });

  it('maps rotation statuses to outcomes: a rollback counts as a failure, a cancel does not', () => {
    expect(['succeeded', 'failed', 'rolled_back', 'cancelled', 'running', 'waiting', 'pending'].map(outcomeOfRotation)).toEqual(['succeeded', 'failed', 'failed', 'cancelled', null, null, null]);
  });
});

describe('pause, resume and cancel', () => {
  it('pause stops new starts while in-flight rotations end and a wave ends and bakes meanwhile', () => {
    let s = startDue(batch(10, { canary: 2 }), T0, 1).state; // one of the two canary credentials started
    const p = pauseBatch(s, T0 + 1, 'alice');
    if (!p.ok) throw new Error(p.reason);
    s = p.state;
    expect(s.status).toBe('paused');
    expect(p.events).toEqual([{ at: T0 + 1, type: 'paused', by: 'alice', detail: 'no new rotations start; 1 in flight run on' }]);
    expect(decide(s, T0 + 2).start).toEqual([]);
    expect(claimStarts(s, [{ credentialId: ids(10)[1]!, rotationId: 'r' }], T0 + 2).refused[0]!.reason).toBe('the batch is paused');
    s = finish(s, [ids(10)[0]!], 'succeeded', T0 + 3);
    expect(s.status).toBe('paused');

    // Pausing again is a no-op (a retried request), not an error.
    const again = pauseBatch(s, T0 + 4);
    expect(again).toEqual({ ok: true, changed: false, state: s, events: [] });

    const r = resumeBatch(s, T0 + 5, 'alice');
    if (!r.ok) throw new Error(r.reason);
    expect(r.state.status).toBe('running');
    expect(decide(r.state, T0 + 5).start).toEqual([ids(10)[1]]);
    expect(resumeBatch(r.state, T0 + 6)).toMatchObject({ ok: true, changed: false });
  });

  it('a wave that ended while paused bakes from when it ended: resume waits out the rest, or starts the next wave at once', () => {
    let s = startDue(batch(10, { canary: 2, bakeSeconds: 60 }), T0).state;
    s = (pauseBatch(s, T0 + 1) as { state: BatchState }).state;
    s = finish(s, ids(10).slice(0, 2), 'succeeded', T0 + 10_000);
    expect(s.status).toBe('paused');
    expect(s.waves[0]!.bakeUntil).toBe(T0 + 70_000);

    const soon = resumeBatch(s, T0 + 20_000) as { state: BatchState };
    expect(soon.state.status).toBe('baking');
    expect(decide(soon.state, T0 + 20_000).wakeAt).toBe(T0 + 70_000);

    const late = resumeBatch(s, T0 + 100_000) as { state: BatchState };
    expect(late.state.status).toBe('running');
    expect(late.state.current).toBe(1);
    expect(decide(late.state, T0 + 100_000).start).toEqual(ids(10).slice(2, 5));
  });

  it('a batch paused before it started resumes as planned', () => {
    const p = pauseBatch(batch(3), T0) as { state: BatchState };
    expect(p.state.pause).toEqual({ at: T0, by: null, from: 'planned' });
    expect(decide(p.state, T0).start).toEqual([]);
    const r = resumeBatch(p.state, T0 + 1) as { state: BatchState };
    expect(r.state.status).toBe('planned');
    expect(decide(r.state, T0 + 1).start).toEqual(ids(3).slice(0, 2));
  });

  it('cancel stops new starts, records what was in flight and never started, and lets in-flight rotations end', () => {
    let s = startDue(batch(10, { canary: 3 }), T0).state;
    s = finish(s, ids(10).slice(0, 1), 'succeeded', T0 + 1);
    const c = cancelBatch(s, T0 + 2, 'bob');
    if (!c.ok) throw new Error(c.reason);
    s = c.state;
    expect(s.status).toBe('cancelled');
    expect(s.cancel).toEqual({ at: T0 + 2, by: 'bob', inFlight: 2, notStarted: 7 });
    expect(c.events[0]!.detail).toBe('7 credentials will not be started; 2 rotations in flight finish or undo');
    expect(s.finishedAt).toBeNull();
    expect(inFlightRotations(s)).toEqual(ids(10).slice(1, 3).map((id) => ({ credentialId: id, rotationId: `rot-${id}` })));
    expect(decide(s, T0 + 1e9).start).toEqual([]);

    s = finish(s, ids(10).slice(1, 2), 'cancelled', T0 + 3); // undone by its own cancel
    s = finish(s, ids(10).slice(2, 3), 'succeeded', T0 + 4); // past delete-old: it finished
    expect(s.finishedAt).toBe(T0 + 4);
    expect(s.waves[0]).toMatchObject({ started: 3, succeeded: 2, cancelled: 1, endedAt: T0 + 4 });
    expect(s.status).toBe('cancelled');

    expect(cancelBatch(s, T0 + 5)).toEqual({ ok: true, changed: false, state: s, events: [] });
    expect(resumeBatch(s, T0 + 5)).toEqual({ ok: false, reason: 'cannot resume: the batch is cancelled' });
    expect(pauseBatch(s, T0 + 5)).toEqual({ ok: false, reason: 'cannot pause: the batch is cancelled' });
  });

  it('a planned batch cancelled is finished at once; completed and halted batches refuse cancel and resume', () => {
    const c = cancelBatch(batch(3), T0) as { state: BatchState };
    expect(c.state).toMatchObject({ status: 'cancelled', finishedAt: T0, cancel: { inFlight: 0, notStarted: 3 } });

    let s = batch(1, { canary: 1 }, 0);
    let r = startDue(s, T0);
    s = finish(r.state, r.started, 'succeeded', T0 + 1);
    expect(s.status).toBe('completed');
    expect(cancelBatch(s, T0 + 2)).toEqual({ ok: false, reason: 'cannot cancel: the batch is completed' });

    s = batch(1, { canary: 1 }, 0);
    r = startDue(s, T0);
    s = finish(r.state, r.started, 'failed', T0 + 1);
    const reason = s.halt!.reason;
    expect(resumeBatch(s, T0 + 2)).toEqual({ ok: false, reason: `cannot resume: the batch halted (${reason}); start a new batch for the credentials it did not reach` });
    expect(cancelBatch(s, T0 + 2)).toMatchObject({ ok: false });
  });
});

describe('nothing is started twice', () => {
  it('a repeated claim with the same rotation id is a no-op; with another it is refused', () => {
    const s = advance(batch(5), T0).state;
    const [a, b] = ids(5);
    const first = claimStarts(s, [{ credentialId: a!, rotationId: 'r1' }], T0);
    expect(first.claimed).toEqual([a]);
    expect(first.state.rev).toBe(s.rev + 1);

    const retry = claimStarts(first.state, [{ credentialId: a!, rotationId: 'r1' }], T0 + 1);
    expect(retry).toMatchObject({ claimed: [], already: [a], refused: [] });
    expect(retry.state).toBe(first.state);

    const other = claimStarts(first.state, [{ credentialId: a!, rotationId: 'r2' }], T0 + 1);
    expect(other.refused).toEqual([{ credentialId: a, reason: 'already started as rotation r1' }]);
    expect(other.state.waves[0]!.started).toBe(1);

    // The same credential twice in one call: the second is caught by the first's mark.
    const dup = claimStarts(first.state, [{ credentialId: b!, rotationId: 'r3' }, { credentialId: b!, rotationId: 'r4' }], T0 + 2);
    expect(dup).toMatchObject({ claimed: [b], refused: [{ credentialId: b, reason: 'already started as rotation r3' }] });
    expect(dup.state.waves[0]!.started).toBe(2);
    expect(decide(dup.state, T0 + 2).start).toEqual([]);

    expect(claimStarts(s, [{ credentialId: `${sid(99)}/default`, rotationId: 'r' }], T0).refused[0]!.reason).toBe('not in this batch');
  });

  it('outcomes are recorded once, for the rotation the batch follows', () => {
    let s = advance(batch(5), T0).state;
    const [a] = ids(5);
    s = claimStarts(s, [{ credentialId: a!, rotationId: 'r1' }], T0).state;
    expect(recordOutcomes(s, [{ credentialId: a!, rotationId: 'planner-rotation', outcome: 'succeeded' }], T0).refused).toEqual([{ credentialId: a, reason: 'the batch follows rotation r1, not planner-rotation' }]);
    const once = recordOutcomes(s, [{ credentialId: a!, rotationId: 'r1', outcome: 'failed' }], T0 + 1);
    expect(once.recorded).toEqual([a]);
    const twice = recordOutcomes(once.state, [{ credentialId: a!, rotationId: 'r1', outcome: 'failed' }], T0 + 2);
    expect(twice.state).toBe(once.state);
    expect(twice.already).toEqual([a]);
    expect(recordOutcomes(once.state, [{ credentialId: a!, rotationId: 'r1', outcome: 'succeeded' }], T0 + 2).refused).toEqual([{ credentialId: a, reason: 'already recorded as failed' }]);
    expect(once.state.waves[0]!.failed).toBe(1);
  });

  it('follows the rotation already in flight when starting answered 409 with it', () => {
    let s = advance(batch(5), T0).state;
    const [a] = ids(5);
    s = claimStarts(s, [{ credentialId: a!, rotationId: 'r1' }], T0).state;
    const adopted = adoptRotation(s, a!, 'r1', 'r0', T0 + 1);
    if (!adopted.ok) throw new Error(adopted.reason);
    expect(adopted.state.items[a!]!.rotationId).toBe('r0');
    expect(adoptRotation(adopted.state, a!, 'r1', 'r0', T0 + 2)).toEqual({ ok: true, state: adopted.state });
    expect(adoptRotation(adopted.state, a!, 'r1', 'r9', T0 + 2)).toEqual({ ok: false, reason: `${a} is followed as rotation r0, not r1` });
    expect(recordOutcomes(adopted.state, [{ credentialId: a!, rotationId: 'r0', outcome: 'succeeded' }], T0 + 3).recorded).toEqual([a]);
  });
});

describe('the state as stored', () => {
  it('keeps its history bounded: the plan and the most recent batch-level events', () => {
    let s = batch(300, { canary: 1, step: 1, bakeSeconds: 0 }, 1); // 1 + 100 waves
    for (let t = T0; s.status !== 'completed'; t++) {
      const r = startDue(s, t);
      s = finish(r.state, r.started, 'succeeded', t);
    }
    expect(s.history).toHaveLength(100);
    expect(s.history[0]!.type).toBe('planned');
    expect(s.history.at(-1)!.type).toBe('completed');
  });

  it('is plain JSON: a round trip through JSON changes nothing, and transitions work on the parsed copy', () => {
    let s = startDue(batch(10), T0).state;
    s = finish(s, ids(10).slice(0, 1), 'failed', T0 + 1);
    const copy = JSON.parse(JSON.stringify(s)) as BatchState;
    expect(copy).toEqual(s);
    expect(finish(copy, ids(10).slice(1, 2), 'succeeded', T0 + 2)).toEqual(finish(s, ids(10).slice(1, 2), 'succeeded', T0 + 2));
  });

  it('works on a state holding only the current wave items (a store that keeps items in a hash)', () => {
    let s = startDue(batch(10, { bakeSeconds: 0 }), T0).state;
    s = finish(s, ids(10).slice(0, 2), 'succeeded', T0 + 1); // wave 2 (3 credentials) is current
    s = claimStarts(s, [{ credentialId: ids(10)[2]!, rotationId: 'r' }], T0 + 1).state;
    const partial: BatchState = { ...s, items: { [ids(10)[2]!]: s.items[ids(10)[2]!]! } };
    expect(decide(partial, T0 + 2).start).toEqual(ids(10).slice(3, 5));
    expect(inFlightRotations(partial)).toEqual([{ credentialId: ids(10)[2], rotationId: 'r' }]);
  });

  it('model: under any interleaving of decisions, outcomes, pauses, resumes, cancels and time, every rule holds', () => {
    type Op =
      | { kind: 'tick'; dt: number; maxInFlight: number }
      | { kind: 'finish'; pick: number; outcome: 'succeeded' | 'failed' | 'cancelled' }
      | { kind: 'finishAll'; failEvery: number }
      | { kind: 'skip'; pick: number }
      | { kind: 'pause' }
      | { kind: 'resume' }
      | { kind: 'cancel' }
      | { kind: 'reclaim'; pick: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 12, arbitrary: fc.record({ kind: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 90_000 }), maxInFlight: fc.integer({ min: 1, max: 8 }) }) },
      { weight: 10, arbitrary: fc.record({ kind: fc.constant('finish' as const), pick: fc.nat(), outcome: fc.constantFrom('succeeded' as const, 'succeeded' as const, 'failed' as const, 'cancelled' as const) }) },
      { weight: 8, arbitrary: fc.record({ kind: fc.constant('finishAll' as const), failEvery: fc.integer({ min: 0, max: 12 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('skip' as const), pick: fc.nat() }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('pause' as const) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('resume' as const) }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'cancel' as const }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('reclaim' as const), pick: fc.nat() }) },
    );
    const setup = fc.record({
      n: fc.integer({ min: 1, max: 40 }),
      canary: fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 60 }).map((p) => `${p}%` as const)),
      step: fc.integer({ min: 1, max: 100 }),
      bakeSeconds: fc.integer({ min: 0, max: 120 }),
      max: fc.constantFrom(0, 0.1, 0.25, 0.5, 1),
    });
    fc.assert(
      fc.property(setup, fc.array(op, { minLength: 20, maxLength: 150 }), ({ n, canary, step, bakeSeconds, max }, ops) => {
        const request: BatchRequest = { selector: 'all', reason: 'model', dryRun: false, waves: { canary: canary as WaveSpec['canary'], step, bakeSeconds }, maxFailureRate: max };
        const created = createBatch({ id: 'm', request, credentials: ids(n), at: T0 });
        if (!created.ok) return; // canary larger than n: refused, tested elsewhere
        let s = created.value;
        let now = T0;
        const everClaimed = new Map<string, string>();
        const stoppedAt = new Map<string, number>(); // status → first time seen

        const check = (next: BatchState, prev: BatchState): void => {
          // rev grows by exactly one per change, and an unchanged state is the same object.
          if (next !== prev) expect(next.rev).toBe(prev.rev + 1);
          expect(JSON.parse(JSON.stringify(next))).toEqual(next);
          // Counters agree with the items.
          next.waves.forEach((w, i) => {
            const items = next.credentials.slice(w.offset, w.offset + w.size).map((id) => next.items[id]).filter((x) => x !== undefined);
            expect(items.every((it) => it.wave === i)).toBe(true);
            expect(w.started).toBe(items.filter((it) => it.rotationId !== null).length);
            for (const o of ['succeeded', 'failed', 'cancelled', 'skipped'] as const) expect(w[o]).toBe(items.filter((it) => it.outcome === o).length);
            // A later wave has nothing until this one ended and baked.
            const later = next.waves[i + 1];
            if (later && later.started + later.skipped > 0) {
              expect(w.endedAt).not.toBeNull();
              expect(later.startedAt!).toBeGreaterThanOrEqual(w.bakeUntil!);
              expect(waveFailure(w, max).exceeded).toBe(false);
            }
          });
          if (next.status === 'halted') expect(waveFailure(next.waves[next.halt!.wave]!, max).exceeded).toBe(true);
          if (next.status === 'completed') expect(next.credentials.every((id) => next.items[id]?.outcome != null)).toBe(true);
          if (['halted', 'cancelled', 'completed'].includes(next.status) && !stoppedAt.has('stopped')) stoppedAt.set('stopped', now);
        };

        for (const o of ops) {
          const prev = s;
          if (o.kind === 'tick') {
            now += o.dt;
            const d = decide(s, now, { maxInFlight: o.maxInFlight });
            check(d.state, s);
            s = d.state;
            if (d.start.length > 0) {
              expect(s.status).toBe('running');
              expect(stoppedAt.has('stopped')).toBe(false);
              const w = s.waves[s.current]!;
              const wave = s.credentials.slice(w.offset, w.offset + w.size);
              expect(d.start.every((id) => wave.includes(id))).toBe(true);
              expect(w.started - w.succeeded - w.failed - w.cancelled + d.start.length).toBeLessThanOrEqual(o.maxInFlight);
            }
            const c = claimStarts(
              s,
              d.start.map((id) => ({ credentialId: id, rotationId: `rot-${id}` })),
              now,
            );
            expect(c.claimed).toEqual(d.start);
            for (const id of c.claimed) {
              expect(everClaimed.has(id)).toBe(false);
              everClaimed.set(id, `rot-${id}`);
            }
            check(c.state, s);
            s = c.state;
          } else if (o.kind === 'finish') {
            const open = inFlightRotations(s);
            if (open.length === 0) continue;
            const pick = open[o.pick % open.length]!;
            const r = recordOutcomes(s, [{ ...pick, outcome: o.outcome }], now);
            expect(r.recorded).toEqual([pick.credentialId]);
            check(r.state, prev);
            s = r.state;
          } else if (o.kind === 'finishAll') {
            // Everything in flight ends; every failEvery-th fails (0: none).
            const open = inFlightRotations(s);
            if (open.length === 0) continue;
            const r = recordOutcomes(
              s,
              open.map((p, i) => ({ ...p, outcome: o.failEvery > 0 && i % o.failEvery === 0 ? ('failed' as const) : ('succeeded' as const) })),
              now,
            );
            expect(r.recorded.length).toBe(open.length);
            check(r.state, prev);
            s = r.state;
          } else if (o.kind === 'skip') {
            const d = decide(s, now);
            check(d.state, s);
            s = d.state;
            if (d.start.length === 0) continue;
            const r = skipCredentials(s, [{ credentialId: d.start[o.pick % d.start.length]!, reason: 'gone' }], now);
            expect(r.recorded.length).toBe(1);
            check(r.state, s);
            s = r.state;
          } else if (o.kind === 'reclaim') {
            const claimed = [...everClaimed.keys()];
            if (claimed.length === 0) continue;
            const id = claimed[o.pick % claimed.length]!;
            const again = claimStarts(s, [{ credentialId: id, rotationId: 'another' }], now);
            expect(again.state).toBe(s);
            expect(again.claimed).toEqual([]);
          } else {
            const r = o.kind === 'pause' ? pauseBatch(s, now) : o.kind === 'resume' ? resumeBatch(s, now) : cancelBatch(s, now);
            if (r.ok) {
              check(r.state, prev);
              s = r.state;
            }
          }
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('the request', () => {
  const valid = { selector: { labels: ['hipaa'] }, reason: 'quarterly rotation', waves: { canary: '10%', step: 25, bakeSeconds: 300 }, maxFailureRate: 0.1 };

  it('accepts a well-formed request, dryRun defaulting to false', () => {
    expect(parseBatchRequest(valid)).toEqual({ ok: true, value: { ...valid, dryRun: false } });
    expect(parseBatchRequest({ ...valid, selector: 'all', dryRun: true, waves: { canary: 1, step: 100, bakeSeconds: 0 }, maxFailureRate: 0 })).toMatchObject({ ok: true });
    const creds = { credentials: [{ accountSid: sid(1), name: 'default' }, { accountSid: sid(1), name: 'billing-prod' }] };
    expect(parseBatchRequest({ ...valid, selector: creds })).toMatchObject({ ok: true, value: { selector: creds } });
  });

  const bad: Array<[string, Record<string, unknown>, string, string]> = [
    ['canary 0', { waves: { ...valid.waves, canary: 0 } }, 'waves.canary', 'must be at least 1 credential, not 0: a batch starts with a canary'],
    ['canary 0%', { waves: { ...valid.waves, canary: '0%' } }, 'waves.canary', 'must be from 1% to 100%, not 0%'],
    ['canary 101%', { waves: { ...valid.waves, canary: '101%' } }, 'waves.canary', 'must be from 1% to 100%, not 101%'],
    ['canary 2.5', { waves: { ...valid.waves, canary: 2.5 } }, 'waves.canary', 'must be a whole number of credentials, not 2.5'],
    ['canary "ten"', { waves: { ...valid.waves, canary: 'ten' } }, 'waves.canary', 'must be a number of credentials (e.g. 5) or a percentage of the selection (e.g. "10%"), not "ten"'],
    ['step 0', { waves: { ...valid.waves, step: 0 } }, 'waves.step', 'must be from 1 to 100 (percent of the selection), not 0'],
    ['step -5', { waves: { ...valid.waves, step: -5 } }, 'waves.step', 'must be from 1 to 100 (percent of the selection), not -5'],
    ['step 101', { waves: { ...valid.waves, step: 101 } }, 'waves.step', 'must be from 1 to 100 (percent of the selection), not 101'],
    ['step "10%"', { waves: { ...valid.waves, step: '10%' } }, 'waves.step', 'must be a whole percentage from 1 to 100, not "10%"'],
    ['negative bake', { waves: { ...valid.waves, bakeSeconds: -1 } }, 'waves.bakeSeconds', 'must not be negative, not -1'],
    ['bake in ms', { waves: { ...valid.waves, bakeSeconds: 300_000_000 } }, 'waves.bakeSeconds', 'must be at most 604800 (a week), not 300000000: is it in milliseconds?'],
    ['rate 1.5', { maxFailureRate: 1.5 }, 'maxFailureRate', 'must be from 0 to 1 (a share, not a percentage), not 1.5'],
    ['rate -0.1', { maxFailureRate: -0.1 }, 'maxFailureRate', 'must be from 0 to 1 (a share, not a percentage), not -0.1'],
    ['rate "0.1"', { maxFailureRate: '0.1' }, 'maxFailureRate', 'must be a number from 0 to 1, not "0.1"'],
    ['rate missing', { maxFailureRate: undefined }, 'maxFailureRate', 'is required: the share of a wave (0..1) that may fail before the batch halts'],
    ['empty labels', { selector: { labels: [] } }, 'selector.labels', 'must not be empty'],
    ['empty accountSids', { selector: { accountSids: [] } }, 'selector.accountSids', 'must not be empty'],
    ['empty credentials', { selector: { credentials: [] } }, 'selector.credentials', 'must not be empty'],
    ['two kinds', { selector: { labels: ['a'], accountSids: [sid(1)] } }, 'selector', 'has labels and accountSids: give exactly one'],
    ['selector "some"', { selector: 'some' }, 'selector', 'must be "all" or an object with exactly one of labels, accountSids, credentials, not "some"'],
    ['malformed SID', { selector: { accountSids: [sid(1), 'AC123'] } }, 'selector.accountSids[1]', 'must be an Account SID ("AC" and 32 lower-case hex digits), not "AC123"'],
    ['upper-case SID', { selector: { accountSids: [`AC${'A'.repeat(32)}`] } }, 'selector.accountSids[0]', `must be an Account SID ("AC" and 32 lower-case hex digits), not "AC${'A'.repeat(32)}"`],
    ['duplicate SID', { selector: { accountSids: [sid(1), sid(2), sid(1)] } }, 'selector.accountSids[2]', 'repeats selector.accountSids[0]'],
    ['bad name', { selector: { credentials: [{ accountSid: sid(1), name: '-prod' }] } }, 'selector.credentials[0].name', 'must be a credential name (1–63 of a-z, 0-9, "_", "-", starting with a letter or digit), not "-prod"'],
    ['long name', { selector: { credentials: [{ accountSid: sid(1), name: 'a'.repeat(64) }] } }, 'selector.credentials[0].name', `must be a credential name (1–63 of a-z, 0-9, "_", "-", starting with a letter or digit), not "${'a'.repeat(40)}…"`],
    ['credential field', { selector: { credentials: [{ accountSid: sid(1), name: 'x', kind: 'api-key' }] } }, 'selector.credentials[0].kind', 'unknown field (allowed: accountSid, name)'],
    ['bad label', { selector: { labels: ['HIPAA'] } }, 'selector.labels[0]', 'must be a label such as "hipaa" or "tier=gold" (lower case, digits, "_", ".", "-"), not "HIPAA"'],
    ['unknown top field', { priority: 'high' }, 'priority', 'unknown field (allowed: selector, kinds, reason, dryRun, waves, maxFailureRate)'],
    ['unknown wave field', { waves: { ...valid.waves, linear: true } }, 'waves.linear', 'unknown field (allowed: canary, step, bakeSeconds)'],
    ['unknown selector field', { selector: { labels: ['a'], match: 'any' } }, 'selector.match', 'unknown field (allowed: labels, accountSids, credentials, filter)'],
    ['empty reason', { reason: '  ' }, 'reason', 'must not be empty: say why (it goes into the audit trail)'],
    ['reason with newline', { reason: 'a\nforged audit line' }, 'reason', 'must not contain control characters (line breaks, tabs, …)'],
    ['dryRun "yes"', { dryRun: 'yes' }, 'dryRun', 'must be true or false, not "yes"'],
  ];
  it.each(bad)('%s → 400 naming %s', (_name, patch, path, message) => {
    const r = parseBatchRequest({ ...valid, ...patch });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors).toContainEqual({ path, message });
  });

  it('reports every problem at once, and a non-object body', () => {
    const r = parseBatchRequest({ selector: { labels: [] }, waves: { canary: 0, step: 0, bakeSeconds: -1 }, maxFailureRate: 2, extra: 1 });
    expect(r.ok ? [] : r.errors.map((e) => e.path)).toEqual(['extra', 'selector.labels', 'reason', 'waves.canary', 'waves.step', 'waves.bakeSeconds', 'maxFailureRate']);
    expect(parseBatchRequest([])).toEqual({ ok: false, errors: [{ path: '(body)', message: 'must be a JSON object, not an array' }] });
  });
});

describe('selecting credentials', () => {
  const fleet: FleetCredential[] = [
    { accountSid: sid(3), name: 'default', labels: ['hipaa'], subaccountStatus: 'active' },
    { accountSid: sid(1), name: 'default', labels: ['hipaa', 'tier=gold'], subaccountStatus: 'active' },
    { accountSid: sid(1), name: 'billing-prod', labels: ['hipaa', 'tier=gold'], subaccountStatus: 'active' },
    { accountSid: sid(2), name: 'default', labels: [], subaccountStatus: 'closed' },
    { accountSid: sid(4), name: 'default', labels: ['hipaa'], subaccountStatus: 'suspended' },
    { accountSid: sid(5), name: 'default', labels: ['hipaa'], subaccountStatus: 'active', paused: true },
  ];

  it('"all" and labels (every label must apply) leave out what cannot be rotated, counted', () => {
    expect(selectCredentials('all', fleet)).toEqual({ ok: true, value: { ids: [`${sid(1)}/billing-prod`, `${sid(1)}/default`, `${sid(3)}/default`], leftOut: { 'subaccount closed': 1, 'subaccount suspended': 1, paused: 1 } } });
    expect(selectCredentials({ labels: ['hipaa', 'tier=gold'] }, fleet)).toEqual({ ok: true, value: { ids: [`${sid(1)}/billing-prod`, `${sid(1)}/default`], leftOut: {} } });
    expect(selectCredentials({ labels: ['pci'] }, fleet)).toEqual({ ok: false, errors: [{ path: 'selector.labels', message: 'matches no credential that can be rotated' }] });
    expect(selectCredentials({ labels: ['hipaa'] }, fleet.slice(3))).toEqual({ ok: false, errors: [{ path: 'selector.labels', message: 'matches no credential that can be rotated (matched but left out: 1 subaccount suspended, 1 paused)' }] });
  });

  it('an explicit list naming something unmanaged or not rotatable is an error naming the item', () => {
    expect(selectCredentials({ accountSids: [sid(1)] }, fleet)).toEqual({ ok: true, value: { ids: [`${sid(1)}/billing-prod`, `${sid(1)}/default`], leftOut: {} } });
    expect(selectCredentials({ accountSids: [sid(1), sid(2), sid(9)] }, fleet)).toEqual({
      ok: false,
      errors: [
        { path: 'selector.accountSids[1]', message: `${sid(2)} cannot be rotated: subaccount closed` },
        { path: 'selector.accountSids[2]', message: `${sid(9)} is not a managed subaccount` },
      ],
    });
    expect(selectCredentials({ credentials: [{ accountSid: sid(1), name: 'web' }, { accountSid: sid(5), name: 'default' }] }, fleet)).toEqual({
      ok: false,
      errors: [
        { path: 'selector.credentials[0]', message: `${sid(1)}/web is not a managed credential` },
        { path: 'selector.credentials[1]', message: `${sid(5)}/default cannot be rotated: paused` },
      ],
    });
  });
});
