import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startEmbeddedRedis, type EmbeddedRedis } from '../../src/state/redis.ts';
import { RotationRepository } from '../../src/state/rotations.ts';
import { AuditLog, redisChainSource, verifyAuditChain, type AuditEntry } from '../../src/state/audit.ts';
import { AuditRelay, transitionAuditFields } from '../../src/service/audit-relay.ts';
import { createLogger } from '../../src/logger.ts';
import { newRotationId, withHistory, type HistoryEntry, type RotationRecord } from '../../src/domain/rotation.ts';

/**
 * Found by the chaos suite: a worker SIGKILLed (or Redis restarting) between a transition's record
 * write and its audit append lost the audit entry; so did the API dying between writing a rotation
 * and answering. The relay appends, from the events stream written with each record, every
 * transition the chain lacks — exactly once.
 */
describe('audit relay', () => {
  let dir: string;
  let server: EmbeddedRedis;
  let redis: Redis;
  let repo: RotationRepository;
  let audit: AuditLog;
  const log = createLogger('silent');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rotator-relay-'));
    server = await startEmbeddedRedis({ dir, persist: false });
    redis = new Redis(server.url);
    repo = new RotationRepository(redis, 'r');
    audit = new AuditLog(redis, 'r');
  });
  afterAll(async () => {
    redis.disconnect();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function entriesOf(id: string): Promise<AuditEntry[]> {
    const out: AuditEntry[] = [];
    for await (const e of audit.entries({ rotationId: id })) out.push(e);
    return out;
  }

  it('appends every transition the chain lacks, once, whatever was appended before and whenever the relay died', async () => {
    const at = new Date().toISOString();
    const accountSid = `AC${'1'.repeat(32)}`;
    const rec: RotationRecord = {
      id: newRotationId(),
      kind: 'api-key', credential: 'default',
      accountSid,
      status: 'pending',
      step: 'create-secondary',
      dryRun: false,
      trigger: 'api',
      attempts: 0,
      createdAt: at,
      updatedAt: at,
      rev: 0,
      history: [{ step: 'create-secondary', status: 'created', at, detail: 'requested' }],
    };
    // Written by the API, which died before its request audit: the chain has nothing for it.
    await repo.create(rec);
    const step = async (entry: HistoryEntry, appendNow: boolean): Promise<void> => {
      const written = await repo.update(rec.id, (r) => ({ ...r, status: 'running', history: withHistory(r.history, entry) }), entry);
      if (appendNow) await audit.append(transitionAuditFields(written, entry, 'worker'), Date.parse(entry.at));
    };
    const t = (ms: number) => new Date(Date.parse(at) + ms).toISOString();
    // A worker appended this one itself…
    await step({ step: 'create-secondary', status: 'completed', at: t(5), by: 'host:1', detail: 'created; verified' }, true);
    // …was SIGKILLed before appending this one…
    await step({ step: 'operationalize', status: 'completed', at: t(9), by: 'host:1' }, false);
    // …and a retry was folded into history while Redis was away.
    await step({ step: 'promote', status: 'retrying', at: t(12), by: 'host:2', detail: 'store unavailable' }, false);

    const relay = new AuditRelay({ redis, prefix: 'r', audit, log, settleMs: 0 });
    expect(await relay.pump()).toBe(3);
    const entries = await entriesOf(rec.id);
    expect(entries.map((e) => `${e.step}|${e.action}|${e.actor}|${e.at}`).sort()).toEqual(
      [`create-secondary|step.created|api|${at}`, `create-secondary|step.completed|host:1|${t(5)}`, `operationalize|step.completed|host:1|${t(9)}`, `promote|step.retrying|host:2|${t(12)}`].sort(),
    );
    // Again: nothing new. And after a crash between an append and the cursor update: still nothing new.
    expect(await relay.pump()).toBe(0);
    await redis.del('r:audit:relay:cursor');
    expect(await relay.pump()).toBe(0);
    expect(await entriesOf(rec.id)).toHaveLength(4);
    expect(await verifyAuditChain(redisChainSource(redis, 'r'))).toMatchObject({ ok: true, count: 4 });
    await relay.stop();
  });

  it('waits for a transition to settle, and only one relay works at a time', async () => {
    const at = new Date().toISOString();
    const rec: RotationRecord = {
      id: newRotationId(),
      kind: 'api-key', credential: 'default',
      accountSid: `AC${'2'.repeat(32)}`,
      status: 'pending',
      step: 'create-secondary',
      dryRun: false,
      trigger: 'api',
      attempts: 0,
      createdAt: at,
      updatedAt: at,
      rev: 0,
      history: [{ step: 'create-secondary', status: 'created', at }],
    };
    await repo.create(rec);
    const patient = new AuditRelay({ redis, prefix: 'r2', audit: new AuditLog(redis, 'r2'), log, settleMs: 60_000 });
    const other = new AuditRelay({ redis, prefix: 'r2', audit: new AuditLog(redis, 'r2'), log, settleMs: 0 });
    const repo2 = new RotationRepository(redis, 'r2');
    await repo2.create({ ...rec, id: newRotationId() });
    expect(await patient.pump()).toBe(0); // too fresh: the immediate append may still be on its way
    expect(await other.pump()).toBe(0); // the lease is the first relay's
    await patient.stop();
    expect(await other.pump()).toBe(1);
    await other.stop();
  });

  it('keeps its copy of the chain between pumps, and drops it when Redis was away (the newest entries may be lost)', async () => {
    const prefix = 'r3';
    const repo3 = new RotationRepository(redis, prefix);
    const audit3 = new AuditLog(redis, prefix);
    const relay = new AuditRelay({ redis, prefix, audit: audit3, log, settleMs: 0 });
    // Audit entries the relay reads back, to tell "extends its copy" from "re-reads the window".
    let auditRowsRead = 0;
    const xrange = redis.xrange.bind(redis) as unknown as (...a: string[]) => Promise<unknown[]>;
    (redis as unknown as { xrange: (...a: string[]) => Promise<unknown[]> }).xrange = async (...a: string[]) => {
      const rows = await xrange(...a);
      if (a[0] === `${prefix}:audit`) auditRowsRead += rows.length;
      return rows;
    };
    let made = 0;
    const started = async (n: number, appendNow: boolean): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const at = new Date().toISOString();
        const entry: HistoryEntry = { step: 'create-secondary', status: 'created', at };
        const rec: RotationRecord = { id: newRotationId(), kind: 'api-key', credential: 'default', accountSid: `AC${(made++).toString(16).padStart(32, '0')}`, status: 'pending', step: 'create-secondary', dryRun: false, trigger: 'api', attempts: 0, createdAt: at, updatedAt: at, rev: 0, history: [entry] };
        expect(await repo3.create(rec)).toEqual({ created: true });
        if (appendNow) await audit3.append(transitionAuditFields(rec, entry, 'api'), Date.parse(at));
      }
    };
    await started(300, true);
    expect(await relay.pump()).toBe(0);
    // The next pump reads only what is new: 300 more events (two batches) and their entries.
    await started(300, true);
    auditRowsRead = 0;
    expect(await relay.pump()).toBe(0);
    expect(auditRowsRead).toBe(300);

    // Entries appended while our copy is held are still seen; entries that vanish with a Redis
    // restart are not taken as present: the connection drops, and the copy with it.
    await started(5, false);
    expect(await relay.pump()).toBe(5);
    await started(1, true);
    const lastId = ((await redis.xrevrange(`${prefix}:audit`, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>)[0]![0];
    await redis.xdel(`${prefix}:audit`, lastId);
    redis.disconnect(true);
    await new Promise((r) => redis.once('ready', r));
    expect(await relay.pump()).toBe(1);
    await relay.stop();
    delete (redis as unknown as { xrange?: unknown }).xrange;
  });

  it('appends what queued up while an append was in flight in one round trip, as one valid chain', async () => {
    const prefix = 'r4';
    const audit4 = new AuditLog(redis, prefix);
    const evalsBefore = Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0);
    const written = await Promise.all(Array.from({ length: 250 }, (_, i) => audit4.append({ kind: 'rotation', actor: 'w', action: 'step.completed', detail: `n${i}` })));
    const evals = Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0) - evalsBefore;
    expect(evals).toBeLessThanOrEqual(5);
    expect(written.map((e) => e.detail)).toEqual(Array.from({ length: 250 }, (_, i) => `n${i}`));
    for (let i = 1; i < written.length; i++) expect(written[i]!.prev).toBe(written[i - 1]!.hash);
    expect(await verifyAuditChain(redisChainSource(redis, prefix))).toMatchObject({ ok: true, count: 250 });
  });
});
