import { describe, expect, it } from 'vitest';
import { parse } from 'csv-parse/sync';
import fc from 'fast-check';
import {
  COMPLIANCE_CSV_COLUMNS,
  DAY_MS,
  checkSprawlKeyDelete,
  complianceCsv,
  complianceReport,
  type CredentialFacts,
  type CredentialRow,
  type PolicyFacts,
  type SubaccountFacts,
  type SubaccountRow,
} from '../../src/domain/compliance.ts';
import { csvField, neutralizeFormula, toCsv } from '../../src/domain/csv.ts';

const NOW = Date.UTC(2026, 5, 1); // 2026-06-01T00:00:00Z
const HOUR = 3_600_000;
const ago = (days: number, hours = 0): number => NOW - days * DAY_MS - hours * HOUR;
const sub = (i: number): string => `AC${String(i).padStart(32, '0')}`;
const key = (i: number): string => `SK${String(i).padStart(32, '0')}`;
const rot = (i: number): string => `0197a000-0000-7000-8000-${String(i).padStart(12, '0')}`;
const isoAgo = (days: number, hours = 0): string => new Date(ago(days, hours)).toISOString();

const quarterly: PolicyFacts = { name: 'default', interval: 'P90D', intervalMs: 90 * DAY_MS, maxKeyAge: null, maxKeyAgeMs: null };
const hipaa: PolicyFacts = { name: 'hipaa', interval: 'P30D', intervalMs: 30 * DAY_MS, maxKeyAge: null, maxKeyAgeMs: null };
const hipaaStrict: PolicyFacts = { name: 'hipaa-billing', interval: 'P30D', intervalMs: 30 * DAY_MS, maxKeyAge: 'P35D', maxKeyAgeMs: 35 * DAY_MS };

/**
 * The seeded fleet:
 *  1 Acme Health (active, hipaa): `default` fresh; `billing-prod` overdue and past maxKeyAge after a
 *    failed rotation. Keys: both store keys, default's previous, a hand-made key (sprawl), a key
 *    that only looks like Rotator's (sprawl), a key of a known interrupted rotation (leftover).
 *  2 Beta Retail (active, a hostile name): `default` overdue at 95 days; its store key was imported
 *    by hand (not sprawl); two sprawl keys whose names are spreadsheet formulas.
 *  3 Gamma (closed): an ancient key — reported as closed, not overdue, not assessed.
 *  4 Delta (suspended): `default` within policy; `web` never bootstrapped and past its first due time.
 *  5 Epsilon (active): the store's key is missing at Twilio.
 */
