import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { startStack, waitFor, within, type Stack } from '../helpers/stack.ts';
import { describeRotation, expectSettled, startEngine, startRotation, waitFinished } from '../helpers/engine.ts';
import { spawnRotator, type RotatorProcess } from '../helpers/processes.ts';
import { SimulatedConsumer, type ConsumerStats } from '../helpers/consumer.ts';
import type { Runtime } from '../../src/runtime.ts';
import type { StoredBatch } from '../../src/state/batches.ts';
import { mintToken } from '../../src/api/tokens.ts';

const SUBACCOUNTS = 16;
/** Each rotation waits this long in promote, so every wave of the batch lasts at least this. */
const DRAIN_SECONDS = 6;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

interface Proc {
  name: string;
  kind: 'worker' | 'api';
  p: RotatorProcess;
  /** Where its /readyz is: the API's port, or a worker's METRICS_PORT. */
  base: string;
}

/**
 * Issue 18, rolling restarts: during a batch, every worker and API process is replaced — the
 * replacement started and ready first, then the old one sent SIGTERM — and nothing is lost: the
 * old process answers 503 on /readyz while it drains, finishes what it was serving (a request in
 * flight is answered, its event streams end) and exits 0; the batch completes with every
 * credential rotated exactly once and no consumer ever refused (401).
 */
