import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostname } from 'node:os';
import { startStack, within, waitFor, type Stack } from '../helpers/stack.ts';
import { describeRotation, expectSettled, startEngine, startRotation, waitFinished } from '../helpers/engine.ts';
import { spawnRotator, type RotatorProcess } from '../helpers/processes.ts';
import { HoldingProxy } from '../helpers/holding-proxy.ts';
import { SimulatedConsumer } from '../helpers/consumer.ts';
import type { Runtime } from '../../src/runtime.ts';
import type { HistoryEntry } from '../../src/domain/rotation.ts';

/**
 * Issue 18, the parking path with real processes: a worker process SIGTERMed in the middle of a
 * step — one rotation in create-secondary (its key being created at Twilio), another in promote
 * (after its drain, verifying the new key) — finishes each step, parks each rotation (a history
 * entry, so the events and the audit trail show it), and exits 0 by itself, well inside
 * SHUTDOWN_TIMEOUT_SECONDS (past it the exit code would be 1). Another worker process picks both
 * up and finishes them: no failed or retried step, each credential rotated once, no orphan key,
 * no consumer refused. The requests are held by a proxy in front of the Twilio emulator, so the
 * worker is certainly mid-step when the signal arrives.
 */
describe('a worker process SIGTERMed mid-step', () => {
  let stack: Stack;
  let proxy: HoldingProxy;
  let control: Runtime;
  const procs: RotatorProcess[] = [];

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 2, drainSeconds: 2 });
    await stack.seedAll();
    proxy = await HoldingProxy.start(stack.emu.url);
    control = await startEngine(stack, { PLANNER_ENABLED: 'false' }, { api: false, worker: false });
  }, 120_000);
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await control?.close();
    await proxy?.close();
    await stack?.close();
  });

  const spawnWorker = (): RotatorProcess => {
    const p = spawnRotator('worker', {
      ...stack.env,
      TWILIO_BASE_URL: proxy.url,
      // A held request must not time out: the test holds it while another worker starts.
      TWILIO_TIMEOUT_MS: '300000',
      SHUTDOWN_DELAY_SECONDS: '0',
      SHUTDOWN_TIMEOUT_SECONDS: '60',
      ACCOUNT_SYNC_SECONDS: '0',
      PLANNER_ENABLED: 'false',
    }, stack.logs);
    procs.push(p);
    return p;
  };

  it('finishes the step, parks the rotation, exits 0; another worker finishes it, once, with no 401', async () => {
    const [a, b] = stack.emu.subaccounts.map((s) => s.sid) as [string, string];
    const consumers = [new SimulatedConsumer({ store: stack.store, pathOf: stack.path, accounts: [a, b], refreshMs: 500, baseUrl: stack.emu.url, pauseMs: 20 })];
    consumers.forEach((c) => c.start());
    const first = spawnWorker();
    await within('the first worker to start', first.ready, 180_000);
    const by = (p: RotatorProcess): string => `${hostname()}:${p.child.pid}`;

    // A: held while create-secondary creates its key. B: held in promote (after its drain), as it verifies the new key again.
    const ids: { b?: string } = {};
    const holdA = proxy.hold((method, path) => method === 'POST' && path.endsWith(`/Accounts/${a}/Keys.json`));
    const holdB = proxy.hold(async (method, path) => method === 'GET' && path.endsWith(`/Accounts/${b}/Messages.json`) && !!ids.b && (await control.repo.get(ids.b))?.step === 'promote');
    const recA = await startRotation(control, a);
    const recB = await startRotation(control, b);
    ids.b = recB.id;
    await within('create-secondary of A to be held at Twilio', holdA.held, 120_000);
    await within('promote of B to be held at Twilio', holdB.held, 120_000);

    // The worker that takes over, ready before the first one is stopped.
    const second = spawnWorker();
    await within('the second worker to start', second.ready, 180_000);
    const closing = first.printed('rotation worker closing');
    const t0 = Date.now();
    first.child.kill('SIGTERM');
    await within('the first worker to begin closing', closing, 60_000);
    // Its steps are still running (held): let them finish now that it is closing.
    holdA.release();
    holdB.release();
    const exit = await within('the first worker to exit', first.exited, 120_000);
    const exitMs = Date.now() - t0;
    expect(exit).toEqual({ code: 0, signal: null });

    const [doneA, doneB] = [await waitFinished(control, recA.id, 120_000), await waitFinished(control, recB.id, 120_000)];
    const stats = await Promise.all(consumers.map((c) => c.stop()));
    const steps = (h: HistoryEntry[]): string[] => h.filter((e) => e.status !== 'created').map((e) => `${e.step} ${e.status} by ${e.by === by(first) ? 'first' : e.by === by(second) ? 'second' : e.by}`);
    expect({ status: doneA.status, history: steps(doneA.history) }, await describeRotation(control, recA.id)).toEqual({
      status: 'succeeded',
      history: ['create-secondary completed by first', 'operationalize parked by first', 'operationalize completed by second', 'promote waiting by second', 'promote completed by second', 'delete-old completed by second'],
    });
    expect({ status: doneB.status, history: steps(doneB.history) }).toEqual({
      status: 'succeeded',
      history: ['create-secondary completed by first', 'operationalize completed by first', 'promote waiting by first', 'promote completed by first', 'delete-old parked by first', 'delete-old completed by second'],
    });
    // Each credential rotated once: one key created each, the old one gone, store and Twilio agree.
    const created = stack.emu.authLog(0).filter((e) => e.method === 'POST' && /\/Keys\.json$/.test(e.path) && e.status === 201);
    expect(created).toHaveLength(2);
    for (const sid of [a, b]) expect((await expectSettled(stack, sid)).problems).toEqual([]);
    expect(stats.reduce((n, s) => n + s.unauthorized, 0)).toBe(0);
    // The audit trail names the worker that let go of each rotation, and before which step.
    for (const [id, step] of [[recA.id, 'operationalize'], [recB.id, 'delete-old']] as const) {
      const entries = await waitFor(`the park of ${id} in the audit trail`, async () => {
        const items = (await control.audit.list({ rotationId: id, limit: 50 })).items.filter((e) => e.action === 'step.parked');
        return items.length ? items : undefined;
      });
      expect(entries.map((e) => ({ actor: e.actor, step: e.step }))).toEqual([{ actor: by(first), step }]);
    }
    console.log(`rolling-restart-park figures: SIGTERM to exit ${exitMs} ms (SHUTDOWN_TIMEOUT_SECONDS 60); consumer requests ${stats.reduce((n, s) => n + s.requests, 0)}, 401s 0`);
  }, 600_000);
});