function seed(): { credentials: CredentialFacts[]; subaccounts: SubaccountFacts[] } {
  const credentials: CredentialFacts[] = [
    { accountSid: sub(4), name: 'web', kind: 'api-key', labels: [], policy: quarterly, currentKeySid: null, keyCreatedAt: null, lastRotation: null, nextDueAt: NOW - HOUR },
    { accountSid: sub(1), name: 'default', kind: 'api-key', labels: ['hipaa'], policy: hipaa, currentKeySid: key(11), keyCreatedAt: ago(10), lastRotation: { at: ago(10), outcome: 'succeeded', rotationId: rot(11) }, nextDueAt: NOW + 20 * DAY_MS },
    { accountSid: sub(1), name: 'billing-prod', kind: 'api-key', labels: ['hipaa', 'tier=gold'], policy: hipaaStrict, currentKeySid: key(12), keyCreatedAt: ago(40), lastRotation: { at: ago(5), outcome: 'failed', rotationId: rot(14) }, nextDueAt: ago(10) },
    { accountSid: sub(2), name: 'default', kind: 'api-key', labels: [], policy: quarterly, currentKeySid: key(21), keyCreatedAt: ago(95), lastRotation: null, nextDueAt: ago(5) },
    { accountSid: sub(3), name: 'default', kind: 'api-key', labels: [], policy: quarterly, currentKeySid: key(31), keyCreatedAt: ago(200), lastRotation: { at: ago(200), outcome: 'succeeded', rotationId: rot(31) }, nextDueAt: ago(110) },
    { accountSid: sub(4), name: 'default', kind: 'api-key', labels: [], policy: quarterly, currentKeySid: key(41), keyCreatedAt: ago(30), lastRotation: { at: ago(30), outcome: 'succeeded', rotationId: rot(41) }, nextDueAt: NOW + 60 * DAY_MS },
    { accountSid: sub(5), name: 'default', kind: 'api-key', labels: [], policy: quarterly, currentKeySid: key(51), keyCreatedAt: null, lastRotation: { at: ago(3), outcome: 'succeeded', rotationId: rot(51) }, nextDueAt: NOW + 87 * DAY_MS },
  ];
  const subaccounts: SubaccountFacts[] = [
    {
      accountSid: sub(2),
      friendlyName: 'Beta, "Retail" Inc.\r\nsecond line',
      status: 'active',
      keys: [
        { sid: key(21), friendlyName: '=HYPERLINK("http://x/?"&A1)', dateCreated: ago(95) },
        { sid: key(22), friendlyName: "=cmd|' /c calc'!A0", dateCreated: ago(300) },
        { sid: key(23), friendlyName: '@SUM(1+1)', dateCreated: ago(20, 5) },
      ],
      stages: [{ name: 'default', current: key(21), pending: null, previous: null }],
      keyNamePrefix: 'rotator',
      rotationIds: [],
    },
    {
      accountSid: sub(1),
      friendlyName: 'Acme Health',
      status: 'active',
      keys: [
        { sid: key(11), friendlyName: `rotator:${rot(11)}`, dateCreated: ago(10) },
        { sid: key(10), friendlyName: `rotator:${rot(10)}`, dateCreated: ago(38) },
        { sid: key(12), friendlyName: `rotator:${rot(12)}`, dateCreated: ago(40) },
        { sid: key(13), friendlyName: 'legacy-prod', dateCreated: ago(400) },
        { sid: key(14), friendlyName: `rotator:${rot(14)}`, dateCreated: ago(5) },
        { sid: key(15), friendlyName: 'rotator:not-a-known-rotation', dateCreated: ago(60) },
      ],
      stages: [
        { name: 'default', current: key(11), pending: null, previous: key(10) },
        { name: 'billing-prod', current: key(12), pending: null, previous: null },
      ],
      keyNamePrefix: 'rotator',
      rotationIds: new Set([rot(10), rot(11), rot(12), rot(14)]),
    },
    { accountSid: sub(3), friendlyName: 'Gamma', status: 'closed', keys: null, stages: [{ name: 'default', current: key(31), pending: null, previous: null }], keyNamePrefix: 'rotator', rotationIds: [rot(31)] },
    { accountSid: sub(4), friendlyName: 'Delta', status: 'suspended', keys: [{ sid: key(41), friendlyName: `rotator:${rot(41)}`, dateCreated: ago(30) }], stages: [{ name: 'default', current: key(41), pending: null, previous: null }, { name: 'web', current: null, pending: null, previous: null }], keyNamePrefix: 'rotator', rotationIds: [rot(41)] },
    { accountSid: sub(5), friendlyName: 'Epsilon', status: 'active', keys: [], stages: [{ name: 'default', current: key(51), pending: null, previous: null }], keyNamePrefix: 'rotator', rotationIds: [rot(51)] },
  ];
  return { credentials, subaccounts };
}