describe('a rolling restart of every worker and API process during a batch', () => {
  let stack: Stack;
  let control: Runtime;
  let token: string;
  let tokenEntry: string;
  let sids: string[];
  const procs: Proc[] = [];
  const figures: string[] = [];

  const spawnProc = async (kind: 'worker' | 'api', name: string): Promise<Proc> => {
    const port = await freePort();
    const env = {
      ...stack.env,
      API_TOKENS: tokenEntry,
      RATE_LIMIT_MAX: '1000000',
      HOST: '127.0.0.1',
      SHUTDOWN_DELAY_SECONDS: '1',
      ACCOUNT_SYNC_SECONDS: '0',
      PLANNER_ENABLED: 'false',
      ...(kind === 'api' ? { PORT: String(port) } : { METRICS_PORT: String(port), WORKER_CONCURRENCY: '8' }),
    };
    const p = spawnRotator(kind, env, stack.logs);
    const proc = { name, kind, p, base: `http://127.0.0.1:${port}` };
    procs.push(proc);
    return proc;
  };

  beforeAll(async () => {
    stack = await startStack({ subaccounts: SUBACCOUNTS, drainSeconds: DRAIN_SECONDS, emulator: { latencyMs: 5 } });
    await stack.seedAll();
    const operator = mintToken('ops', 'operator');
    token = operator.token;
    tokenEntry = operator.entry;
    control = await startEngine(stack, {}, { api: false, worker: false });
    sids = stack.emu.subaccounts.map((s) => s.sid);
    await control.accounts.upsertMany(sids.map((s) => ({ accountSid: s, friendlyName: s, status: 'active', ownerAccountSid: stack.emu.parent.accountSid })));
    for (const s of sids) await control.credentials.ensure({ accountSid: s, name: 'default' });
  }, 120_000);

  afterAll(async () => {
    await Promise.all(procs.map((x) => x.p.stop()));
    await control?.close();
    await stack?.close();
    console.log(`rolling-restart figures: ${figures.join('; ')}`);
  });

  const readyz = async (base: string): Promise<number> => {
    try {
      return (await fetch(`${base}/readyz`)).status;
    } catch {
      return 0;
    }
  };
  const batch = async (id: string): Promise<StoredBatch> => (await control.batchRepo.get(id))!;
  const describeBatch = async (id: string): Promise<string> => {
    const b = await batch(id);
    return `${b.status}, wave ${b.current + 1} of ${b.waves.length}: ${JSON.stringify(b.waves[b.current])}`;
  };

  it('loses nothing: the batch completes, every credential rotated once, zero consumer 401s', async () => {
    // The first generation: two workers and an API.
    const first = [await spawnProc('worker', 'worker-1'), await spawnProc('worker', 'worker-2'), await spawnProc('api', 'api-1')];
    await within('the first generation to start', Promise.all(first.map((x) => x.p.ready)), 180_000);
    for (const x of first) expect(await readyz(x.base)).toBe(200);
    const api = first[2]!;
    // Their replacements, started and ready before any old process is stopped. Started here, all
    // at once, rather than one by one during the batch: a process takes 5-30 s of CPU to start on
    // a loaded 2-core host, which would outlast the batch; what the restart must not lose is in
    // the stopping, which happens below while the batch runs.
    const second = await Promise.all(first.map((x) => spawnProc(x.kind, `${x.name}'`)));
    await within('the replacements to start', Promise.all(second.map((x) => x.p.ready)), 180_000);
    for (const x of second) await waitFor(`${x.name} to be ready`, async () => (await readyz(x.base)) === 200);

    const consumers = Array.from({ length: 2 }, () => new SimulatedConsumer({ store: stack.store, pathOf: stack.path, accounts: sids, refreshMs: 1_000, baseUrl: stack.emu.url, pauseMs: 20 }));
    consumers.forEach((c) => c.start());
    const keysBefore = new Map(sids.map((s) => [s, stack.emu.listKeys(s).map((k) => k.sid)]));

    const created = await fetch(`${api.base}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ selector: 'all', reason: 'rolling restart', waves: { canary: 2, step: 25, bakeSeconds: 0 }, maxFailureRate: 0 }),
    });
    expect(created.status).toBe(202);
    const id = ((await created.json()) as { id: string }).id;
    await waitFor('the canary to have rotations in flight', async () => (await batch(id)).waves[0]!.started > 0, 120_000, 50, () => describeBatch(id));

    const exits: Array<{ name: string; code: number | null; signal: string | null; midBatch: boolean }> = [];
    for (const old of first) {
      // An event stream open on the old API must end when it drains, not hold the process up.
      let streamEnded: Promise<void> | undefined;
      if (old.kind === 'api') {
        const sse = await fetch(`${old.base}/v1/events`, { headers: { authorization: `Bearer ${token}` } });
        expect(sse.status).toBe(200);
        const reader = sse.body!.getReader();
        streamEnded = (async () => {
          for (;;) if ((await reader.read().catch(() => ({ done: true }))).done) return;
        })();
      }
      const midBatch = (await batch(id)).finishedAt === null;
      old.p.child.kill('SIGTERM');
      await waitFor(`${old.name} to answer 503 on /readyz while it drains`, async () => (await readyz(old.base)) === 503, 60_000, 20);
      if (old.kind === 'api') {
        // Draining, not gone: a request still gets its answer.
        const res = await fetch(`${old.base}/v1/batches/${id}`, { headers: { authorization: `Bearer ${token}` } });
        expect(res.status).toBe(200);
        await within('the old API\'s event stream to end', streamEnded!, 60_000);
      }
      const { code, signal } = await within(`${old.name} to exit`, old.p.exited, 60_000);
      exits.push({ name: old.name, code, signal, midBatch });
    }
    // Each old process drained and exited cleanly (not by the shutdown timeout), each while the batch ran.
    expect(exits).toEqual(first.map((x) => ({ name: x.name, code: 0, signal: null, midBatch: true })));

    const done = await waitFor('the batch to complete', async () => ((await batch(id)).finishedAt ? batch(id) : undefined), 300_000, 200, () => describeBatch(id));
    const stats: ConsumerStats[] = await Promise.all(consumers.map((c) => c.stop()));
    expect(done.status).toBe('completed');
    expect(done.waves.map((w) => w.succeeded)).toEqual(done.waves.map((w) => w.size));

    // Every credential rotated exactly once: one rotation each, one new key each, the old key gone.
    const items = await control.batchRepo.items(id);
    const records = await control.repo.getMany(Object.values(items).flatMap((it) => (it.rotationId ? [it.rotationId] : [])));
    expect(records.map((r) => r.status)).toEqual(Array(SUBACCOUNTS).fill('succeeded'));
    expect(new Set(records.map((r) => r.accountSid)).size).toBe(SUBACCOUNTS);
    for (const s of sids) {
      const all = (await control.repo.list({ accountSid: s, limit: 10 })).items;
      expect(all.map((r) => r.batchId)).toEqual([id]);
      expect((await expectSettled(stack, s)).problems).toEqual([]);
      expect(stack.emu.listKeys(s).map((k) => k.sid)).not.toEqual(keysBefore.get(s));
    }
    const created201 = stack.emu.authLog(0).filter((e) => e.method === 'POST' && /\/Keys\.json$/.test(e.path) && e.status === 201);
    expect(created201).toHaveLength(SUBACCOUNTS);

    const unauthorized = stats.reduce((n, s) => n + s.unauthorized, 0);
    expect(unauthorized).toBe(0);
    expect(stats.reduce((n, s) => n + s.ok, 0)).toBeGreaterThan(0);
    const parked = (stack.logs.text().match(/parked the rotation between two steps/g) ?? []).length;
    figures.push(`${SUBACCOUNTS} rotations, ${done.waves.length} waves; consumer requests ${stats.reduce((n, s) => n + s.requests, 0)}, 401s ${unauthorized}; jobs parked at a step boundary by a draining worker: ${parked}`);
  }, 600_000);
});

/**
 * What a draining worker does with the rotation it is running: BullMQ's close() stops fetching and
 * waits for the running job; the job finishes the step in flight and then parks — back in the
 * queue, the record naming the next step — instead of running the rest of the rotation, so
 * another worker carries on and the draining one exits within seconds.
 */
describe('a worker closing mid-rotation', () => {
  let stack: Stack;
  const runtimes: Runtime[] = [];

  beforeAll(async () => {
    // Slow Twilio answers: create-secondary (several requests) is still running when close() is called.
    stack = await startStack({ subaccounts: 1, drainSeconds: 0, emulator: { latencyMs: 300 } });
    await stack.seedAll();
  }, 60_000);
  afterAll(async () => {
    for (const rt of runtimes) await rt.close();
    await stack?.close();
  });

  it('finishes the step in flight, parks the rotation for another worker, which completes it once', async () => {
    const first = await startEngine(stack, { PLANNER_ENABLED: 'false' }, { api: false });
    runtimes.push(first);
    const sid = stack.emu.subaccounts[0]!.sid;
    const rec = await startRotation(first, sid);
    await waitFor('create-secondary to be running', async () => {
      const r = await first.repo.get(rec.id);
      return r?.status === 'running' && r.step === 'create-secondary';
    }, 60_000, 10, () => describeRotation(first, rec.id));
    await first.worker!.close();

    const parked = (await first.repo.get(rec.id))!;
    expect({ status: parked.status, step: parked.step }).toEqual({ status: 'running', step: 'operationalize' });
    expect(['delayed', 'waiting', 'prioritized']).toContain(await (await first.queue.getJob(rec.id))!.getState());
    expect(stack.logs.text()).toMatch(/parked the rotation between two steps for another worker/);

    const second = await startEngine(stack, { PLANNER_ENABLED: 'false' }, { api: false });
    runtimes.push(second);
    const done = await waitFinished(second, rec.id);
    expect(done.status).toBe('succeeded');
    const completed = done.history.filter((h) => h.status === 'completed').map((h) => h.step);
    expect(completed).toEqual(['create-secondary', 'operationalize', 'promote', 'delete-old']);
    // Its steps after the park ran in the second runtime's worker (another host:pid is not
    // available in one process; the first worker is closed, so nothing else could run them).
    expect((await expectSettled(stack, sid)).problems).toEqual([]);
  }, 120_000);
});
