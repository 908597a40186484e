import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { useEmbeddedRedis } from '../helpers/redis.ts';
import { decodeRecord, encodeRecord, RotationRepository } from '../../src/state/rotations.ts';
import { newRotationId, rotationSummary, type RotationRecord } from '../../src/domain/rotation.ts';
import { isCredentialName } from '../../src/domain/credential.ts';
import { CredentialName } from '../../src/api/schemas.ts';
import { sortPrefixedKeys } from '../../workers/steps/create-secondary.ts';
import { secretPath } from '../../providers/secret-store.ts';

const SID = `AC${'7'.repeat(32)}`;

function record(over: Partial<RotationRecord> = {}): RotationRecord {
  const createdMs = Date.now() - 60_000;
  const at = new Date(createdMs).toISOString();
  return {
    id: newRotationId(createdMs),
    kind: 'api-key',
    accountSid: SID,
    credential: 'default',
    status: 'running',
    step: 'promote',
    reason: 'before the upgrade',
    dryRun: false,
    trigger: 'api',
    oldKeySid: `SK${'a'.repeat(32)}`,
    newKeySid: `SK${'b'.repeat(32)}`,
    attempts: 1,
    createdAt: at,
    updatedAt: at,
    rev: 2,
    history: [{ step: 'create-secondary', status: 'created', at }],
    ...over,
  };
}

/**
 * What versions before managed credentials wrote for a record: no `credential` anywhere. One JSON
 * object with epoch-ms times (history last, or before that first), or the two-line form (list item,
 * then the rest) whose item has no credential.
 */
const LEGACY_LAYOUTS = {
  'one object, history last': (rec: RotationRecord) => oneObject(rec, 'last'),
  'one object, history first': (rec: RotationRecord) => oneObject(rec, 'first'),
  'list item and rest': (rec: RotationRecord) => {
    const [item, rest] = encodeRecord(rec).split('\n') as [string, string];
    const { credential: _gone, ...withoutCredential } = JSON.parse(item) as Record<string, unknown>;
    return `${JSON.stringify(withoutCredential)}\n${rest}`;
  },
} as const;

function oneObject(rec: RotationRecord, historyAt: 'last' | 'first'): string {
  const { history, credential: _gone, ...rest } = rec;
  const top: Record<string, unknown> = { ...rest };
  for (const k of ['createdAt', 'updatedAt', 'operationalizedAt', 'promoteAfter', 'finishedAt'] as const) if (rec[k] !== undefined) top[k] = Date.parse(rec[k]);
  const h = history.map((e) => ({ ...e, at: Date.parse(e.at) }));
  return JSON.stringify(historyAt === 'last' ? { ...top, history: h } : { history: h, ...top });
}