const expectedCredentials: CredentialRow[] = [
  {
    accountSid: sub(1), credential: 'billing-prod', kind: 'api-key', labels: ['hipaa', 'tier=gold'], subaccountStatus: 'active',
    policy: 'hipaa-billing', policyInterval: 'P30D', maxKeyAge: 'P35D', allowedKeyAgeDays: 35,
    keySid: key(12), keyCreatedAt: isoAgo(40), keyAgeDays: 40, lastRotationAt: isoAgo(5), lastRotationOutcome: 'failed', nextDueAt: isoAgo(10),
    overdue: true, withinPolicy: false, finding: "key is 40 days old, beyond the policy hipaa-billing's maxKeyAge P35D",
  },
  {
    accountSid: sub(1), credential: 'default', kind: 'api-key', labels: ['hipaa'], subaccountStatus: 'active',
    policy: 'hipaa', policyInterval: 'P30D', maxKeyAge: null, allowedKeyAgeDays: 30,
    keySid: key(11), keyCreatedAt: isoAgo(10), keyAgeDays: 10, lastRotationAt: isoAgo(10), lastRotationOutcome: 'succeeded', nextDueAt: new Date(NOW + 20 * DAY_MS).toISOString(),
    overdue: false, withinPolicy: true, finding: null,
  },
  {
    accountSid: sub(2), credential: 'default', kind: 'api-key', labels: [], subaccountStatus: 'active',
    policy: 'default', policyInterval: 'P90D', maxKeyAge: null, allowedKeyAgeDays: 90,
    keySid: key(21), keyCreatedAt: isoAgo(95), keyAgeDays: 95, lastRotationAt: null, lastRotationOutcome: null, nextDueAt: isoAgo(5),
    overdue: true, withinPolicy: false, finding: "key is 95 days old, beyond the policy default's interval P90D",
  },
  {
    accountSid: sub(3), credential: 'default', kind: 'api-key', labels: [], subaccountStatus: 'closed',
    policy: 'default', policyInterval: 'P90D', maxKeyAge: null, allowedKeyAgeDays: 90,
    keySid: key(31), keyCreatedAt: isoAgo(200), keyAgeDays: 200, lastRotationAt: isoAgo(200), lastRotationOutcome: 'succeeded', nextDueAt: isoAgo(110),
    overdue: false, withinPolicy: null, finding: 'subaccount closed: its keys no longer work at Twilio; not assessed',
  },
  {
    accountSid: sub(4), credential: 'default', kind: 'api-key', labels: [], subaccountStatus: 'suspended',
    policy: 'default', policyInterval: 'P90D', maxKeyAge: null, allowedKeyAgeDays: 90,
    keySid: key(41), keyCreatedAt: isoAgo(30), keyAgeDays: 30, lastRotationAt: isoAgo(30), lastRotationOutcome: 'succeeded', nextDueAt: new Date(NOW + 60 * DAY_MS).toISOString(),
    overdue: false, withinPolicy: true, finding: null,
  },
  {
    accountSid: sub(4), credential: 'web', kind: 'api-key', labels: [], subaccountStatus: 'suspended',
    policy: 'default', policyInterval: 'P90D', maxKeyAge: null, allowedKeyAgeDays: 90,
    keySid: null, keyCreatedAt: null, keyAgeDays: null, lastRotationAt: null, lastRotationOutcome: null, nextDueAt: new Date(NOW - HOUR).toISOString(),
    overdue: true, withinPolicy: false, finding: 'no key in the store: never rotated (bootstrap pending)',
  },
  {
    accountSid: sub(5), credential: 'default', kind: 'api-key', labels: [], subaccountStatus: 'active',
    policy: 'default', policyInterval: 'P90D', maxKeyAge: null, allowedKeyAgeDays: 90,
    keySid: key(51), keyCreatedAt: null, keyAgeDays: null, lastRotationAt: isoAgo(3), lastRotationOutcome: 'succeeded', nextDueAt: new Date(NOW + 87 * DAY_MS).toISOString(),
    overdue: false, withinPolicy: false, finding: `the store's key ${key(51)} is not listed at Twilio`,
  },
];

const expectedSubaccounts: SubaccountRow[] = [
  {
    accountSid: sub(1), friendlyName: 'Acme Health', status: 'active', keysAtTwilio: 6,
    sprawl: [
      { sid: key(13), friendlyName: 'legacy-prod', createdAt: isoAgo(400), ageDays: 400 },
      { sid: key(15), friendlyName: 'rotator:not-a-known-rotation', createdAt: isoAgo(60), ageDays: 60 },
    ],
    leftover: [{ sid: key(14), friendlyName: `rotator:${rot(14)}`, createdAt: isoAgo(5), ageDays: 5, rotationId: rot(14) }],
    finding: '2 keys not created by Rotator and held by no store stage; 1 key left by interrupted rotations',
  },
  {
    accountSid: sub(2), friendlyName: 'Beta, "Retail" Inc.\r\nsecond line', status: 'active', keysAtTwilio: 3,
    sprawl: [
      { sid: key(22), friendlyName: "=cmd|' /c calc'!A0", createdAt: isoAgo(300), ageDays: 300 },
      { sid: key(23), friendlyName: '@SUM(1+1)', createdAt: isoAgo(20, 5), ageDays: 20 },
    ],
    leftover: [],
    finding: '2 keys not created by Rotator and held by no store stage',
  },
  { accountSid: sub(3), friendlyName: 'Gamma', status: 'closed', keysAtTwilio: null, sprawl: [], leftover: [], finding: 'closed: its keys no longer work at Twilio; not assessed' },
  { accountSid: sub(4), friendlyName: 'Delta', status: 'suspended', keysAtTwilio: 1, sprawl: [], leftover: [], finding: null },
  { accountSid: sub(5), friendlyName: 'Epsilon', status: 'active', keysAtTwilio: 0, sprawl: [], leftover: [], finding: null },
];

