/**
 * Issue 16 item 4 through the HTTP API: Auth Token rotation is off unless an admin enables it for
 * the account, needs the admin role and a confirmation repeating the account SID, offers a dry run
 * listing what depends on the token, writes its own audit action, and is refused with a message
 * that says why at each of those gates. A confirmed one runs to the end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectOptions } from 'fastify';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';
import { seedCredentials } from '../helpers/kinds.ts';
import { waitFinished } from '../helpers/engine.ts';
import { authTokenId } from '../../src/domain/secret.ts';
import { StartRefusedError } from '../../src/service/rotations.ts';
import { findSecrets } from '../helpers/leaks.ts';

describe('Auth Token rotation: the guarded operation', () => {
  let h: ApiHarness;
  let sid: string;
  const bodies: string[] = [];
  const call = async (role: 'viewer' | 'operator' | 'admin', opts: InjectOptions) => {
    const res = await h.app.inject({ ...opts, headers: { ...bearer(h.tokens[role]) } });
    bodies.push(res.body);
    return res;
  };
  const start = (role: 'operator' | 'admin', body: Record<string, unknown>) => call(role, { method: 'POST', url: '/v1/rotations', payload: { accountSid: sid, reason: 'quarterly token rotation', ...body } });

  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'warn', worker: true, stack: { subaccounts: 2 } });
    sid = h.stack.emu.subaccounts[0]!.sid;
    const parent = h.stack.emu.parent.accountSid;
    await h.rt.accounts.upsertMany(h.stack.emu.subaccounts.map((s) => ({ accountSid: s.sid, friendlyName: s.friendlyName, status: 'active', ownerAccountSid: parent })));
    await seedCredentials(h.stack, [sid], 'auth-token');
    const added = await call('operator', { method: 'POST', url: `/v1/accounts/${sid}/credentials`, payload: { name: 'default', kind: 'auth-token' } });
    expect(added.statusCode, added.body).toBeLessThan(300);
  });
  afterAll(async () => {
    if (h) expect(findSecrets(h.stack.emu.issuedSecrets(), bodies)).toEqual([]);
    await h?.close();
  });

  it('is refused while the account has not enabled it, saying how to enable it', async () => {
    const res = await start('admin', { confirm: sid });
    expect(res.statusCode).toBe(409);
    expect(res.json().error).toMatchObject({ code: 'auth_token_rotation_disabled' });
    expect(res.json().error.message).toContain(`PATCH /v1/accounts/${sid} {"authTokenRotation": true}`);
  });

  it('only an admin may enable it; the account then shows it enabled', async () => {
    const byOperator = await call('operator', { method: 'PATCH', url: `/v1/accounts/${sid}`, payload: { authTokenRotation: true } });
    expect(byOperator.statusCode).toBe(403);
    expect(byOperator.json().error.message).toContain('needs the admin role');
    const byAdmin = await call('admin', { method: 'PATCH', url: `/v1/accounts/${sid}`, payload: { authTokenRotation: true } });
    expect(byAdmin.statusCode, byAdmin.body).toBe(200);
    expect(byAdmin.json()).toMatchObject({ authTokenRotation: true, changes: ['AUTH TOKEN ROTATION ENABLED'] });
    expect(byAdmin.json().credentials[0]).toMatchObject({ kind: 'auth-token' });
  });

  it('is refused to an operator, and to an admin without the confirmation or with another SID', async () => {
    const operator = await start('operator', { confirm: sid });
    expect(operator.statusCode).toBe(403);
    expect(operator.json().error.message).toContain('needs the admin role');
    const unconfirmed = await start('admin', {});
    expect(unconfirmed.statusCode).toBe(400);
    expect(unconfirmed.json().error).toMatchObject({ code: 'confirmation_required' });
    expect(unconfirmed.json().error.message).toContain(`"confirm": "${sid}"`);
    const wrong = await start('admin', { confirm: h.stack.emu.subaccounts[1]!.sid });
    expect(wrong.statusCode).toBe(400);
    // Nothing was started, nothing changed at Twilio.
    expect(h.stack.emu.account(sid)!.hasSecondaryAuthToken).toBe(false);
  });

  it('never starts from a schedule or a batch unless the policy allows it', async () => {
    for (const trigger of ['schedule', 'batch'] as const) {
      const refused = await h.rt.service.start({ accountSid: sid, trigger, reason: 'planner' }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(StartRefusedError);
      expect((refused as Error).message).toContain('allowAuthToken');
    }
  });

  it('a dry run needs no confirmation, lists what depends on the token and changes nothing', async () => {
    const before = h.stack.emu.account(sid)!.authToken;
    const res = await start('admin', { dryRun: true });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json().kind).toBe('auth-token');
    expect(res.json().dependsOn.join('\n')).toMatch(/webhook signature validation[\s\S]*Main-key fallback/);
    const done = await waitFinished(h.rt, res.json().id);
    expect(done.status).toBe('succeeded');
    expect(done.history.at(-1)!.detail).toContain('depends on it');
    expect(h.stack.emu.account(sid)!.authToken).toBe(before);
    expect(h.stack.emu.account(sid)!.hasSecondaryAuthToken).toBe(false);
  });

  it('a confirmed rotation by an admin runs to the end and is audited under its own action', async () => {
    const old = h.stack.emu.account(sid)!.authToken;
    const res = await start('admin', { confirm: sid });
    expect(res.statusCode, res.body).toBe(202);
    const done = await waitFinished(h.rt, res.json().id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const now = h.stack.emu.account(sid)!;
    expect(now.authToken).not.toBe(old);
    expect(now.hasSecondaryAuthToken).toBe(false);
    expect(done.oldKeySid).toBe(authTokenId(old));
    expect(done.newKeySid).toBe(authTokenId(now.authToken));
    const stored = await h.stack.store.read(h.stack.path(sid));
    expect(stored.current?.credential.apiKeySecret.reveal()).toBe(now.authToken);
    expect(stored.previous).toBeUndefined();

    const audit = await call('admin', { method: 'GET', url: `/v1/audit?accountSid=${sid}&limit=50` });
    const entries = audit.json().items as Array<{ action: string; status: number; detail?: string }>;
    const actions = entries.filter((e) => e.action === 'rotation.start.auth-token');
    expect(actions.some((e) => e.status === 202 && e.detail?.includes('AUTH TOKEN ROTATION') && e.detail.includes('confirmed by'))).toBe(true);
    expect(actions.some((e) => e.status >= 400 && e.detail?.includes('REFUSED'))).toBe(true);
  });
});
