import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFinished, expectSettled } from '../helpers/engine.ts';
import { waitFor } from '../helpers/stack.ts';
import { redisChainSource, verifyAuditChain } from '../../src/state/audit.ts';
import { AccountRepository } from '../../src/state/accounts.ts';
import { redisKeys } from '../../src/state/keys.ts';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';

/**
 * With a worker: a rotation that fails (the admin credential refused on its subaccount's keys,
 * for the undo too) is retried through the API until it succeeds, and
 * everything around it follows — the audit chain records each step, the account inventory gets
 * the new key, the metrics count it all.
 */
describe('a failed rotation retried to success, with its audit, inventory and metrics', () => {
  let h: ApiHarness;
  let sid: string;

  beforeAll(async () => {
    h = await startApiHarness({ worker: true, env: { ACCOUNT_SYNC_SECONDS: '3600' }, logLevel: 'info' });
    await h.stack.seedAll();
    sid = h.stack.emu.subaccounts[0]!.sid;
  });
  afterAll(async () => h?.close());

  const api = (method: 'GET' | 'POST', url: string, payload?: object) =>
    h.app.inject({ method, url, headers: bearer(h.tokens.admin), ...(payload ? { payload } : {}) });

  it('syncs the subaccount inventory when the worker starts', async () => {
    const accounts = await waitFor('the inventory', async () => {
      const items = (await api('GET', '/v1/accounts')).json().items;
      return items.length === 3 ? items : undefined;
    });
    expect(accounts.map((a: { accountSid: string }) => a.accountSid).sort()).toEqual(h.stack.emu.subaccounts.map((s) => s.sid).sort());
    expect(accounts[0]).toMatchObject({ friendlyName: expect.stringMatching(/Customer/), status: 'active', policy: 'quarterly', currentKeySid: null, lastRotatedAt: null, keyAgeDays: 0, overdue: false });
    const next = Date.parse(accounts[0].nextRotationAt) - Date.now();
    expect(next).toBeGreaterThan(89 * 86_400_000);
    expect(next).toBeLessThanOrEqual(90 * 86_400_000);
  });

  it('fails, finishes its undo on the first retry, starts afresh on the second, and succeeds', async () => {
    // The subaccount check passes; then Twilio refuses the admin credential on the subaccount's
    // keys (401 20003) — for the listing create-secondary makes, and again for the one its undo
    // needs — so the undo stops half-way.
    h.stack.emu.setFaults({ failNext: { count: 2, status: 401, match: { method: 'GET', path: '/Keys\\.json$' } } });
    const id = (await api('POST', '/v1/rotations', { accountSid: sid, reason: 'suspected leak' })).json().id;
    const failed = await waitFinished(h.rt, id);
    expect(failed.status).toBe('failed');
    expect(failed.undo?.completedAt).toBeUndefined();
    expect(failed.error?.message).toMatch(/undo stopped/);

    expect(h.stack.emu.faults().failNext).toEqual([]);
    const first = await api('POST', `/v1/rotations/${id}/retry`);
    expect(first.statusCode).toBe(200);
    expect(first.json().history.at(-1).detail).toMatch(/finishing the interrupted undo/);
    await waitFor('the undo to finish', async () => (await h.rt.repo.get(id))?.undo?.completedAt);
    const undone = await waitFinished(h.rt, id);
    expect(undone.status).toBe('failed');

    const second = await api('POST', `/v1/rotations/${id}/retry`);
    expect(second.statusCode).toBe(200);
    expect(second.json()).toMatchObject({ status: 'pending', step: 'create-secondary', newKeySid: null });
    const done = await waitFinished(h.rt, id);
    expect(done.status).toBe('succeeded');
    const settled = await expectSettled(h.stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(done.newKeySid);

    // The inventory now knows the account's current key.
    await waitFor('the inventory to catch up', async () => (await h.rt.accounts.get(sid))?.currentKeySid === done.newKeySid);
    const account = (await api('GET', '/v1/accounts?limit=500')).json().items.find((a: { accountSid: string }) => a.accountSid === sid);
    expect(account).toMatchObject({ currentKeySid: done.newKeySid, lastRotatedAt: done.finishedAt, keyAgeDays: 0, overdue: false });
    expect(Date.parse(account.nextRotationAt)).toBe(Date.parse(done.finishedAt!) + 90 * 86_400_000);

    // The audit trail tells the whole story, oldest last, and its chain verifies. The worker
    // appends its entries after the record is written (not before the rotation reads as
    // finished): wait for the last step's.
    type Entry = { kind: string; action: string; step?: string; actor: string };
    const storyOf = (items: Entry[]) => [...items].reverse().map((e) => (e.kind === 'api' ? e.action : `${e.step}:${e.action}`));
    const entries = await waitFor('the audit entry of delete-old', async () => {
      const items = (await api('GET', `/v1/audit?rotationId=${id}&limit=500`)).json().items as Entry[];
      return storyOf(items).includes('delete-old:step.completed') ? items : undefined;
    });
    const story = storyOf(entries);
    // The audit relay appends the transitions the API wrote (created, retry) once they are 5 s
    // old. Verifying while one of its appends lands reads the chain and then a head that has moved
    // on: a false "newest entries deleted". That happened once this test took longer than those
    // 5 s (a slow or busy machine). Verify once the relay has dealt with every transition.
    const keys = redisKeys(h.stack.cfg.redisPrefix);
    await waitFor('the audit relay to reach the last transition', async () => {
      const [last] = (await h.rt.redis.xrevrange(keys.events, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>;
      return last !== undefined && (await h.rt.redis.get(`${keys.audit}:relay:cursor`)) === last[0];
    });
    expect(story[0]).toBe('rotation.start');
    expect(story).toContain('create-secondary:step.failed');
    expect(story.filter((s) => s === 'rotation.retry')).toHaveLength(2);
    expect(story).toEqual(expect.arrayContaining(['create-secondary:step.completed', 'operationalize:step.completed', 'promote:step.completed', 'delete-old:step.completed']));
    expect(entries.find((e) => e.kind === 'rotation')!.actor).toMatch(/:\d+$/);
    expect(await verifyAuditChain(redisChainSource(h.rt.redis, h.stack.cfg.redisPrefix))).toMatchObject({ ok: true });
  });

  it('exposes metrics: rotations by status, step durations, Twilio calls and errors, queue depth, store errors', async () => {
    await h.rt.store.promotePending('twilio/nobody', 'no-such-rotation', 'SK00000000000000000000000000000000').catch(() => undefined);
    const text = (await h.app.inject({ method: 'GET', url: '/metrics' })).body;
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    expect(value(/^rotator_rotations\{status="succeeded"\} (\d+)$/m)).toBe(1);
    expect(value(/^rotator_rotations\{status="failed"\} (\d+)$/m)).toBe(0);
    expect(value(/^rotator_step_duration_seconds_count\{step="create-secondary"\} (\d+)$/m)).toBeGreaterThanOrEqual(1);
    expect(value(/^rotator_step_duration_seconds_count\{step="delete-old"\} (\d+)$/m)).toBe(1);
    expect(value(/^rotator_twilio_requests_total\{method="POST",status="201"\} (\d+)$/m)).toBeGreaterThanOrEqual(1);
    expect(value(/^rotator_twilio_errors_total\{status="401",code="20003"\} (\d+)$/m)).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^rotator_queue_jobs\{state="waiting"\} 0$/m);
    expect(value(/^rotator_store_errors_total\{operation="promotePending",code="store_state"\} (\d+)$/m)).toBe(1);
    expect(text).toMatch(/^rotator_http_requests_total\{method="POST",route="\/v1\/rotations\/:id\/retry",status="200"\} 2$/m);
    // Labels are closed sets: no SID, id or credential appears in the exposition.
    for (const s of [sid, h.tokens.admin, ...h.stack.emu.issuedSecrets()]) expect(text.includes(s)).toBe(false);
    expect(text).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}/);
  });

  it('pages the inventory by SID and flags overdue accounts', async () => {
    const accounts = new AccountRepository(h.rt.redis, h.stack.cfg.redisPrefix);
    const longAgo = Date.now() - 120 * 86_400_000;
    const stale = Array.from({ length: 5 }, (_, i) => ({ accountSid: `AC${String(i).padStart(32, '0')}`, friendlyName: `old ${i}`, status: 'active' }));
    await accounts.upsertMany(stale, longAgo);
    const res1 = await api('GET', '/v1/accounts?limit=4');
    expect(res1.headers['content-type']).toBe('application/json; charset=utf-8');
    const page1 = res1.json();
    expect(page1.items).toHaveLength(4);
    const page2 = (await api('GET', `/v1/accounts?limit=4&cursor=${page1.nextCursor}`)).json();
    expect(page2.items).toHaveLength(4);
    expect(page2.nextCursor).toBeNull();
    const all = [...page1.items, ...page2.items];
    expect(all.map((a) => a.accountSid)).toEqual([...all.map((a) => a.accountSid)].sort());
    const old = all.filter((a) => a.friendlyName.startsWith('old'));
    expect(old).toHaveLength(5);
    for (const a of old) expect(a).toMatchObject({ overdue: true, keyAgeDays: 120 });
    expect(await accounts.due(Date.now(), 100)).toEqual(stale.map((s) => s.accountSid));
    expect((await api('GET', '/v1/accounts?cursor=QUJD')).statusCode).toBe(400);
  });
});