describe('the compliance report on a seeded fleet', () => {
  const report = complianceReport({ ...seed(), now: NOW });

  it('has exactly the expected credential rows, row by row, in order', () => {
    expect(report.credentials).toHaveLength(expectedCredentials.length);
    report.credentials.forEach((row, i) => expect(row, `credential row ${i}`).toEqual(expectedCredentials[i]));
  });

  it('has exactly the expected subaccount rows: sprawl (with age) but not store keys, imported keys or known rotations; a closed subaccount as closed', () => {
    expect(report.subaccounts).toHaveLength(expectedSubaccounts.length);
    report.subaccounts.forEach((row, i) => expect(row, `subaccount row ${i}`).toEqual(expectedSubaccounts[i]));
  });

  it('totals: closed excluded from the judged set, percent rounded down, the oldest judged key', () => {
    expect(report.generatedAt).toBe('2026-06-01T00:00:00.000Z');
    expect(report.summary).toEqual({
      credentials: 7,
      assessed: 6,
      withinPolicy: 2,
      withinPolicyPercent: 33.3,
      overdue: 3,
      oldestKeyAgeDays: 95, // the closed subaccount's 200-day key is not judged
      oldestKey: { accountSid: sub(2), credential: 'default', keySid: key(21) },
      subaccounts: 5,
      closedSubaccounts: 1,
      sprawlKeys: 4,
      leftoverKeys: 1,
    });
  });

  it('judges key age in ms, not whole days, and overdue against the due time', () => {
    const one = (keyCreatedAt: number, nextDueAt: number) =>
      complianceReport({ credentials: [{ ...seed().credentials[1]!, keyCreatedAt, nextDueAt }], subaccounts: seed().subaccounts, now: NOW }).credentials[0]!;
    expect(one(ago(30), NOW)).toMatchObject({ keyAgeDays: 30, withinPolicy: true, overdue: false });
    expect(one(ago(30, 1), NOW - 1)).toMatchObject({ keyAgeDays: 30, withinPolicy: false, overdue: true });
    expect(one(NOW + 5 * 60_000, NOW + DAY_MS)).toMatchObject({ keyAgeDays: 0, withinPolicy: true }); // Twilio's clock a little ahead
  });

  it("an Auth Token Rotator never rotated is out of policy with its own reason, not as a key missing at Twilio", () => {
    const base = seed().credentials[1]!;
    const row = (kind: 'auth-token' | 'api-key') =>
      complianceReport({ credentials: [{ ...base, kind, currentKeySid: 'AT-0123456789abcdef', keyCreatedAt: null }], subaccounts: seed().subaccounts, now: NOW }).credentials[0]!;
    expect(row('auth-token')).toMatchObject({ kind: 'auth-token', withinPolicy: false, finding: expect.stringMatching(/Auth Token's age is unknown .*rotate it once/) });
    expect(row('api-key').finding).toBe("the store's key AT-0123456789abcdef is not listed at Twilio");
  });

  it('rounds the within-policy share down, so 100 means every one', () => {
    const base = seed().credentials[1]!;
    const many = Array.from({ length: 2000 }, (_, i) => ({ ...base, name: `c${i}`, keyCreatedAt: i === 0 ? ago(31) : ago(1) }));
    expect(complianceReport({ credentials: many, subaccounts: seed().subaccounts, now: NOW }).summary.withinPolicyPercent).toBe(99.9);
    expect(complianceReport({ credentials: [], subaccounts: [], now: NOW }).summary).toMatchObject({ withinPolicyPercent: null, oldestKeyAgeDays: null, oldestKey: null });
  });
});

describe('the compliance CSV', () => {
  const report = complianceReport({ ...seed(), now: NOW });
  const csv = complianceCsv(report);

  it('is RFC 4180 with CRLF line ends and a header, and a real parser reads back every row', () => {
    expect(csv.endsWith('\r\n')).toBe(true);
    expect(csv.split('\r\n')[0]).toBe(COMPLIANCE_CSV_COLUMNS.join(','));
    // Every CR and LF in the file is part of a CRLF (the hostile name's own line break is one too).
    expect(csv.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);

    const rows = parse(csv, { columns: true }) as Array<Record<string, string>>;
    const pick = (r: Record<string, string>) => [r.record, r.account_sid, r.credential || r.key_sid];
    expect(rows.map(pick)).toEqual([
      ['subaccount', sub(1), ''],
      ['credential', sub(1), 'billing-prod'],
      ['credential', sub(1), 'default'],
      ['sprawl-key', sub(1), key(13)],
      ['sprawl-key', sub(1), key(15)],
      ['leftover-key', sub(1), key(14)],
      ['subaccount', sub(2), ''],
      ['credential', sub(2), 'default'],
      ['sprawl-key', sub(2), key(22)],
      ['sprawl-key', sub(2), key(23)],
      ['subaccount', sub(3), ''],
      ['credential', sub(3), 'default'],
      ['subaccount', sub(4), ''],
      ['credential', sub(4), 'default'],
      ['credential', sub(4), 'web'],
      ['subaccount', sub(5), ''],
      ['credential', sub(5), 'default'],
    ]);

    // Row by row against the JSON report.
    const creds = rows.filter((r) => r.record === 'credential');
    creds.forEach((r, i) => {
      const c = report.credentials[i]!;
      expect(r).toMatchObject({
        account_sid: c.accountSid,
        subaccount_status: c.subaccountStatus,
        credential: c.credential,
        kind: c.kind,
        labels: c.labels.join(' '),
        policy: c.policy,
        policy_interval: c.policyInterval,
        max_key_age: c.maxKeyAge ?? '',
        allowed_key_age_days: String(c.allowedKeyAgeDays),
        key_sid: c.keySid ?? '',
        key_created_at: c.keyCreatedAt ?? '',
        key_age_days: c.keyAgeDays === null ? '' : String(c.keyAgeDays),
        last_rotation_at: c.lastRotationAt ?? '',
        last_rotation_outcome: c.lastRotationOutcome ?? '',
        next_due_at: c.nextDueAt ?? '',
        overdue: String(c.overdue),
        within_policy: c.withinPolicy === null ? '' : String(c.withinPolicy),
        finding: c.finding ?? '',
        key_name: '',
      });
    });
    expect(rows.find((r) => r.record === 'subaccount' && r.account_sid === sub(3))).toMatchObject({ subaccount_status: 'closed', keys_at_twilio: '', sprawl_keys: '' });
    expect(rows.find((r) => r.record === 'subaccount' && r.account_sid === sub(1))).toMatchObject({ keys_at_twilio: '6', sprawl_keys: '2' });
  });

  it('keeps nasty values intact (comma, quote, CR, LF) and defuses formulas with a leading apostrophe', () => {
    const rows = parse(csv, { columns: true }) as Array<Record<string, string>>;
    const beta = rows.filter((r) => r.account_sid === sub(2));
    expect(beta.every((r) => r.subaccount_name === 'Beta, "Retail" Inc.\r\nsecond line')).toBe(true);
    expect(beta.filter((r) => r.record === 'sprawl-key').map((r) => r.key_name)).toEqual(["'=cmd|' /c calc'!A0", "'@SUM(1+1)"]);
    // In the raw file the formula is never at the start of a field.
    expect(csv).not.toMatch(/(^|,)"?([=+\-@\t]|\r(?!\n))/m);
    expect(csv).toContain(`"Beta, ""Retail"" Inc.\r\nsecond line"`);
  });

  it('property: any table survives the round trip through a real parser, formula-looking text prefixed', () => {
    const nasty = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 12 }),
      fc.constantFrom('', ',', '"', '""', '\r', '\n', '\r\n', '=1+1', '+1', '-1', '@x', '\t=x', '\r=x', ' =x', "'=x", 'a,b', 'a"b', 'ü,"é"\n', '﻿bom'),
      fc.array(fc.constantFrom('a', ',', '"', '\r', '\n', '=', '-', ' '), { maxLength: 6 }).map((a) => a.join('')),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }).chain((w) => fc.tuple(fc.constant(w), fc.array(fc.array(nasty, { minLength: w, maxLength: w }), { maxLength: 8 }))), ([w, rows]) => {
        const header = Array.from({ length: w }, (_, i) => `c${i}`);
        const parsed = parse(toCsv(header, rows), { bom: false }) as string[][];
        expect(parsed).toEqual([header, ...rows.map((r) => r.map(neutralizeFormula))]);
      }),
      { numRuns: 200 },
    );
  });

  it('writes nulls as empty fields, booleans and numbers as text, and refuses a non-finite number or a ragged row', () => {
    expect([null, undefined, true, false, 0, 12.5, -3].map(csvField)).toEqual(['', '', 'true', 'false', '0', '12.5', '-3']);
    expect(csvField('-3')).toBe("'-3");
    expect(() => csvField(Number.NaN)).toThrow(/not a finite number/);
    expect(() => toCsv(['a', 'b'], [['x']])).toThrow('csv: row 1 has 1 fields, the header 2');
    expect(toCsv(['a'], [])).toBe('a\r\n');
  });
});