describe('managed credentials in the rotation records', () => {
  const db = useEmbeddedRedis('cred');
  let redis: Redis;
  let run = 0;
  beforeAll(() => {
    redis = db.connection();
  });

  for (const [layout, write] of Object.entries(LEGACY_LAYOUTS)) {
    it(`a record an earlier version wrote (${layout}) reads as the default credential, keeps its lock, and is written back with it`, async () => {
      const prefix = `legacy${run++}`;
      const repo = new RotationRepository(redis, prefix);
      const rec = record();
      // An earlier version created it: its index entries and its lock (then per subaccount) are there.
      expect((await repo.create(rec)).created).toBe(true);
      const raw = write(rec);
      expect(raw).not.toContain('credential');
      await redis.set(repo.keys.rotation(rec.id), raw);
      expect(await redis.get(`${prefix}:lock:${SID}`)).toBe(rec.id);

      expect(await repo.get(rec.id)).toEqual(rec);
      expect(decodeRecord(raw).credential).toBe('default');
      // The list item names the credential too (rendered from the record), and the filter finds it.
      const page = await repo.summaryPage({ accountSid: SID, limit: 10 });
      expect(page.items.map((b) => b.toString())).toEqual([JSON.stringify(rotationSummary(rec))]);
      expect((await repo.summaryPage({ accountSid: SID, credential: 'default', limit: 10 })).items).toHaveLength(1);
      expect((await repo.summaryPage({ credential: 'default', limit: 10 })).items).toHaveLength(1);
      expect((await repo.summaryPage({ accountSid: SID, credential: 'billing-prod', limit: 10 })).items).toHaveLength(0);
      expect((await repo.list({ accountSid: SID, credential: 'default', limit: 10 })).items.map((r) => r.id)).toEqual([rec.id]);

      // In flight across the upgrade: it still holds the default credential's lock (the key earlier
      // versions used), and not the subaccount's other credentials.
      expect(await repo.inFlightFor(SID)).toBe(rec.id);
      const next = record({ id: newRotationId(), status: 'pending', step: 'create-secondary', rev: 0 });
      expect(await repo.create(next)).toEqual({ created: false, existingId: rec.id });
      const billing = record({ id: newRotationId(), credential: 'billing-prod', status: 'pending', step: 'create-secondary', rev: 0 });
      expect(await repo.create(billing)).toEqual({ created: true });

      // Its next change writes it in the current form, with its credential, and finishing releases the lock.
      const done = await repo.update(rec.id, (r) => ({ ...r, status: 'succeeded', step: 'done', finishedAt: r.updatedAt }));
      expect(done.credential).toBe('default');
      expect((await redis.get(repo.keys.rotation(rec.id)))!.split('\n')[0]).toContain(`"accountSid":"${SID}","credential":"default"`);
      expect(await repo.inFlightFor(SID)).toBeUndefined();
      expect(await repo.inFlightFor(SID, 'billing-prod')).toBe(billing.id);
      const [event] = (await repo.events('0', 100)).filter((e) => e.event.id === rec.id && e.event.status === 'succeeded');
      expect(event?.event).toMatchObject({ accountSid: SID, credential: 'default' });
    });
  }

  it('one lock per credential: the default keeps lock:<accountSid>, others lock:<accountSid>:<name>; two of one credential never run at once', async () => {
    const prefix = `locks${run++}`;
    const repo = new RotationRepository(redis, prefix);
    const pending = { status: 'pending' as const, step: 'create-secondary' as const, rev: 0 };
    const a1 = record({ ...pending, id: newRotationId(), credential: 'a' });
    const b1 = record({ ...pending, id: newRotationId(), credential: 'b' });
    const d1 = record({ ...pending, id: newRotationId() });
    for (const r of [a1, b1, d1]) expect(await repo.create(r)).toEqual({ created: true });
    expect(repo.keys.credentialLock(SID, 'default')).toBe(`${prefix}:lock:${SID}`);
    expect(await redis.get(`${prefix}:lock:${SID}`)).toBe(d1.id);
    expect(await redis.get(`${prefix}:lock:${SID}:a`)).toBe(a1.id);
    expect(await redis.get(`${prefix}:lock:${SID}:b`)).toBe(b1.id);

    const a2 = record({ ...pending, id: newRotationId(), credential: 'a' });
    expect(await repo.create(a2)).toEqual({ created: false, existingId: a1.id });

    // a1 fails with its undo done (holds nothing); a retry of it must wait for a2, which b's rotation does not block.
    const failed = await repo.update(a1.id, (r) => ({ ...r, status: 'failed', undo: { reason: 'failure', completedAt: r.updatedAt } }));
    expect(await repo.inFlightFor(SID, 'a')).toBeUndefined();
    expect(await repo.inFlightFor(SID, 'b')).toBe(b1.id);
    expect(await repo.create(a2)).toEqual({ created: true });
    const entry = { step: 'create-secondary' as const, status: 'retrying' as const, at: new Date().toISOString() };
    expect(await repo.restart(failed, { ...failed, status: 'pending' }, entry)).toEqual({ ok: false, conflict: 'in_flight', existingId: a2.id });
    await repo.update(a2.id, (r) => ({ ...r, status: 'cancelled', undo: { reason: 'cancel', completedAt: r.updatedAt } }));
    expect((await repo.restart(failed, { ...failed, status: 'pending' }, entry)).ok).toBe(true);
    expect(await repo.inFlightFor(SID, 'a')).toBe(a1.id);
    expect(await repo.inFlightFor(SID, 'b')).toBe(b1.id);
    expect(await repo.inFlightFor(SID)).toBe(d1.id);
  });

  it('knownRotations says which credential each known rotation rotated', async () => {
    const repo = new RotationRepository(redis, `known${run++}`);
    const a = record({ id: newRotationId(), credential: 'a', status: 'succeeded', step: 'done' });
    const legacy = record({ id: newRotationId(), status: 'succeeded', step: 'done' });
    await repo.create(a);
    await repo.create(legacy);
    await redis.set(repo.keys.rotation(legacy.id), LEGACY_LAYOUTS['one object, history last'](legacy));
    const unknown = newRotationId();
    const known = await repo.knownRotations(SID, [a.id, legacy.id, unknown]);
    expect([...known.entries()].sort()).toEqual([
      [a.id, 'a'],
      [legacy.id, 'default'],
    ].sort());
    expect((await repo.knownRotations(`AC${'8'.repeat(32)}`, [a.id])).size).toBe(0);
  });
});

