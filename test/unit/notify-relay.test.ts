import { describe, expect, it } from 'vitest';
import { useEmbeddedRedis } from '../helpers/redis.ts';
import { NotifyRelay } from '../../src/service/notify-relay.ts';
import { createLogger } from '../../src/logger.ts';
import { rotationNotification, type Notification } from '../../src/domain/notification.ts';

const log = createLogger('silent');

/** The relay's sources beyond rotation transitions: a batch halting, deadlines passing, a silent planner. */
describe('notify relay', () => {
  const r = useEmbeddedRedis('notify-relay');

  function relay(prefix: string, now: () => number, extra: { lastTick?: number | null; tickMs?: number } = {}) {
    const sent: Notification[] = [];
    const rel = new NotifyRelay({
      redis: r.connection(),
      prefix,
      log,
      now,
      enqueue: async (n) => void sent.push(n),
      ...(extra.tickMs ? { plannerTickMs: extra.tickMs, lastTickMs: async () => extra.lastTick ?? null } : {}),
    });
    return { rel, sent };
  }

  it('starts at the end of the stream, then turns a halted batch into one notification (and ignores the rest)', async () => {
    const redis = r.connection();
    await redis.xadd('n1:events', '*', 'e', JSON.stringify({ type: 'batch', id: 'old', event: 'halted', at: new Date().toISOString(), detail: 'before notifications were on' }));
    const { rel, sent } = relay('n1', Date.now);
    await rel.pump();
    expect(sent).toEqual([]);
    const at = new Date().toISOString();
    await redis.xadd('n1:events', '*', 'e', JSON.stringify({ type: 'batch', id: 'b1', event: 'wave-started', at, detail: 'wave 1' }), 't', 'batch');
    await redis.xadd('n1:events', '*', 'e', JSON.stringify({ type: 'batch', id: 'b1', event: 'halted', at, detail: '2 of 10 failed (threshold 1)' }), 't', 'batch');
    await rel.pump();
    expect(sent).toEqual([expect.objectContaining({ type: 'batch.halted', batchId: 'b1', id: `batch.halted/b1/${Date.parse(at)}`, detail: '2 of 10 failed (threshold 1)' })]);
    await rel.stop();
  });

  it('notifies each credential whose deadline passed, once per deadline', async () => {
    const redis = r.connection();
    let now = 1_000_000;
    const { rel, sent } = relay('n2', () => now);
    await rel.pump();
    await redis.zadd('n2:schedule:deadlines', now + 100, `AC${'a'.repeat(32)}/default`, now + 5_000, `AC${'b'.repeat(32)}/billing`);
    now += 1_000;
    await rel.pump();
    await rel.pump();
    expect(sent.map((n) => [n.type, n.accountSid, n.credential])).toEqual([['credential.overdue', `AC${'a'.repeat(32)}`, 'default']]);
    now += 10_000;
    await rel.pump();
    expect(sent.map((n) => n.credential)).toEqual(['default', 'billing']);
    await rel.stop();
  });

  it('notifies a planner that stopped ticking, once per silence, and not in its first three intervals', async () => {
    let now = 5_000_000;
    const state = { lastTick: null as number | null, tickMs: 1_000 };
    const { rel, sent } = relay('n3', () => now, state);
    await rel.pump();
    expect(sent).toEqual([]);
    state.lastTick = now;
    now += 10_000;
    await rel.pump();
    await rel.pump();
    // Every pass during the silence raises the same id: the queue keeps one job per id (deliveryJobId).
    expect([...new Set(sent.map((n) => n.id))]).toEqual([`planner.stalled/${state.lastTick}`]);
    const count = sent.length;
    state.lastTick = now;
    await rel.pump();
    expect(sent).toHaveLength(count);
    await rel.stop();
  });

  it('one relay at a time: a second one holds back while the first has the lease', async () => {
    const a = relay('n4', Date.now);
    const b = relay('n4', Date.now);
    await a.rel.pump();
    await r.connection().xadd('n4:events', '*', 'e', JSON.stringify({ type: 'batch', id: 'b2', event: 'halted', at: new Date().toISOString(), detail: 'x' }));
    expect(await b.rel.pump()).toBe(0);
    expect(await a.rel.pump()).toBe(1);
    await a.rel.stop();
    await b.rel.stop();
  });

  it('rotation transitions: a terminal failure and a gate hold notify; the drain and other steps do not', () => {
    const base = { id: 'r1', accountSid: `AC${'c'.repeat(32)}`, credential: 'default' };
    const at = new Date().toISOString();
    expect(rotationNotification({ ...base, status: 'failed', transition: { step: 'create-secondary', status: 'finished', at, detail: 'subaccount closed' } })).toMatchObject({ type: 'rotation.failed' });
    expect(rotationNotification({ ...base, status: 'running', transition: { step: 'create-secondary', status: 'failed', at } })).toBeUndefined();
    expect(rotationNotification({ ...base, status: 'waiting', transition: { step: 'promote', status: 'waiting', at, detail: `drain until ${at}` } })).toBeUndefined();
    expect(rotationNotification({ ...base, status: 'waiting', transition: { step: 'promote', status: 'waiting', at, detail: 'consumers: 2 still on the old key' } })).toMatchObject({ type: 'rotation.held', id: 'rotation.held/r1' });
    expect(rotationNotification({ ...base, status: 'waiting', transition: { step: 'rollback', status: 'waiting', at, detail: 'draining the new key' } })).toBeUndefined();
    expect(rotationNotification({ ...base, status: 'succeeded', transition: { step: 'done', status: 'finished', at } })).toBeUndefined();
  });
});
