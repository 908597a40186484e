import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, waitFor, within, type Stack } from '../helpers/stack.ts';
import { startEngine } from '../helpers/engine.ts';
import { spawnRotator, type RotatorProcess } from '../helpers/processes.ts';
import { orderCredentials, type BatchItem } from '../../src/domain/batch.ts';
import type { RotationRecord } from '../../src/domain/rotation.ts';
import type { StoredBatch } from '../../src/state/batches.ts';
import type { Runtime } from '../../src/runtime.ts';
import { mintToken } from '../../src/api/tokens.ts';

/**
 * Issue 13's acceptance for batches: a batch over 1,000 emulated subaccounts with
 * TWILIO_MAX_CONCURRENCY=50, run by two worker processes able to run 80 rotations at once and a
 * batch allowed 200 in flight, so only the Redis-wide gate keeps Twilio's concurrency at 50.
 */
const SUBACCOUNTS = 1_000;
const CAP = 50;

describe(`a batch over ${SUBACCOUNTS} subaccounts`, () => {
  let stack: Stack;
  let api: Runtime;
  let workers: RotatorProcess[];
  let token: string;
  let sids: string[];
  let planOrder: string[];
  const figures: string[] = [];

  beforeAll(async () => {
    const t0 = Date.now();
    stack = await startStack({
      subaccounts: SUBACCOUNTS,
      drainSeconds: 1,
      // A little latency so requests overlap: without the gate, 80 rotations at once would put
      // far more than 50 requests in flight.
      emulator: { latencyMs: 10 },
      env: { TWILIO_MAX_CONCURRENCY: String(CAP), ACCOUNT_SYNC_SECONDS: '0' },
    });
    await stack.seedAll();
    const operator = mintToken('ops', 'operator');
    token = operator.token;
    api = await startEngine(stack, { API_TOKENS: operator.entry, RATE_LIMIT_MAX: '1000000' }, { api: true, worker: false });
    sids = stack.emu.subaccounts.map((s) => s.sid);
    // The inventory as the subaccount sync leaves it, and each subaccount's default credential.
    await api.accounts.upsertMany(sids.map((s) => ({ accountSid: s, friendlyName: s, status: 'active', ownerAccountSid: stack.emu.parent.accountSid })));
    for (const s of sids) await api.credentials.ensure({ accountSid: s, name: 'default' });
    planOrder = orderCredentials(sids.map((s) => `${s}/default`));
    workers = [0, 1].map(() => spawnRotator('worker', { ...stack.env, WORKER_CONCURRENCY: '40', BATCH_MAX_IN_FLIGHT: '200' }, stack.logs));
    await within('both worker processes to start', Promise.all(workers.map((w) => w.ready)), 180_000);
    stack.emu.resetStats();
    figures.push(`setup ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }, 300_000);

  afterAll(async () => {
    await Promise.all((workers ?? []).map((w) => w.stop()));
    await api?.close();
    await stack?.close();
    console.log(`batch-fleet figures: ${figures.join('; ')}`);
  });

  const post = async (url: string, payload?: unknown) => {
    const res = await api.app!.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}` }, ...(payload !== undefined ? { payload: payload as object } : {}) });
    return { status: res.statusCode, body: res.json() };
  };
  const batch = async (id: string): Promise<StoredBatch> => (await api.batchRepo.get(id))!;
  const describeBatch = async (id: string): Promise<string> => {
    const b = await batch(id);
    return `${b.status}, wave ${b.current + 1}: ${JSON.stringify(b.waves[b.current])}`;
  };
  const recordsOf = async (items: Record<string, BatchItem>): Promise<RotationRecord[]> =>
    api.repo.getMany(Object.values(items).flatMap((it) => (it.rotationId ? [it.rotationId] : [])));
  /** Keys created at Twilio per subaccount since an auth-log position. */
  const keysCreatedSince = (seq: number): Map<string, number> => {
    const n = new Map<string, number>();
    for (const e of stack.emu.authLog(seq)) if (e.method === 'POST' && /\/Keys\.json$/.test(e.path) && e.status === 201 && e.accountSid) n.set(e.accountSid, (n.get(e.accountSid) ?? 0) + 1);
    return n;
  };
  const lastSeq = (): number => stack.emu.authLog(0).at(-1)?.seq ?? 0;

  it('halts when the canary fails too often, and touches nothing outside the canary', async () => {
    const t0 = Date.now();
    const canary = planOrder.slice(0, 50).map((id) => id.slice(0, 34));
    // Injected failures: 10 of the 50 canary subaccounts are suspended at Twilio (the inventory
    // still says active), so their rotations fail at the subaccount check: 20% > 10%.
    const failing = canary.filter((_, i) => i % 5 === 0);
    for (const s of failing) stack.emu.setAccountStatus(s, 'suspended');
    const outside = sids.filter((s) => !canary.includes(s));
    const keysBefore = new Map(outside.map((s) => [s, stack.emu.listKeys(s).map((k) => k.sid).join()]));
    const seq = lastSeq();

    const res = await post('/v1/batches', { selector: 'all', reason: 'canary must halt', waves: { canary: '5%', step: 25, bakeSeconds: 0 }, maxFailureRate: 0.1 });
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    const b = await waitFor('the halted batch to settle', async () => ((await batch(id)).finishedAt ? batch(id) : undefined), 300_000, 200, () => describeBatch(id));
    for (const s of failing) stack.emu.setAccountStatus(s, 'active');

    expect(b.status).toBe('halted');
    expect(b.halt?.reason).toMatch(/^wave 1 of 5 \(canary\): \d+ of 50 rotations failed/);
    expect(b.waves.slice(1).every((w) => w.started === 0)).toBe(true);
    const items = await api.batchRepo.items(id);
    expect(Object.keys(items).every((cid) => canary.includes(cid.slice(0, 34)))).toBe(true);
    // At Twilio: not one request about a subaccount outside the canary, and their keys unchanged.
    const touched = new Set(stack.emu.authLog(seq).flatMap((e) => (e.accountSid && outside.includes(e.accountSid) ? [e.accountSid] : [])));
    expect([...touched]).toEqual([]);
    expect(outside.filter((s) => stack.emu.listKeys(s).map((k) => k.sid).join() !== keysBefore.get(s))).toEqual([]);
    const audit = (await api.audit.list({ limit: 500 })).items.filter((e) => e.batchId === id).map((e) => e.action);
    expect(audit).toEqual(expect.arrayContaining(['batch.create', 'batch.halted']));
    figures.push(`halt: ${b.waves[0]!.failed} failed of ${b.waves[0]!.started} started in the canary, settled in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }, 300_000);

  it('runs every wave after the one before has ended, pauses (no new start) and resumes, never above the Twilio cap, one new key per credential', async () => {
    const t0 = Date.now();
    const seq = lastSeq();
    const res = await post('/v1/batches', { selector: 'all', reason: 'quarterly', waves: { canary: '5%', step: 25, bakeSeconds: 0 }, maxFailureRate: 0.05 });
    expect(res.status).toBe(202);
    const id = res.body.id as string;

    // Pause once the second wave is under way.
    await waitFor('the second wave to start rotations', async () => (await batch(id)).waves[1]!.started >= 20, 300_000, 20, () => describeBatch(id));
    const paused = await post(`/v1/batches/${id}/pause`);
    const pausedAt = Date.now();
    expect(paused.status).toBe(200);
    expect(paused.body.status).toBe('paused');
    const claimedAtPause = await api.batchRepo.items(id);
    const claimedIds = new Set(Object.values(claimedAtPause).map((it) => it.rotationId));

    const held = await waitFor('the paused batch to have nothing in flight', async () => {
      const b = await batch(id);
      return b.waves.every((w) => w.started === w.succeeded + w.failed + w.cancelled) ? b : undefined;
    }, 300_000, 100, () => describeBatch(id));
    expect(held.status).toBe('paused');
    const heldItems = await api.batchRepo.items(id);
    const heldRecords = await recordsOf(heldItems);
    // Every rotation of the batch is one claimed before the pause was answered.
    expect(heldRecords.filter((r) => !claimedIds.has(r.id)).map((r) => r.id)).toEqual([]);
    const afterPause = heldRecords.filter((r) => Date.parse(r.createdAt) > pausedAt);
    const lastAfter = Math.max(0, ...afterPause.map((r) => Date.parse(r.createdAt) - pausedAt));
    figures.push(`pause answered with ${claimedIds.size} claimed; ${afterPause.length} of those started after the answer, the last ${lastAfter} ms after`);

    expect((await post(`/v1/batches/${id}/resume`)).status).toBe(200);
    const done = await waitFor('the batch to complete', async () => ((await batch(id)).finishedAt ? batch(id) : undefined), 600_000, 200, () => describeBatch(id));
    expect(done.status).toBe('completed');
    expect(done.waves.map((w) => w.succeeded)).toEqual(done.waves.map((w) => w.size));

    // Each wave's rotations all ended before the next wave's first one was created.
    const items = await api.batchRepo.items(id);
    const records = new Map((await recordsOf(items)).map((r) => [r.id, r]));
    const byWave = done.waves.map(() => [] as RotationRecord[]);
    for (const it of Object.values(items)) byWave[it.wave]!.push(records.get(it.rotationId!)!);
    for (let w = 1; w < byWave.length; w++) {
      const lastEnd = Math.max(...byWave[w - 1]!.map((r) => Date.parse(r.finishedAt!)));
      const firstStart = Math.min(...byWave[w]!.map((r) => Date.parse(r.createdAt)));
      expect(firstStart, `wave ${w + 1} started before wave ${w} ended`).toBeGreaterThanOrEqual(lastEnd);
    }

    // Nothing rotated twice: one rotation and one new key per credential.
    expect(records.size).toBe(SUBACCOUNTS);
    expect(new Set([...records.values()].map((r) => r.accountSid)).size).toBe(SUBACCOUNTS);
    const created = keysCreatedSince(seq);
    expect(created.size).toBe(SUBACCOUNTS);
    expect([...created.values()].every((n) => n === 1)).toBe(true);
    expect(sids.filter((s) => stack.emu.listKeys(s).length !== 1)).toEqual([]);

    const stats = stack.emu.stats();
    expect(stats.inFlightPeak).toBeLessThanOrEqual(CAP);
    figures.push(`run: ${SUBACCOUNTS} rotations in ${((Date.now() - t0) / 1000).toFixed(1)} s, Twilio requests ${stats.requests}, peak in flight ${stats.inFlightPeak} (cap ${CAP}), 429s ${stats.rejected429}`);
  }, 900_000);
});