describe('deleting a sprawl key', () => {
  const acme = seed().subaccounts.find((s) => s.accountSid === sub(1))!;

  it('allows a sprawl key named twice', () => {
    expect(checkSprawlKeyDelete({ keySid: key(13), confirm: key(13) }, acme)).toEqual({ ok: true });
    expect(checkSprawlKeyDelete({ keySid: key(15), confirm: key(15) }, acme)).toEqual({ ok: true }); // looks like Rotator's, is not on record
  });

  it("refuses the store's current, pending and previous keys, naming the stage and credential", () => {
    const withPending: SubaccountFacts = { ...acme, stages: [...acme.stages, { name: 'web', current: null, pending: key(13), previous: null }] };
    expect(checkSprawlKeyDelete({ keySid: key(11), confirm: key(11) }, acme)).toEqual({ ok: false, status: 409, code: 'key_in_store', reason: `${key(11)} is the store's current key of credential default (applications read it now); Rotator never deletes it as sprawl` });
    expect(checkSprawlKeyDelete({ keySid: key(10), confirm: key(10) }, acme)).toEqual({ ok: false, status: 409, code: 'key_in_store', reason: `${key(10)} is the store's previous key of credential default (applications may still use it until the drain ends); Rotator never deletes it as sprawl` });
    expect(checkSprawlKeyDelete({ keySid: key(13), confirm: key(13) }, withPending)).toEqual({ ok: false, status: 409, code: 'key_in_store', reason: `${key(13)} is the store's pending key of credential web (a rotation is staging it); Rotator never deletes it as sprawl` });
    // Held by the store even when Twilio's list (just read) does not show it.
    expect(checkSprawlKeyDelete({ keySid: key(12), confirm: key(12) }, { ...acme, keys: [] })).toMatchObject({ ok: false, code: 'key_in_store' });
  });

  it('requires confirm to repeat the key SID exactly, and a well-formed SID', () => {
    for (const confirm of [undefined, '', true, key(14), key(13).slice(0, -1), ` ${key(13)}`, [key(13)]]) {
      expect(checkSprawlKeyDelete({ keySid: key(13), confirm }, acme)).toEqual({ ok: false, status: 400, code: 'confirmation_required', reason: `confirm must repeat the key SID ${key(13)} exactly to delete it` });
    }
    for (const keySid of [undefined, 'SK123', `AC${'0'.repeat(32)}`, `SK${'AB'.repeat(16)}`, `${key(13)}\n`]) {
      expect(checkSprawlKeyDelete({ keySid, confirm: keySid }, acme)).toMatchObject({ ok: false, status: 400, code: 'invalid_key_sid' });
    }
  });

  it("refuses Rotator's own keys, unknown keys, closed subaccounts and unlisted keys", () => {
    expect(checkSprawlKeyDelete({ keySid: key(14), confirm: key(14) }, acme)).toEqual({ ok: false, status: 409, code: 'rotator_key', reason: `${key(14)} was created by rotation ${rot(14)}; Rotator deletes its own keys as that rotation finishes or is undone` });
    expect(checkSprawlKeyDelete({ keySid: key(99), confirm: key(99) }, acme)).toEqual({ ok: false, status: 404, code: 'key_not_found', reason: `${key(99)} is not a key of subaccount ${sub(1)}` });
    const gamma = seed().subaccounts.find((s) => s.accountSid === sub(3))!;
    expect(checkSprawlKeyDelete({ keySid: key(32), confirm: key(32) }, gamma)).toMatchObject({ ok: false, status: 409, code: 'subaccount_closed' });
    expect(checkSprawlKeyDelete({ keySid: key(13), confirm: key(13) }, { ...acme, keys: null })).toMatchObject({ ok: false, status: 409, code: 'keys_unknown' });
  });
});
