import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { HoldingProxy } from '../helpers/holding-proxy.ts';
import { parseCredentialId } from '../../src/domain/credential.ts';
import { startStack, waitFor, within, type Stack } from '../helpers/stack.ts';
import { expectSettled, startEngine } from '../helpers/engine.ts';
import { spawnRotator, type RotatorProcess } from '../helpers/processes.ts';
import { SimulatedConsumer, type ConsumerStats } from '../helpers/consumer.ts';
import type { Runtime } from '../../src/runtime.ts';
import type { StoredBatch } from '../../src/state/batches.ts';
import { mintToken } from '../../src/api/tokens.ts';

const SUBACCOUNTS = 12;
/** Each rotation waits this long in promote: consumers (refreshing every 500 ms) have moved by then. */
const DRAIN_SECONDS = 3;

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
 * Issue 18, rolling restarts: while a batch runs, every worker and API process is restarted one at
 * a time — SIGTERM to the old one, which answers 503 on /readyz while it drains, finishes what it
 * was serving (a request in flight is answered, its event streams end; a worker's rotations finish
 * their step and park) and exits 0; then its replacement is started and waited for, then the next
 * — and nothing is lost: the batch completes with every credential rotated exactly once and no
 * consumer ever refused (401).
 *
 * The batch must outlast the restarts whatever the host's speed (a process takes 5-30 s of CPU to
 * start on a loaded 2-core host): the last credential of its plan is held back — its key creation
 * answered 503 by a proxy in front of the Twilio emulator, a transient error its rotation retries
 * with backoff, holding no worker — until every process has been replaced.
 */
describe('a rolling restart of every worker and API process during a batch', () => {
  let stack: Stack;
  let control: Runtime;
  let token: string;
  let tokenEntry: string;
  let sids: string[];
  let proxy: HoldingProxy;
  const procs: Proc[] = [];
  const figures: string[] = [];

  const spawnProc = async (kind: 'worker' | 'api', name: string): Promise<Proc> => {
    const port = await freePort();
    const env = {
      ...stack.env,
      TWILIO_BASE_URL: proxy.url,
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
    proxy = await HoldingProxy.start(stack.emu.url);
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
    await proxy?.close();
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
    const t0 = Date.now();
    // The first generation: two workers and an API.
    const first = [await spawnProc('worker', 'worker-1'), await spawnProc('worker', 'worker-2'), await spawnProc('api', 'api-1')];
    await within('the first generation to start', Promise.all(first.map((x) => x.p.ready)), 180_000);
    for (const x of first) expect(await readyz(x.base)).toBe(200);
    let api = first[2]!;

    const consumers = Array.from({ length: 2 }, () => new SimulatedConsumer({ store: stack.store, pathOf: stack.path, accounts: sids, refreshMs: 500, baseUrl: stack.emu.url, pauseMs: 20 }));
    consumers.forEach((c) => c.start());
    const keysBefore = new Map(sids.map((s) => [s, stack.emu.listKeys(s).map((k) => k.sid)]));

    // The last credential of the plan is held back (see above) until every process is replaced.
    // The batch is known only once created; its canary, which may start before that, is not the last.
    const ids: { batch?: string } = {};
    let last: string | undefined;
    const heldBack = proxy.refuse(async (method, path) => {
      if (method !== 'POST' || !ids.batch) return false;
      last ??= parseCredentialId((await control.batchRepo.plan(ids.batch))!.at(-1)!).accountSid;
      return path.endsWith(`/Accounts/${last}/Keys.json`);
    });
    const created = await fetch(`${api.base}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ selector: 'all', reason: 'rolling restart', waves: { canary: 2, step: 25, bakeSeconds: 0 }, maxFailureRate: 0 }),
    });
    expect(created.status).toBe(202);
    const id = ((await created.json()) as { id: string }).id;
    ids.batch = id;
    await waitFor('the canary to have rotations in flight', async () => (await batch(id)).waves[0]!.started > 0, 120_000, 50, () => describeBatch(id));

    // One at a time: stop the old process, wait for it to exit, start its replacement, wait until it is ready.
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
      const next = await spawnProc(old.kind, `${old.name}'`);
      await within(`${next.name} to start`, next.p.ready, 180_000);
      await waitFor(`${next.name} to be ready`, async () => (await readyz(next.base)) === 200);
      if (next.kind === 'api') api = next;
    }
    // Each old process drained and exited cleanly (not by the shutdown timeout), each while the batch ran.
    expect(exits).toEqual(first.map((x) => ({ name: x.name, code: 0, signal: null, midBatch: true })));
    expect((await batch(id)).finishedAt).toBeNull();
    const restartedMs = Date.now() - t0;

    // Let the last credential through; its rotation, waiting out a backoff, retries at once.
    heldBack.allow();
    const lastItem = await waitFor('the held-back credential to have its rotation', async () => Object.entries(await control.batchRepo.items(id)).find(([c]) => parseCredentialId(c).accountSid === last)?.[1].rotationId ?? undefined, 300_000, 100, () => describeBatch(id));
    const job = await control.queue.getJob(lastItem);
    if (job && (await job.isDelayed())) await job.promote().catch(() => undefined);

    const done = await waitFor('the batch to complete', async () => ((await batch(id)).finishedAt ? batch(id) : undefined), 300_000, 200, () => describeBatch(id));
    const stats: ConsumerStats[] = await Promise.all(consumers.map((c) => c.stop()));
    expect(done.status).toBe('completed');
    expect(done.waves.map((w) => w.succeeded)).toEqual(done.waves.map((w) => w.size));
    // The batch answers on the replacement API too.
    expect((await fetch(`${api.base}/v1/batches/${id}`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);

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
    // How many of the held-back credential's key creations were refused depends on the host's speed
    // (on a fast one every process is replaced before the last wave starts): a figure, not a claim.
    // What the hold is for, that every process was replaced mid-batch, is asserted above.

    const unauthorized = stats.reduce((n, s) => n + s.unauthorized, 0);
    expect(unauthorized).toBe(0);
    expect(stats.reduce((n, s) => n + s.ok, 0)).toBeGreaterThan(0);
    const parked = (stack.logs.text().match(/parked the rotation between two steps/g) ?? []).length;
    figures.push(
      `${SUBACCOUNTS} rotations, ${done.waves.length} waves; 3 processes restarted one at a time in ${Math.round(restartedMs / 1000)} s from the first start; ` +
        `consumer requests ${stats.reduce((n, s) => n + s.requests, 0)}, 401s ${unauthorized}; jobs parked at a step boundary by a draining worker: ${parked}; key creations held back with 503: ${heldBack.refused()}`,
    );
  }, 600_000);
});
