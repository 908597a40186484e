import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, waitFor, within, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished, expectSettled } from '../helpers/engine.ts';
import { createServer } from 'node:net';
import { spawnRotator, type RotatorProcess } from '../helpers/processes.ts';
import { findSecrets } from '../helpers/leaks.ts';
import type { Runtime } from '../../src/runtime.ts';
import type { RotationRecord } from '../../src/domain/rotation.ts';

/**
 * Steps of one rotation must never overlap: each completed step ran over [startedAt, at], and
 * those intervals follow one another in order.
 */
function overlappingSteps(rec: RotationRecord): string[] {
  const problems: string[] = [];
  let lastEnd = 0;
  for (const h of rec.history.filter((e) => e.status === 'completed')) {
    const start = Date.parse(h.startedAt!);
    if (!(start >= lastEnd)) problems.push(`${rec.id}: ${h.step} started at ${h.startedAt} before the previous step ended`);
    lastEnd = Date.parse(h.at);
  }
  if (rec.history.filter((e) => e.status === 'completed').length !== 4) problems.push(`${rec.id}: expected 4 completed steps`);
  return problems;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** On one Redis server, and on a three-primary Redis Cluster (issue 18): the shared Twilio cap, the leases and BullMQ in one slot. */
describe.each(['single', 'cluster'] as const)('two worker processes on one queue, %s Redis', (redis) => {
  let stack: Stack;
  let control: Runtime;
  let workers: RotatorProcess[];
  let metricsPorts: number[];

  beforeAll(async () => {
    // Twilio allows 4 concurrent requests; the two processes share one cap of 4 through Redis.
    stack = await startStack({ subaccounts: 10, drainSeconds: 0, emulator: { concurrency: 4, latencyMs: 5 }, env: { TWILIO_MAX_CONCURRENCY: '4' }, redis });
    await stack.seedAll();
    control = await startEngine(stack, {}, { api: false, worker: false });
    // Each worker-only process serves its own /metrics and /healthz (METRICS_PORT).
    metricsPorts = [await freePort(), await freePort()];
    workers = metricsPorts.map((port) => spawnRotator('worker', { ...stack.env, WORKER_CONCURRENCY: '8', HOST: '127.0.0.1', METRICS_PORT: String(port) }, stack.logs));
    // Both processes take jobs before the first rotation starts: a process that took longer to
    // start than the other took to run all 50 would take part in none.
    await within('both worker processes to start', Promise.all(workers.map((w) => w.ready)), 180_000);
    await waitFor('both worker processes to listen on the queue', async () => (await control.queue.getWorkersCount()) === 2);
  }, 240_000);

  afterAll(async () => {
    await Promise.all((workers ?? []).map((w) => w.stop()));
    await control?.close();
    await stack?.close();
  });

  it('runs 50 rotations to success with no two steps of a rotation at once', async () => {
    const accounts = stack.emu.subaccounts.map((s) => s.sid);
    const results = await Promise.all(
      accounts.map(async (sid) => {
        const done: RotationRecord[] = [];
        for (let i = 0; i < 5; i++) done.push(await waitFinished(control, (await startRotation(control, sid)).id, 90_000));
        return done;
      }),
    );
    const all = results.flat();
    expect(all).toHaveLength(50);
    expect(all.filter((r) => r.status !== 'succeeded').map((r) => r.error)).toEqual([]);
    expect(all.flatMap(overlappingSteps)).toEqual([]);
    // Both processes took part.
    const workersSeen = new Set(all.flatMap((r) => r.history.map((h) => h.by?.split(':')[1]).filter(Boolean)));
    expect(workersSeen.size).toBe(2);
    for (const sid of accounts) expect((await expectSettled(stack, sid)).problems).toEqual([]);
    // The shared cap kept both processes together under Twilio's limit: not one 20429.
    expect(stack.emu.stats().rejected429).toBe(0);
    expect(stack.emu.stats().inFlightPeak).toBe(4);
  }, 180_000);

  it('each worker-only process serves its own step, Twilio and store metrics, and /healthz; nothing secret', async () => {
    const texts: string[] = [];
    for (const port of metricsPorts) {
      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await res.text();
      texts.push(text);
      // This process ran steps and called Twilio (both took part, per the test before).
      expect(text).toMatch(/^rotator_step_duration_seconds_count\{step="create-secondary"\} [1-9]/m);
      expect(text).toMatch(/^rotator_twilio_requests_total\{[^}]*\} [1-9]/m);
      expect((await fetch(`${base}/v1/rotations`)).status).toBe(404);
      expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
    }
    expect(findSecrets(stack.emu.issuedSecrets(), texts)).toEqual([]);
  });
});
