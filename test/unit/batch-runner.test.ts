import { beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { useEmbeddedRedis } from '../helpers/redis.ts';
import { AccountRepository } from '../../src/state/accounts.ts';
import { CredentialRepository } from '../../src/state/credentials.ts';
import { PolicyRepository } from '../../src/state/policies.ts';
import { RotationRepository } from '../../src/state/rotations.ts';
import { AuditLog } from '../../src/state/audit.ts';
import { BatchRepository, type BatchStreamEvent } from '../../src/state/batches.ts';
import { FleetDirectory } from '../../src/service/fleet.ts';
import { RotationService, type StartRequest } from '../../src/service/rotations.ts';
import { BatchRunner, BatchService, type BatchQueue } from '../../src/service/batches.ts';
import { DEFAULT_POLICIES } from '../../src/domain/policy.ts';
import type { RotationRecord } from '../../src/domain/rotation.ts';
import { createLogger } from '../../src/logger.ts';
import { AuditRelay } from '../../src/service/audit-relay.ts';
import { LogCapture } from '../helpers/stack.ts';

const sid = (n: number): string => `AC${n.toString(16).padStart(32, '0')}`;
const T0 = Date.UTC(2026, 5, 1, 12);

/**
 * The batch runner against a real Redis: real repositories and RotationService, no worker. The
 * test plays the worker, ending rotations by writing their records, and moves a simulated clock.
 */
describe('batch runner (real Redis)', () => {
  const db = useEmbeddedRedis('batch-runner');
  let redis: Redis;
  let run = 0;
  beforeAll(() => {
    redis = db.connection();
  });

  async function setup(n: number, opts: { maxInFlight?: number; startFails?: (req: StartRequest) => boolean } = {}) {
    const prefix = `batch${++run}`;
    const clock = { now: T0 };
    const now = (): number => clock.now;
    const accounts = new AccountRepository(redis, prefix);
    const credentials = new CredentialRepository(redis, prefix);
    const policies = new PolicyRepository(redis, prefix, DEFAULT_POLICIES);
    const fleet = new FleetDirectory({ credentials, accounts, policies });
    const repo = new RotationRepository(redis, prefix);
    const batchRepo = new BatchRepository(redis, prefix);
    const audit = new AuditLog(redis, prefix);
    const sids = Array.from({ length: n }, (_, i) => sid(i + 1));
    await accounts.upsertMany(sids.map((s) => ({ accountSid: s, friendlyName: s, status: 'active', ownerAccountSid: sid(0) })), T0);
    for (const s of sids) await credentials.ensure({ accountSid: s, name: 'default' }, { now: T0 });
    const service = new RotationService(repo, { enqueue: async () => undefined, wake: async () => undefined, requeue: async () => undefined }, now);
    const starts: StartRequest[] = [];
    const rotations = {
      start: async (req: StartRequest) => {
        starts.push(req);
        if (opts.startFails?.(req)) throw new Error('the process died while starting');
        return service.start(req);
      },
      undo: service.undo.bind(service),
    };
    const woken: string[] = [];
    const queue: BatchQueue = { enqueue: async () => undefined, wake: async (id) => void woken.push(id) };
    const logs = new LogCapture();
    const runner = new BatchRunner({ batches: batchRepo, rotations, repo, fleet, audit, log: createLogger('info', logs), now, maxInFlight: opts.maxInFlight ?? 100 });
    const batches = new BatchService({ batches: batchRepo, fleet, queue, now });
    /** Every rotation record of the batch's credentials, by account. */
    const records = async (): Promise<RotationRecord[]> => repo.getMany(await redis.zrange(repo.keys.allRotations, "0", "-1"));
    const finish = async (ids: string[], status: 'succeeded' | 'failed' = 'succeeded'): Promise<void> => {
      for (const id of ids) {
        await repo.update(id, (r) => ({ ...r, status, step: status === 'succeeded' ? 'done' : r.step, finishedAt: new Date(clock.now).toISOString(), updatedAt: new Date(clock.now).toISOString(), ...(status === 'failed' ? { error: { code: 'twilio_admin_unauthorized', message: 'injected' } } : {}) }));
      }
    };
    const inFlight = async (): Promise<RotationRecord[]> => (await records()).filter((r) => r.status === 'pending');
    return { prefix, clock, repo, batchRepo, batches, runner, audit, accounts, credentials, sids, starts, woken, records, finish, inFlight, logs };
  }

  const body = (extra: Record<string, unknown> = {}) => ({ selector: 'all', reason: 'quarterly', waves: { canary: 2, step: 50, bakeSeconds: 60 }, maxFailureRate: 0.2, ...extra });

  it('runs the canary, bakes, then the next waves; each rotation names its batch and credential; nothing starts beyond the current wave', async () => {
    const t = await setup(10);
    const created = await t.batches.create(body(), 'ops');
    if (!created.ok) throw new Error(JSON.stringify(created.errors));
    const id = created.value.id;
    expect(created.value.waves.map((w) => w.size)).toEqual([2, 5, 3]);

    expect(await t.runner.run(id)).toMatchObject({ done: false });
    const canary = await t.inFlight();
    expect(canary.map((r) => `${r.accountSid}/default`).sort()).toEqual(created.value.credentials.slice(0, 2));
    for (const r of canary) expect(r).toMatchObject({ trigger: 'batch', batchId: id, credential: 'default', reason: `batch ${id}: quarterly`, requestedBy: 'ops', dryRun: false });

    // Running again before anything ended starts nothing more.
    await t.runner.run(id);
    expect(await t.records()).toHaveLength(2);

    await t.finish(canary.map((r) => r.id));
    const baking = await t.runner.run(id);
    expect(baking).toEqual({ done: false, wakeAt: T0 + 60_000 });
    expect((await t.batchRepo.get(id))?.status).toBe('baking');
    expect(await t.records()).toHaveLength(2);

    t.clock.now = T0 + 60_000;
    await t.runner.run(id);
    const wave2 = await t.inFlight();
    expect(wave2.map((r) => `${r.accountSid}/default`).sort()).toEqual(created.value.credentials.slice(2, 7));
    await t.finish(wave2.map((r) => r.id));
    // The wave ends when the runner sees it end; the bake counts from then.
    expect(await t.runner.run(id)).toEqual({ done: false, wakeAt: t.clock.now + 60_000 });
    t.clock.now += 60_000;
    await t.runner.run(id);
    await t.finish((await t.inFlight()).map((r) => r.id));
    expect(await t.runner.run(id)).toEqual({ done: true });

    const b = await t.batchRepo.get(id);
    expect(b).toMatchObject({ status: 'completed', finishedAt: t.clock.now });
    // One rotation per credential, and the record of each item names it.
    const recs = await t.records();
    expect(recs).toHaveLength(10);
    expect(new Set(recs.map((r) => r.accountSid)).size).toBe(10);
    const items = await t.batchRepo.items(id);
    expect(Object.values(items).every((it) => it.outcome === 'succeeded' && recs.some((r) => r.id === it.rotationId))).toBe(true);

    // The transitions went onto the events stream, in order.
    const events = (await t.repo.events('0', 10_000)).map((e) => e.event).filter((e): e is BatchStreamEvent => e.type === 'batch');
    expect(events.map((e) => e.event)).toEqual(['planned', 'started', 'wave-started', 'wave-ended', 'baking', 'wave-started', 'wave-ended', 'baking', 'wave-started', 'wave-ended', 'completed']);
    expect(events.at(-1)).toMatchObject({ id, status: 'completed', progress: { total: 10, succeeded: 10, waves: 3 } });
    // The system's own decision is in the audit trail.
    expect((await t.audit.list({ limit: 50 })).items.filter((e) => e.action.startsWith('batch.')).map((e) => [e.action, e.batchId])).toEqual([['batch.completed', id]]);
  });

  it('a start that died after its claim is started again with the same rotation id: never a second rotation', async () => {
    let failing = true;
    const t = await setup(4, { startFails: () => failing });
    const created = await t.batches.create(body({ waves: { canary: 4, step: 100, bakeSeconds: 0 } }), 'ops');
    if (!created.ok) throw new Error('not created');
    const id = created.value.id;
    await t.runner.run(id);
    // Claimed (stored), but no rotation exists.
    const claimed = await t.batchRepo.items(id);
    expect(Object.keys(claimed)).toHaveLength(4);
    expect(await t.records()).toHaveLength(0);

    failing = false;
    await t.runner.run(id);
    await t.runner.run(id);
    const recs = await t.records();
    expect(recs).toHaveLength(4);
    expect(recs.map((r) => r.id).sort()).toEqual(Object.values(claimed).map((it) => it.rotationId).sort());
    // Starting once more with a claimed id answers the same rotation.
    const again = await new RotationService(t.repo, { enqueue: async () => undefined, wake: async () => undefined, requeue: async () => undefined }).start({ id: recs[0]!.id, accountSid: recs[0]!.accountSid, trigger: 'batch' });
    expect(again).toMatchObject({ started: true, record: { id: recs[0]!.id, rev: recs[0]!.rev } });
    expect(await t.records()).toHaveLength(4);
  });

  it('halts when the canary fails too often, records why, audits it, and touches nothing outside the canary', async () => {
    const t = await setup(20);
    const created = await t.batches.create(body({ waves: { canary: 4, step: 25, bakeSeconds: 0 }, maxFailureRate: 0.25 }), 'ops');
    if (!created.ok) throw new Error('not created');
    const id = created.value.id;
    await t.runner.run(id);
    const canary = await t.inFlight();
    expect(canary).toHaveLength(4);
    await t.finish([canary[0]!.id, canary[1]!.id], 'failed');
    expect(await t.runner.run(id)).toMatchObject({ done: false });
    const b = await t.batchRepo.get(id);
    expect(b?.status).toBe('halted');
    expect(b?.halt?.reason).toMatch(/^wave 1 of 5 \(canary\): 2 of 4 rotations failed \(50%\), above maxFailureRate 0.25/);
    // The two still in flight run on and are recorded; nothing else ever starts.
    await t.finish([canary[2]!.id, canary[3]!.id]);
    expect(await t.runner.run(id)).toEqual({ done: true });
    expect(await t.records()).toHaveLength(4);
    expect((await t.batchRepo.get(id))?.waves[0]).toMatchObject({ succeeded: 2, failed: 2 });
    // The relay, following the same stream, finds the entry already there.
    const relay = new AuditRelay({ redis, prefix: t.prefix, audit: t.audit, log: createLogger('silent', t.logs), settleMs: 0 });
    await relay.pump();
    await relay.stop();
    const audit = (await t.audit.list({ limit: 50 })).items.filter((e) => e.action === 'batch.halted');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ kind: 'batch', actor: 'system', batchId: id, detail: b?.halt?.reason });
  });

  it('a halt whose audit append was lost with the runner reaches the audit trail through the relay, once', async () => {
    const t = await setup(4);
    const lossy = new BatchRunner({ batches: t.batchRepo, rotations: new RotationService(t.repo, { enqueue: async () => undefined, wake: async () => undefined, requeue: async () => undefined }, () => t.clock.now), repo: t.repo, fleet: new FleetDirectory({ credentials: t.credentials, accounts: t.accounts, policies: new PolicyRepository(redis, t.prefix, DEFAULT_POLICIES) }), audit: { append: async () => Promise.reject(new Error('the process died')) }, log: createLogger('silent', t.logs), now: () => t.clock.now, maxInFlight: 10 });
    const created = await t.batches.create(body({ waves: { canary: 2, step: 50, bakeSeconds: 0 }, maxFailureRate: 0 }), 'ops');
    if (!created.ok) throw new Error('not created');
    const id = created.value.id;
    await lossy.run(id);
    await t.finish([(await t.inFlight())[0]!.id], 'failed');
    await lossy.run(id);
    expect((await t.batchRepo.get(id))?.status).toBe('halted');
    const halted = async () => (await t.audit.list({ limit: 100 })).items.filter((e) => e.action === 'batch.halted');
    expect(await halted()).toEqual([]);
    const relay = new AuditRelay({ redis, prefix: t.prefix, audit: t.audit, log: createLogger('silent', t.logs), settleMs: 0 });
    await relay.pump();
    await relay.pump();
    expect((await halted()).map((e) => [e.kind, e.actor, e.batchId, e.detail])).toEqual([['batch', 'system', id, (await t.batchRepo.get(id))?.halt?.reason]]);
    await relay.stop();
  });

  it('pause stops new starts (a claim racing it loses), resume carries on; maxInFlight bounds the claims', async () => {
    const t = await setup(12, { maxInFlight: 3 });
    const created = await t.batches.create(body({ waves: { canary: 12, step: 100, bakeSeconds: 0 } }), 'ops');
    if (!created.ok) throw new Error('not created');
    const id = created.value.id;
    await t.runner.run(id);
    expect(await t.inFlight()).toHaveLength(3);

    expect(await t.batches.act(id, 'pause', 'ops')).toMatchObject({ ok: true, changed: true, batch: { status: 'paused' } });
    expect(t.woken).toEqual([id]);
    expect(await t.batches.act(id, 'pause', 'ops')).toMatchObject({ ok: true, changed: false });
    await t.finish((await t.inFlight()).map((r) => r.id));
    expect(await t.runner.run(id)).toMatchObject({ done: false });
    // The three ended and were counted; nothing new started while paused.
    expect(await t.records()).toHaveLength(3);
    expect((await t.batchRepo.get(id))?.waves[0]).toMatchObject({ started: 3, succeeded: 3 });

    expect(await t.batches.act(id, 'resume', 'ops')).toMatchObject({ ok: true, changed: true, batch: { status: 'running' } });
    for (let i = 0; i < 3; i++) {
      await t.runner.run(id);
      expect((await t.inFlight()).length).toBeLessThanOrEqual(3);
      await t.finish((await t.inFlight()).map((r) => r.id));
    }
    expect(await t.runner.run(id)).toEqual({ done: true });
    expect(await t.records()).toHaveLength(12);
    expect(await t.batches.act(id, 'resume', 'ops')).toMatchObject({ ok: false, reason: 'cannot resume: the batch is completed' });
  });

  it('cancel asks each rotation in flight to undo (one past the point of no return finishes), and the batch ends when they have', async () => {
    const t = await setup(6);
    const created = await t.batches.create(body({ waves: { canary: 3, step: 50, bakeSeconds: 0 } }), 'ops');
    if (!created.ok) throw new Error('not created');
    const id = created.value.id;
    await t.runner.run(id);
    const [a, b, c] = await t.inFlight();
    // c is past delete-old: a cancel is refused there.
    await t.repo.update(c!.id, (r) => ({ ...r, status: 'running', step: 'delete-old' }));

    expect(await t.batches.act(id, 'cancel', 'ops')).toMatchObject({ ok: true, batch: { status: 'cancelled', cancel: { inFlight: 3, notStarted: 3 } } });
    await t.runner.run(id);
    const after = new Map((await t.records()).map((r) => [r.id, r]));
    expect(after.get(a!.id)?.undo).toMatchObject({ reason: 'cancel', requestedBy: `batch ${id}` });
    expect(after.get(b!.id)?.undo).toMatchObject({ reason: 'cancel' });
    expect(after.get(c!.id)?.undo).toBeUndefined();

    // The worker's part: a and b undo, c finishes.
    for (const r of [a!, b!]) await t.repo.update(r.id, (x) => ({ ...x, status: 'cancelled', finishedAt: new Date(t.clock.now).toISOString() }));
    await t.finish([c!.id]);
    expect(await t.runner.run(id)).toEqual({ done: true });
    expect((await t.batchRepo.get(id))?.waves[0]).toMatchObject({ cancelled: 2, succeeded: 1 });
    expect(await t.records()).toHaveLength(3);
    expect(await t.batches.act(id, 'pause', 'ops')).toMatchObject({ ok: false, reason: 'cannot pause: the batch is cancelled' });
  });

  it('follows a rotation of the credential already in flight instead of starting a second; skips a credential paused since planning', async () => {
    const t = await setup(3);
    const created = await t.batches.create(body({ waves: { canary: 3, step: 100, bakeSeconds: 0 } }), 'ops');
    if (!created.ok) throw new Error('not created');
    const id = created.value.id;
    const manual = await new RotationService(t.repo, { enqueue: async () => undefined, wake: async () => undefined, requeue: async () => undefined }).start({ accountSid: t.sids[0]!, trigger: 'api' });
    if (!manual.started) throw new Error('not started');
    await t.credentials.patch({ accountSid: t.sids[1]!, name: 'default' }, { paused: true });

    await t.runner.run(id);
    const items = await t.batchRepo.items(id);
    expect(items[`${t.sids[0]}/default`]).toMatchObject({ rotationId: manual.record.id, detail: `adopted rotation ${manual.record.id} already in flight` });
    expect(items[`${t.sids[1]}/default`]).toMatchObject({ outcome: 'skipped', detail: 'paused' });
    expect((await t.records()).filter((r) => r.accountSid === t.sids[0])).toHaveLength(1);
    await t.finish((await t.inFlight()).map((r) => r.id));
    expect(await t.runner.run(id)).toEqual({ done: true });
    expect((await t.batchRepo.get(id))?.waves[0]).toMatchObject({ succeeded: 2, skipped: 1 });
  });

  it('two runners on one batch at once start each credential once', async () => {
    const t = await setup(30, { maxInFlight: 7 });
    const created = await t.batches.create(body({ waves: { canary: 10, step: 50, bakeSeconds: 0 } }), 'ops');
    if (!created.ok) throw new Error('not created');
    const id = created.value.id;
    const other = new BatchRunner({ batches: t.batchRepo, rotations: new RotationService(t.repo, { enqueue: async () => undefined, wake: async () => undefined, requeue: async () => undefined }, () => t.clock.now), repo: t.repo, fleet: new FleetDirectory({ credentials: t.credentials, accounts: t.accounts, policies: new PolicyRepository(redis, t.prefix, DEFAULT_POLICIES) }), audit: t.audit, log: createLogger('silent', t.logs), now: () => t.clock.now, maxInFlight: 7 });
    for (let i = 0; i < 40; i++) {
      const r = await Promise.all([t.runner.run(id), other.run(id)]);
      if (r.every((x) => x.done)) break;
      await t.finish((await t.inFlight()).map((x) => x.id));
    }
    expect((await t.batchRepo.get(id))?.status).toBe('completed');
    const recs = await t.records();
    expect(recs).toHaveLength(30);
    expect(new Set(recs.map((r) => r.accountSid)).size).toBe(30);
  });

  it('lists batches newest first with a cursor; refuses a selector matching nothing, naming the field', async () => {
    const t = await setup(2);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      t.clock.now = T0 + (i < 3 ? 0 : i) * 1000;
      const c = await t.batches.create(body({ waves: { canary: 1, step: 100, bakeSeconds: 0 } }), 'ops');
      if (!c.ok) throw new Error('not created');
      ids.push(c.value.id);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let guard = 0; guard < 10; guard++) {
      const page = await t.batches.list({ limit: 2, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((b) => b.id));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    expect(seen).toHaveLength(5);
    expect(new Set(seen).size).toBe(5);
    expect(seen.slice(0, 2)).toEqual([ids[4], ids[3]]);

    expect(await t.batches.create(body({ selector: { labels: ['pci'] } }), 'ops')).toEqual({ ok: false, errors: [{ path: 'selector.labels', message: 'matches no credential that can be rotated' }] });
    expect(await t.batches.create(body({ waves: { canary: 5, step: 50, bakeSeconds: 0 } }), 'ops')).toEqual({ ok: false, errors: [{ path: 'waves.canary', message: '5 is more than the 2 selected credentials' }] });
  });
});
