import { describe, expect, it } from 'vitest';
import { DAY_MS, HOUR_MS } from '../../src/domain/duration.ts';
import {
  checkPolicy,
  compilePolicy,
  DEFAULT_POLICIES,
  policyCatalog,
  PolicyValidationError,
  resolvePolicy,
  type FieldError,
  type Policy,
} from '../../src/domain/policy.ts';

const NY = 'America/New_York';
const weekdays = { days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: { from: '09:00', to: '17:00' }, timeZone: NY };

function issues(input: unknown): FieldError[] {
  const r = checkPolicy(input);
  if (r.ok) throw new Error('accepted');
  return r.errors;
}
const paths = (input: unknown): string[] => issues(input).map((i) => i.path);
const issueAt = (input: unknown, path: string): string => issues(input).find((i) => i.path === path)?.message ?? `(no issue at ${path}: ${JSON.stringify(issues(input))})`;

describe('policy validation (API input → 400 naming the field)', () => {
  it('compiles the built-in defaults: default P90D, hipaa P30D by label', () => {
    const [def, hipaa] = DEFAULT_POLICIES.map(compilePolicy);
    expect(def?.intervalMs).toBe(90 * DAY_MS);
    expect(def?.allowedShare).toBe(1);
    expect(hipaa?.intervalMs).toBe(30 * DAY_MS);
    expect(hipaa?.labels).toEqual(['hipaa']);
    expect(def?.autoRotate).toBe(true);
    expect(def?.exclude).toBe(false);
  });

  it('defaults the spread to a week, at most a quarter of the interval', () => {
    expect(compilePolicy({ name: 'q', interval: 'P90D' }).spreadMs).toBe(7 * DAY_MS);
    expect(compilePolicy({ name: 'h', interval: 'PT12H' }).spreadMs).toBe(3 * HOUR_MS);
    expect(compilePolicy({ name: 's', interval: 'P90D', spread: 'P14D' }).spreadMs).toBe(14 * DAY_MS);
  });

  it('measures the share of the week a set of windows allows', () => {
    expect(compilePolicy({ name: 'w', interval: 'P90D', windows: [weekdays] }).allowedShare).toBeCloseTo(40 / 168, 12);
    // A range may end at 24:00 (the end of the day).
    expect(compilePolicy({ name: 'n', interval: 'P90D', windows: [{ days: ['sat'], hours: { from: '22:00', to: '24:00' }, timeZone: 'UTC' }] }).allowedShare).toBeCloseTo(2 / 168, 12);
  });

  it('rejects an unknown time zone, naming the window', () => {
    expect(issueAt({ name: 'x', interval: 'P30D', windows: [{ ...weekdays, timeZone: 'America/New_Yrok' }] }, 'windows[0].timeZone')).toMatch(/"America\/New_Yrok" is not a known IANA time zone/);
    expect(issueAt({ name: 'x', interval: 'P30D', windows: [{ days: ['mon'], hours: { from: '09:00', to: '10:00' } }] }, 'windows[0].timeZone')).toMatch(/is required/);
  });

  it('rejects malformed durations, naming the field', () => {
    expect(issueAt({ name: 'x', interval: 'P1M' }, 'interval')).toMatch(/calendar months/);
    expect(issueAt({ name: 'x', interval: 'P30D', maxKeyAge: 'forever' }, 'maxKeyAge')).toMatch(/not an ISO 8601 duration/);
    expect(issueAt({ name: 'x' }, 'interval')).toMatch(/is required/);
    expect(issueAt({ name: 'x', interval: 'PT30M' }, 'interval')).toMatch(/out of range/);
    expect(issueAt({ name: 'x', interval: 'P30D', maxKeyAge: 'P20D' }, 'maxKeyAge')).toMatch(/shorter than interval.*set interval to "P20D"/);
    expect(issueAt({ name: 'x', interval: 'P30D', spread: 'P20D' }, 'spread')).toMatch(/at most half the interval \(P15D\)/);
    // One hour a week of window: a 12-hour spread would hold 4 minutes of it.
    const narrow = { name: 'x', interval: 'P30D', windows: [{ days: ['mon'], hours: { from: '09:00', to: '10:00' }, timeZone: NY }] };
    expect(issueAt({ ...narrow, spread: 'PT12H' }, 'spread')).toMatch(/"PT12H" holds only PT4M17S of window time \(the windows allow PT1H a week\): use at least P7D/);
    expect(checkPolicy({ ...narrow, spread: 'P7D' }).ok).toBe(true);
  });

  it('rejects a window without days or hours', () => {
    expect(issueAt({ name: 'x', interval: 'P30D', windows: [{ ...weekdays, days: [] }] }, 'windows[0].days')).toMatch(/at least one day/);
    expect(issueAt({ name: 'x', interval: 'P30D', windows: [{ days: ['mon'], timeZone: NY }] }, 'windows[0].hours')).toMatch(/at least one range/);
    expect(issueAt({ name: 'x', interval: 'P30D', windows: [{ ...weekdays, hours: [] }] }, 'windows[0].hours')).toMatch(/at least one range/);
    expect(issueAt({ name: 'x', interval: 'P30D', windows: [{ ...weekdays, days: ['monday'] }] }, 'windows[0].days[0]')).toMatch(/"monday" is not a day/);
    expect(issueAt({ name: 'x', interval: 'P30D', windows: [] }, 'windows')).toMatch(/is empty/);
  });

  it('rejects inverted and overlapping hour ranges', () => {
    expect(issueAt({ name: 'x', interval: 'P30D', windows: [{ ...weekdays, hours: { from: '22:00', to: '04:00' } }] }, 'windows[0].hours')).toMatch(/22:00–04:00 is inverted.*two ranges/);
    expect(issueAt({ name: 'x', interval: 'P30D', windows: [{ ...weekdays, hours: { from: '24:00', to: '24:00' } }] }, 'windows[0].hours.from')).toMatch(/not a time of day/);
    expect(issueAt({ name: 'x', interval: 'P30D', windows: [{ ...weekdays, hours: { from: '9:00', to: '17:00' } }] }, 'windows[0].hours.from')).toMatch(/"9:00" is not a time of day HH:MM/);
    const within = { name: 'x', interval: 'P30D', windows: [{ ...weekdays, hours: [{ from: '09:00', to: '12:00' }, { from: '11:30', to: '13:00' }] }] };
    expect(issueAt(within, 'windows[0].hours[1]')).toMatch(/11:30–13:00 overlaps windows\[0\]\.hours\[0\] \(09:00–12:00\)/);
    const across = { name: 'x', interval: 'P30D', windows: [weekdays, { days: ['fri', 'sat'], hours: { from: '16:00', to: '20:00' }, timeZone: NY }] };
    expect(issueAt(across, 'windows[1]')).toMatch(/overlaps windows\[0\] on fri \(16:00–17:00 America\/New_York\)/);
    // The same hours in another zone, or on another day, are no overlap.
    expect(checkPolicy({ ...across, windows: [weekdays, { ...across.windows[1], timeZone: 'Europe/London' }] }).ok).toBe(true);
    expect(checkPolicy({ ...across, windows: [weekdays, { ...across.windows[1], days: ['sat'] }] }).ok).toBe(true);
  });

  it('rejects bad blackouts: not an instant with an offset, inverted, overlapping', () => {
    const b = (blackouts: unknown): unknown => ({ name: 'x', interval: 'P30D', blackouts });
    expect(issueAt(b([{ from: '2026-12-24', to: '2026-12-27T00:00:00Z' }]), 'blackouts[0].from')).toMatch(/not an ISO 8601 instant with a date, a time and an offset/);
    expect(issueAt(b([{ from: '2026-12-24T00:00:00', to: '2026-12-27T00:00:00Z' }]), 'blackouts[0].from')).toMatch(/offset/);
    expect(issueAt(b([{ from: '2026-02-30T00:00:00Z', to: '2026-03-02T00:00:00Z' }]), 'blackouts[0].from')).toMatch(/not an ISO 8601 instant/);
    expect(issueAt(b([{ from: '2026-12-27T00:00:00Z', to: '2026-12-24T00:00:00Z' }]), 'blackouts[0]')).toMatch(/is not before/);
    const overlapping = b([
      { from: '2026-12-20T00:00:00-05:00', to: '2027-01-04T00:00:00-05:00' },
      { from: '2026-12-24T00:00:00Z', to: '2026-12-27T00:00:00Z' },
    ]);
    expect(issueAt(overlapping, 'blackouts[1]')).toMatch(/overlaps blackouts\[0\]/);
    const ok = compilePolicy(b([{ from: '2026-12-24T00:00:00-05:00', to: '2026-12-27T00:00:00.5+01:00', reason: 'holidays' }]));
    expect(ok.blackouts).toEqual([[Date.UTC(2026, 11, 24, 5), Date.UTC(2026, 11, 26, 23, 0, 0, 500)]]);
  });

  it('rejects unknown fields, bad names and labels; reports every issue at once', () => {
    expect(paths({ name: 'Bad Name', interval: 'P30D', interva: 'P30D', labels: ['HIPAA', 'pci', 'pci'], exclude: 'yes', windows: [{ ...weekdays, tz: NY }] })).toEqual(
      expect.arrayContaining(['interva', 'name', 'labels[0]', 'labels[2]', 'exclude', 'windows[0].tz']),
    );
    expect(issueAt({ name: 'default', interval: 'P90D', labels: ['x'] }, 'labels')).toMatch(/cannot be assigned by label/);
    expect(issueAt([], '(body)')).toMatch(/JSON object/);
  });

  it('throws PolicyValidationError (code invalid_policy) whose message names each field', () => {
    let err: unknown;
    try {
      compilePolicy({ name: 'x', interval: 'P1M', windows: [{ ...weekdays, timeZone: 'Mars/Olympus' }] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyValidationError);
    expect((err as PolicyValidationError).code).toBe('invalid_policy');
    expect((err as PolicyValidationError).message).toMatch(/^interval: .*calendar months.*; windows\[0\]\.timeZone: "Mars\/Olympus"/);
  });
});

describe('policy assignment (most specific wins, and why)', () => {
  const policies: Policy[] = [
    ...DEFAULT_POLICIES,
    { name: 'pci', interval: 'P60D', labels: ['pci'] },
    { name: 'gold', interval: 'P60D', maxKeyAge: 'P75D', labels: ['tier=gold'] },
    { name: 'frozen', interval: 'P1D', exclude: true, labels: ['legacy'] },
    { name: 'manual', interval: 'P14D', autoRotate: false, labels: ['manual'] },
    { name: 'weekly', interval: 'P7D' },
  ];
  const catalog = policyCatalog(policies);
  const id = 'AC0123456789abcdef0123456789abcdef/billing-prod';

  it('falls back to default', () => {
    const a = resolvePolicy({ credentialId: id, labels: ['unrelated'] }, catalog);
    expect([a.policy.name, a.source, a.reason]).toEqual(['default', 'default', 'default']);
  });

  it('assigns by label', () => {
    const a = resolvePolicy({ credentialId: id, labels: ['hipaa'] }, catalog);
    expect([a.policy.name, a.source, a.reason]).toEqual(['hipaa', 'label', 'label hipaa (policy hipaa)']);
  });

  it('breaks label ties towards the stricter policy, whatever the order', () => {
    const a = resolvePolicy({ credentialId: id, labels: ['pci', 'hipaa'] }, catalog);
    const b = resolvePolicy({ credentialId: id, labels: ['hipaa', 'pci'] }, catalog);
    expect(a.policy.name).toBe('hipaa');
    expect(b).toEqual(a);
    expect(a.reason).toBe('label hipaa (policy hipaa); also matched label pci (policy pci, P60D): the stricter policy wins');
    // Same interval: the one with a maximum key age is stricter.
    expect(resolvePolicy({ credentialId: id, labels: ['pci', 'tier=gold'] }, catalog).policy.name).toBe('gold');
    // A label cannot switch off rotation another label requires, even with a shorter interval.
    expect(resolvePolicy({ credentialId: id, labels: ['legacy', 'pci'] }, catalog).policy.name).toBe('pci');
    expect(resolvePolicy({ credentialId: id, labels: ['manual', 'pci'] }, catalog).policy.name).toBe('pci');
    expect(resolvePolicy({ credentialId: id, labels: ['legacy'] }, catalog).policy.name).toBe('frozen');
  });

  it('lets an account override beat labels, and a credential override beat both', () => {
    const account = resolvePolicy({ credentialId: id, labels: ['hipaa'], accountPolicy: 'weekly' }, catalog);
    expect([account.policy.name, account.source, account.reason]).toEqual(['weekly', 'account override', 'account override (policy weekly)']);
    // An explicit override may exclude, unlike a label.
    const cred = resolvePolicy({ credentialId: id, labels: ['hipaa'], accountPolicy: 'weekly', credentialPolicy: 'frozen' }, catalog);
    expect([cred.policy.name, cred.source, cred.reason]).toEqual(['frozen', 'credential override', 'credential override (policy frozen)']);
  });

  it('skips an override naming a policy that no longer exists, and says so', () => {
    const a = resolvePolicy({ credentialId: id, labels: ['hipaa'], credentialPolicy: 'gone' }, catalog);
    expect(a.policy.name).toBe('hipaa');
    expect(a.reason).toBe('credential override names policy "gone", which does not exist (ignored); label hipaa (policy hipaa)');
  });

  it('always has a default policy, and refuses a name defined twice', () => {
    expect(policyCatalog([{ name: 'hipaa', interval: 'P30D', labels: ['hipaa'] }]).get('default')?.intervalMs).toBe(90 * DAY_MS);
    expect(() => policyCatalog([{ name: 'a', interval: 'P30D' }, { name: 'a', interval: 'P60D' }])).toThrow(/defined twice/);
  });
});
