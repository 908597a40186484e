import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectOptions } from 'fastify';
import { findSecrets } from '../helpers/leaks.ts';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';

const DAY = 86_400_000;

/**
 * Issue 13 items 2, 3 and 7 through the HTTP API: policies (admin writes, every bad field named),
 * a subaccount's labels, override and pause (operator), more credentials per subaccount, and the
 * fleet view with the policy that applies and why.
 */
describe('fleet API: policies, labels, credentials', () => {
  let h: ApiHarness;
  const sub = (i: number): string => h.stack.emu.subaccounts[i]!.sid;
  const bodies: string[] = [];

  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'warn', stack: { subaccounts: 5 } });
    await h.stack.seedAll();
    const parent = h.stack.emu.parent.accountSid;
    await h.rt.accounts.upsertMany(h.stack.emu.subaccounts.map((s) => ({ accountSid: s.sid, friendlyName: s.friendlyName, status: 'active', ownerAccountSid: parent })));
  });
  afterAll(async () => {
    // Nothing the fleet routes answered carries a key secret the emulator issued.
    if (h) expect(findSecrets(h.stack.emu.issuedSecrets(), bodies)).toEqual([]);
    await h?.close();
  });

  const call = async (role: 'viewer' | 'operator' | 'admin', opts: InjectOptions) => {
    const res = await h.app.inject({ ...opts, headers: { ...bearer(h.tokens[role]), ...(opts.headers as Record<string, string>) } });
    bodies.push(res.body);
    return res;
  };
  const fields = (res: { json(): { error: { fields?: Array<{ path: string; message: string }> } } }) => (res.json().error.fields ?? []).map((f) => f.path);

  describe('policies', () => {
    it('lists the built-ins, default first; GET one; 404 for an unknown one', async () => {
      const list = await call('viewer', { method: 'GET', url: '/v1/policies' });
      expect(list.statusCode).toBe(200);
      expect(list.json().items.map((p: { name: string }) => p.name).slice(0, 2)).toEqual(['default', 'hipaa']);
      expect(list.json().items[1]).toMatchObject({ name: 'hipaa', interval: 'P30D', labels: ['hipaa'], builtIn: true, overrides: 0 });
      expect((await call('viewer', { method: 'GET', url: '/v1/policies/hipaa' })).json()).toMatchObject({ interval: 'P30D' });
      const missing = await call('viewer', { method: 'GET', url: '/v1/policies/nope' });
      expect(missing.statusCode).toBe(404);
      expect(missing.json().error.code).toBe('policy_not_found');
      expect((await call('viewer', { method: 'GET', url: '/v1/policies/Not_A_Name' })).statusCode).toBe(400);
    });

    it('PUT creates (201) and replaces (200); the name comes from the path; audited', async () => {
      const weekly = { interval: 'P7D', windows: [{ days: ['tue', 'wed'], hours: { from: '09:00', to: '17:00' }, timeZone: 'America/New_York' }], labels: ['pci'] };
      const created = await call('admin', { method: 'PUT', url: '/v1/policies/pci-weekly', payload: weekly });
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json()).toMatchObject({ name: 'pci-weekly', interval: 'P7D', builtIn: false, overrides: 0 });
      const replaced = await call('admin', { method: 'PUT', url: '/v1/policies/pci-weekly', payload: { ...weekly, name: 'pci-weekly', interval: 'P14D' } });
      expect(replaced.statusCode).toBe(200);
      expect((await call('viewer', { method: 'GET', url: '/v1/policies/pci-weekly' })).json().interval).toBe('P14D');
      const audit = await call('admin', { method: 'GET', url: '/v1/audit?limit=5' });
      expect(audit.json().items.find((e: { action: string }) => e.action === 'policy.put')).toMatchObject({ actor: 'sec', role: 'admin', status: 200, detail: expect.stringMatching(/^policy pci-weekly replaced: interval P14D, labels pci, 1 window/) });
    });

    it('bad input is 400 invalid_policy naming every field at once', async () => {
      const res = await call('admin', {
        method: 'PUT',
        url: '/v1/policies/broken',
        payload: {
          interval: '90 days',
          maxKeyAge: 'P1Y2',
          windows: [{ days: ['mon', 'funday'], hours: [], timeZone: 'Mars/Olympus_Mons' }],
          blackouts: [{ from: '2026-12-24', to: '2026-12-26T00:00:00Z' }],
          labels: ['ok', 'Not OK'],
          colour: 'blue',
        },
      });
      expect(res.statusCode).toBe(400);
      expect(res.json().error).toMatchObject({ code: 'invalid_policy', requestId: expect.any(String) });
      expect(fields(res)).toEqual(expect.arrayContaining(['interval', 'maxKeyAge', 'windows[0].days[1]', 'windows[0].hours', 'windows[0].timeZone', 'blackouts[0].from', 'labels[1]', 'colour']));
      expect(res.json().error.message).toContain('windows[0].timeZone: "Mars/Olympus_Mons" is not a known IANA time zone');
      // A name in the body that is not the path's; an inverted range.
      const mismatch = await call('admin', { method: 'PUT', url: '/v1/policies/a', payload: { name: 'b', interval: 'P1D', windows: [{ days: ['mon'], hours: { from: '18:00', to: '09:00' }, timeZone: 'UTC' }] } });
      expect(fields(mismatch)).toEqual(['name', 'windows[0].hours']);
      expect((await call('admin', { method: 'PUT', url: '/v1/policies/a', payload: [] })).json().error.fields).toEqual([{ path: '(body)', message: 'must be a JSON object' }]);
      // The default policy cannot be assigned by label; nothing was written by any of these.
      expect(fields(await call('admin', { method: 'PUT', url: '/v1/policies/default', payload: { interval: 'P60D', labels: ['x'] } }))).toEqual(['labels']);
      expect((await call('viewer', { method: 'GET', url: '/v1/policies/broken' })).statusCode).toBe(404);
      expect((await call('viewer', { method: 'GET', url: '/v1/policies/default' })).json().interval).toBe('P90D');
    });

    it('DELETE refuses a policy an override names (409 naming them), deletes it once cleared, reverts a built-in', async () => {
      await call('admin', { method: 'PUT', url: '/v1/policies/lax', payload: { interval: 'P180D' } });
      expect((await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(4)}`, payload: { policy: 'lax' } })).statusCode).toBe(200);
      expect((await call('operator', { method: 'POST', url: `/v1/accounts/${sub(4)}/credentials`, payload: { name: 'web' } })).statusCode).toBe(201);
      expect((await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(4)}/credentials/web`, payload: { policy: 'lax' } })).statusCode).toBe(200);
      expect((await call('viewer', { method: 'GET', url: '/v1/policies/lax' })).json().overrides).toBe(2);

      const refused = await call('admin', { method: 'DELETE', url: '/v1/policies/lax' });
      expect(refused.statusCode).toBe(409);
      expect(refused.json().error.code).toBe('policy_in_use');
      expect(refused.json().error.message).toContain(`account ${sub(4)}`);
      expect(refused.json().error.message).toContain(`credential ${sub(4)}/web`);

      await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(4)}`, payload: { policy: null } });
      await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(4)}/credentials/web`, payload: { policy: 'hipaa' } });
      const deleted = await call('admin', { method: 'DELETE', url: '/v1/policies/lax' });
      expect(deleted.statusCode, deleted.body).toBe(200);
      expect(deleted.json()).toEqual({ name: 'lax', deleted: true });
      expect((await call('admin', { method: 'DELETE', url: '/v1/policies/lax' })).statusCode).toBe(404);

      // A built-in named by an override may be "deleted": it reverts to its definition.
      await call('admin', { method: 'PUT', url: '/v1/policies/hipaa', payload: { interval: 'P14D', labels: ['hipaa'] } });
      const reverted = await call('admin', { method: 'DELETE', url: '/v1/policies/hipaa' });
      expect(reverted.json()).toMatchObject({ deleted: true, revertedTo: { name: 'hipaa', interval: 'P30D', builtIn: true, overrides: 1 } });
      expect((await call('admin', { method: 'DELETE', url: '/v1/policies/hipaa' })).json().error.message).toMatch(/already has its built-in definition/);
      await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(4)}/credentials/web`, payload: { policy: null } });
    });
  });

  describe('a subaccount: labels, override, pause', () => {
    it('GET shows each credential with its key age (and what it counts from), policy and why, deadline and slot', async () => {
      const sid = sub(0);
      const creds = h.rt.credentials;
      await creds.ensure({ accountSid: sid, name: 'default' }, { now: Date.now() - 100 * DAY });
      await creds.ensure({ accountSid: sid, name: 'billing' }, { now: Date.now() - 10 * DAY });
      await creds.ensure({ accountSid: sid, name: 'sms' }, { now: Date.now() - 50 * DAY });
      const finished = new Date(Date.now() - 20 * DAY).toISOString();
      await creds.recordFinished({ id: 'r-billing', accountSid: sid, credential: 'billing', status: 'succeeded', dryRun: false, newKeySid: `SK${'b'.repeat(32)}`, finishedAt: finished, updatedAt: finished });
      await creds.recordFinished({ id: 'r-sms', accountSid: sid, credential: 'sms', status: 'succeeded', dryRun: false, newKeySid: `SK${'c'.repeat(32)}`, finishedAt: finished, updatedAt: finished }, Date.now() - 40 * DAY);

      const res = await call('viewer', { method: 'GET', url: `/v1/accounts/${sid}` });
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json();
      expect(body).toMatchObject({ accountSid: sid, status: 'active', labels: [], paused: false, policyOverride: null });
      const [billing, def, sms] = body.credentials;
      expect(def).toMatchObject({ id: `${sid}/default`, kind: 'api-key', currentKeySid: null, keyAgeDays: 100, keyAgeFrom: 'first_seen', lastRotation: null, policy: { name: 'default', source: 'default', reason: 'default' }, overdue: true, deadlineBy: 'interval', notScheduled: null, paused: false, pausedBy: null });
      expect(billing).toMatchObject({ keyAgeDays: 20, keyAgeFrom: 'last_rotation', lastRotation: { id: 'r-billing', outcome: 'succeeded' }, currentKeySid: `SK${'b'.repeat(32)}`, overdue: false });
      expect(sms).toMatchObject({ keyAgeDays: 40, keyAgeFrom: 'key_created' });
      // Deadline: 90 days after the last rotation; the slot lies before it.
      expect(Date.parse(billing.deadline)).toBe(Date.parse(finished) + 90 * DAY);
      expect(Date.parse(billing.nextRotationAt)).toBeLessThanOrEqual(Date.parse(billing.deadline));
    });

    it('PATCH sets labels, override and pause; the policy that applies says why; audited with what changed', async () => {
      const sid = sub(0);
      const labelled = await call('operator', { method: 'PATCH', url: `/v1/accounts/${sid}`, payload: { labels: ['tier=gold', 'hipaa'] } });
      expect(labelled.statusCode, labelled.body).toBe(200);
      expect(labelled.json()).toMatchObject({ labels: ['hipaa', 'tier=gold'], changes: ['labels [] → [hipaa, tier=gold]'] });
      expect(labelled.json().credentials[0]).toMatchObject({ labels: ['hipaa', 'tier=gold'], policy: { name: 'hipaa', source: 'label', reason: 'label hipaa (policy hipaa)' } });

      await call('operator', { method: 'PATCH', url: `/v1/accounts/${sid}/credentials/billing`, payload: { policy: 'default' } });
      const paused = await call('operator', { method: 'PATCH', url: `/v1/accounts/${sid}`, payload: { paused: true } });
      const [billing, def] = paused.json().credentials;
      expect(billing).toMatchObject({ policy: { name: 'default', source: 'credential override' }, policyOverride: 'default', paused: true, pausedBy: 'account', nextRotationAt: null, notScheduled: 'its subaccount is paused' });
      expect(def).toMatchObject({ policy: { name: 'hipaa' }, pausedBy: 'account' });
      expect(paused.json().changes).toEqual(['paused false → true']);

      const audit = (await call('admin', { method: 'GET', url: `/v1/audit?accountSid=${sid}&limit=10` })).json().items;
      expect(audit.filter((e: { action: string }) => e.action === 'account.patch').map((e: { detail: string }) => e.detail)).toEqual(['paused false → true', 'labels [] → [hipaa, tier=gold]']);
      await call('operator', { method: 'PATCH', url: `/v1/accounts/${sid}`, payload: { paused: false } });
    });

    it('bad input is 400 naming every field; unknown and malformed SIDs are 404 and 400', async () => {
      const res = await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(1)}`, payload: { labels: ['ok', 'also-ok', 'NOT OK', 'a=b=c'], policy: 'x' } });
      expect(res.statusCode).toBe(400);
      expect(res.json().error).toMatchObject({ code: 'invalid_request', fields: [{ path: 'labels[2]' }, { path: 'labels[3]' }, { path: 'policy', message: expect.stringMatching(/^unknown policy "x" \(policies: default, hipaa/) }] });
      expect(res.json().error.message).toMatch(/labels\[2\]: .*; policy: unknown policy "x"/);
      expect(fields(await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(1)}`, payload: {} }))).toEqual(['(body)']);
      expect((await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(1)}`, payload: { paused: 'yes' } })).json().error.message).toBe('field paused must be true or false');
      expect((await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(1)}`, payload: { labels: ['a'], pause: true } })).json().error.message).toBe('unknown field pause; did you mean paused?');
      expect((await h.rt.accounts.get(sub(1)))?.labels).toEqual([]);

      const unknown = `AC${'9'.repeat(32)}`;
      expect((await call('viewer', { method: 'GET', url: `/v1/accounts/${unknown}` })).json().error.code).toBe('account_not_found');
      expect((await call('operator', { method: 'PATCH', url: `/v1/accounts/${unknown}`, payload: { paused: true } })).statusCode).toBe(404);
      const malformed = await call('viewer', { method: 'GET', url: '/v1/accounts/AC123' });
      expect(malformed.statusCode).toBe(400);
      expect(malformed.json().error.message).toBe('path parameter sid must be an account SID: AC followed by 32 lowercase hex digits');
    });
  });

  describe('credentials', () => {
    it('POST starts managing another credential (201, then 200); bad names, unknown subaccounts refused', async () => {
      const sid = sub(2);
      const first = await call('operator', { method: 'POST', url: `/v1/accounts/${sid}/credentials`, payload: { name: 'billing-prod' } });
      expect(first.statusCode, first.body).toBe(201);
      expect(first.json()).toMatchObject({ id: `${sid}/billing-prod`, kind: 'api-key', currentKeySid: null, keyAgeFrom: 'first_seen', policy: { name: 'default' } });
      expect((await call('operator', { method: 'POST', url: `/v1/accounts/${sid}/credentials`, payload: { name: 'billing-prod', kind: 'api-key' } })).statusCode).toBe(200);
      const bad = await call('operator', { method: 'POST', url: `/v1/accounts/${sid}/credentials`, payload: { name: 'pending' } });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.fields).toEqual([{ path: 'name', message: expect.stringMatching(/"pending" is reserved/) }]);
      expect(fields(await call('operator', { method: 'POST', url: `/v1/accounts/${sid}/credentials`, payload: { name: 'Billing Prod' } }))).toEqual(['name']);
      expect((await call('operator', { method: 'POST', url: `/v1/accounts/${sid}/credentials`, payload: { name: 'x', kind: 'main-key' } })).json().error.message).toBe('field kind must be one of api-key, restricted-key, auth-token');
      expect((await call('operator', { method: 'POST', url: `/v1/accounts/${h.stack.emu.parent.accountSid}/credentials`, payload: { name: 'x' } })).json().error.code).toBe('not_a_subaccount');
      expect((await call('operator', { method: 'POST', url: `/v1/accounts/AC${'7'.repeat(32)}/credentials`, payload: { name: 'x' } })).statusCode).toBe(404);
      const audit = (await call('admin', { method: 'GET', url: `/v1/audit?accountSid=${sid}&limit=10` })).json().items;
      expect(audit.map((e: { detail?: string }) => e.detail)).toContain(`credential ${sid}/billing-prod now managed`);
    });

    it('PATCH sets its override and pause; 404 when it is not managed; an unknown policy named', async () => {
      const sid = sub(2);
      const res = await call('operator', { method: 'PATCH', url: `/v1/accounts/${sid}/credentials/billing-prod`, payload: { policy: 'hipaa', paused: true } });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ policy: { name: 'hipaa', source: 'credential override', reason: 'credential override (policy hipaa)' }, paused: true, pausedBy: 'credential', notScheduled: 'the credential is paused', nextRotationAt: null });
      expect(res.json().deadline).not.toBeNull();
      expect((await call('operator', { method: 'PATCH', url: `/v1/accounts/${sid}/credentials/nothing`, payload: { paused: true } })).json().error.code).toBe('credential_not_found');
      expect((await call('operator', { method: 'PATCH', url: `/v1/accounts/${sid}/credentials/billing-prod`, payload: { policy: 'gone' } })).json().error.fields).toEqual([{ path: 'policy', message: expect.stringMatching(/^unknown policy "gone"/) }]);
      await call('operator', { method: 'PATCH', url: `/v1/accounts/${sid}/credentials/billing-prod`, payload: { policy: null, paused: false } });
    });

    it('GET /v1/credentials pages the fleet by id and filters server-side', async () => {
      // sub(3): three more credentials, one paused; sub(3) labelled pci.
      for (const name of ['a', 'b', 'c']) await call('operator', { method: 'POST', url: `/v1/accounts/${sub(3)}/credentials`, payload: { name } });
      await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(3)}/credentials/b`, payload: { paused: true } });
      await call('operator', { method: 'PATCH', url: `/v1/accounts/${sub(3)}`, payload: { labels: ['pci'] } });

      const all: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res = await call('viewer', { method: 'GET', url: `/v1/credentials?limit=2${cursor ? `&cursor=${cursor}` : ''}` });
        expect(res.statusCode, res.body).toBe(200);
        all.push(...res.json().items.map((c: { id: string }) => c.id));
        cursor = res.json().nextCursor;
        pages++;
      } while (cursor);
      expect(all).toEqual([...all].sort());
      expect(all).toEqual((await h.rt.credentials.list({ limit: 100 })).items.map((c) => `${c.accountSid}/${c.name}`));
      expect(pages).toBe(Math.ceil(all.length / 2));

      const ids = async (query: string) => (await call('viewer', { method: 'GET', url: `/v1/credentials?limit=500&${query}` })).json().items.map((c: { id: string }) => c.id);
      expect(await ids(`accountSid=${sub(3)}`)).toEqual(['a', 'b', 'c'].map((n) => `${sub(3)}/${n}`));
      expect(await ids('label=pci')).toEqual(['a', 'b', 'c'].map((n) => `${sub(3)}/${n}`));
      expect(await ids('policy=pci-weekly')).toEqual(['a', 'b', 'c'].map((n) => `${sub(3)}/${n}`));
      expect(await ids('label=tier=gold')).toEqual(['billing', 'default', 'sms'].map((n) => `${sub(0)}/${n}`));
      expect(await ids('paused=true')).toEqual([`${sub(3)}/b`]);
      expect(await ids('overdue=true')).toEqual([`${sub(0)}/default`]);
      expect(await ids(`accountSid=${sub(3)}&paused=false`)).toEqual([`${sub(3)}/a`, `${sub(3)}/c`]);
      // Search (issue 14, the dashboard's box): a subaccount SID reads its range; else part of the id or key SID.
      expect(await ids(`q=${sub(3)}`)).toEqual(['a', 'b', 'c'].map((n) => `${sub(3)}/${n}`));
      expect(await ids(`q=${sub(3).slice(20).toUpperCase()}/B`)).toEqual([`${sub(3)}/b`]);
      const keySid = (await call('viewer', { method: 'GET', url: `/v1/accounts/${sub(1)}` })).json().credentials?.[0]?.currentKeySid as string | undefined;
      if (keySid) expect(await ids(`q=${keySid.slice(4, 20)}`)).toEqual([`${sub(1)}/default`]);
      expect(await ids(`q=${sub(3)}&accountSid=${sub(2)}`)).toEqual([]);
      expect(await ids('failed=true')).toEqual([]);
      expect((await ids('failed=false')).length).toBe(all.length);

      // With a filter a page may be short (even empty) while the cursor goes on.
      const sparse = await call('viewer', { method: 'GET', url: '/v1/credentials?limit=1&paused=true' });
      expect(sparse.json().items).toEqual([]);
      expect(sparse.json().nextCursor).not.toBeNull();

      expect((await call('viewer', { method: 'GET', url: '/v1/credentials?cursor=bm9wZQ' })).json().error.code).toBe('invalid_cursor');
      expect((await call('viewer', { method: 'GET', url: '/v1/credentials?overdue=maybe' })).json().error.message).toBe('query parameter overdue must be true or false');
      expect((await call('viewer', { method: 'GET', url: '/v1/credentials?lable=pci' })).json().error.message).toBe('unknown query parameter lable; did you mean label?');

      // Server-side sort (issue 14): descending ids; an unknown sort or order is a 400 naming it; a cursor keeps to its sort.
      expect(await ids('order=desc')).toEqual([...all].reverse());
      expect(await ids('inFlight=true')).toEqual([]);
      for (const bad of ['sort=keyAgeX', 'order=up']) {
        const res = await call('viewer', { method: 'GET', url: `/v1/credentials?${bad}` });
        expect(res.statusCode, bad).toBe(400);
        expect(res.json().error.message, bad).toContain(bad.split('=')[0]);
      }
      const first = (await call('viewer', { method: 'GET', url: '/v1/credentials?limit=1' })).json().nextCursor as string;
      expect((await call('viewer', { method: 'GET', url: `/v1/credentials?sort=deadline&cursor=${first}` })).json().error.code).toBe('invalid_cursor');
    });
  });
});
