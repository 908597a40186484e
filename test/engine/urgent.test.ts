import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectOptions } from 'fastify';
import { startStack, waitFor, type Stack } from '../helpers/stack.ts';
import { startEngine, waitFinished } from '../helpers/engine.ts';
import type { Runtime } from '../../src/runtime.ts';
import { mintToken } from '../../src/api/tokens.ts';

/**
 * Issue 12 item 4: an emergency rotation after a leak replaces the key with the drain the admin
 * asked for (down to 0) instead of DRAIN_SECONDS, so the leaked key stops working in seconds.
 */
describe('urgent rotation after a leak', () => {
  let stack: Stack;
  let rt: Runtime;
  const operator = mintToken('ops', 'operator');
  const admin = mintToken('sec', 'admin');

  beforeAll(async () => {
    // A production-like drain: ten minutes. A normal rotation waits it out; an urgent one does not.
    stack = await startStack({ subaccounts: 2, drainSeconds: 600 });
    await stack.seedAll();
    rt = await startEngine(stack, { API_TOKENS: `${operator.entry},${admin.entry}` });
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  const post = (payload: object, token: string) => rt.app!.inject({ method: 'POST', url: '/v1/rotations', headers: { authorization: `Bearer ${token}` }, payload } as InjectOptions);

  it('is for admins only, with a reason, and drainSeconds only with urgent', async () => {
    const sid = stack.emu.subaccounts[1]!.sid;
    const byOperator = await post({ accountSid: sid, urgent: true, reason: 'leaked' }, operator.token);
    expect(byOperator.statusCode).toBe(403);
    expect(byOperator.json().error.message).toMatch(/urgent rotation needs the admin role/);
    expect((await post({ accountSid: sid, urgent: true }, admin.token)).json()).toMatchObject({ error: { code: 'invalid_request', message: expect.stringMatching(/needs a reason/) } });
    expect((await post({ accountSid: sid, drainSeconds: 0 }, admin.token)).json().error.message).toMatch(/drainSeconds applies only to an urgent rotation/);
    expect((await post({ accountSid: sid, urgent: true, reason: 'leak', dryRun: true }, admin.token)).statusCode).toBe(400);
    expect((await post({ accountSid: sid, urgent: true, reason: 'leak', drainSeconds: -1 }, admin.token)).statusCode).toBe(400);
    expect(await rt.repo.inFlightFor(sid)).toBeUndefined();
  });

  it('kills the leaked key in seconds, not after DRAIN_SECONDS, and is audited', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    const leaked = (await stack.store.readCurrent(stack.path(sid)))!;
    const t0 = Date.now();
    const res = await post({ accountSid: sid, urgent: true, reason: 'key printed in a public CI log', drainSeconds: 0 }, admin.token);
    expect(res.statusCode).toBe(202);
    const rec = await waitFinished(rt, res.json().id, 30_000);
    expect(rec.status).toBe('succeeded');
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(stack.emu.listKeys(sid).map((k) => k.sid)).not.toContain(leaked.apiKeySid);
    expect((await stack.store.readCurrent(stack.path(sid)))!.apiKeySid).toBe(rec.newKeySid);
    expect(rec.promoteAfter).toBe(rec.operationalizedAt);

    const detail = (await rt.app!.inject({ method: 'GET', url: `/v1/rotations/${rec.id}`, headers: { authorization: `Bearer ${admin.token}` } })).json();
    expect(detail).toMatchObject({ urgent: true, drainSeconds: 0, reason: 'key printed in a public CI log', requestedBy: 'sec' });
    const audit = (await rt.app!.inject({ method: 'GET', url: `/v1/audit?rotationId=${rec.id}`, headers: { authorization: `Bearer ${admin.token}` } })).json().items;
    expect(audit).toEqual(expect.arrayContaining([expect.objectContaining({ action: 'rotation.start', actor: 'sec', role: 'admin', status: 202, detail: 'urgent: drain 0s' })]));
  });

  it('a normal rotation meanwhile waits out the configured drain', async () => {
    const sid = stack.emu.subaccounts[1]!.sid;
    const res = await post({ accountSid: sid, reason: 'quarterly' }, operator.token);
    const rec = await waitFor('the drain', async () => {
      const r = await rt.repo.get(res.json().id);
      return r?.status === 'waiting' ? r : undefined;
    });
    expect(Date.parse(rec.promoteAfter!) - Date.parse(rec.operationalizedAt!)).toBe(600_000);
    expect((await rt.service.undo(rec.id, 'cancel', 'test'))?.ok).toBe(true);
  });
});