describe('orphan cleanup with several credentials in one subaccount', () => {
  const key = (n: number, friendlyName: string) => ({ sid: `SK${n.toString(16).padStart(32, '0')}`, friendlyName, dateCreated: new Date(0) });
  const ids = { self: newRotationId(), oursEarlier: newRotationId(), otherInFlight: newRotationId(), otherHeld: newRotationId(), legacy: newRotationId(), unknown: newRotationId() };
  const known = new Map([
    [ids.self, 'billing-prod'],
    [ids.oursEarlier, 'billing-prod'],
    [ids.otherInFlight, 'default'],
    [ids.otherHeld, 'web'],
  ]);
  const ctx = { keyNamePrefix: 'rotator', knownRotations: async (_sid: string, want: readonly string[]) => new Map([...known].filter(([id]) => want.includes(id))) };

  it("deletes only keys of this credential's rotations; another credential's are neither deleted nor sprawl; unknown ones are sprawl", async () => {
    const keys = [
      key(1, `rotator:${ids.self}`),
      key(2, `rotator:${ids.oursEarlier}`),
      key(3, `rotator:${ids.otherInFlight}`),
      key(4, `rotator:${ids.otherHeld}`),
      key(5, `rotator:${ids.unknown}`),
      key(6, 'rotator:hand-made'),
      key(7, 'initial application key'),
      key(8, `rotator:${ids.oursEarlier}`),
    ];
    const held = new Set([keys[7]!.sid]);
    const sorted = await sortPrefixedKeys(ctx, { id: ids.self, accountSid: SID, credential: 'billing-prod' }, keys, held);
    expect(sorted.ours.map((k) => k.sid)).toEqual([keys[0]!.sid, keys[1]!.sid]);
    expect(sorted.sprawl.map((k) => k.sid)).toEqual([keys[4]!.sid, keys[5]!.sid]);

    // Seen from the default credential, billing-prod's keys are the other credential's.
    const fromDefault = await sortPrefixedKeys(ctx, { id: ids.legacy, accountSid: SID, credential: 'default' }, keys, new Set());
    expect(fromDefault.ours.map((k) => k.sid)).toEqual([keys[2]!.sid]);
    expect(fromDefault.sprawl.map((k) => k.sid)).toEqual([keys[4]!.sid, keys[5]!.sid]);
  });
});

describe('credential names', () => {
  it("the API's pattern accepts exactly the names isCredentialName accepts", () => {
    const pattern = new RegExp((CredentialName() as { pattern?: string }).pattern!, 'u');
    const names = fc.oneof(
      fc.stringMatching(/^[a-z0-9_-]{0,70}$/),
      fc.string({ maxLength: 70 }),
      fc.constantFrom('default', 'billing-prod', 'pending', 'pendings', 'Pending', '-x', '_x', 'a'.repeat(63), 'a'.repeat(64), 'a/b', 'a b', ''),
    );
    fc.assert(fc.property(names, (name) => pattern.test(name) === isCredentialName(name)), { numRuns: 2000 });
  });

  it('the default credential keeps the path earlier versions wrote; a named one has its own', () => {
    expect(secretPath('twilio/{accountSid}', SID)).toBe(`twilio/${SID}`);
    expect(secretPath('twilio/{accountSid}', SID, 'default')).toBe(`twilio/${SID}`);
    expect(secretPath('twilio/{accountSid}', SID, 'billing-prod')).toBe(`twilio/${SID}/billing-prod`);
    expect(secretPath('apps/{name}/{accountSid}', SID, 'billing-prod')).toBe(`apps/billing-prod/${SID}`);
  });
});
