/**
 * Rotation policies: what the API accepts, how it is checked, and which policy applies to a
 * managed credential and why. Pure: no I/O, no clock.
 *
 * A policy as written (`Policy`, strings as an operator types them) is checked once and compiled
 * (`CompiledPolicy`, milliseconds, minute ranges, day masks) so that the planner's inner loop never
 * parses anything.
 */
import { PermanentError } from './errors.ts';
import { DAY_MS, formatDuration, HOUR_MS, MINUTE_MS, parseDuration, WEEK_MS } from './duration.ts';
import { isValidTimeZone } from './zone.ts';
import { isValidLabel, type FieldError } from './credential.ts';
import type { ConsumerGatePolicy } from './consumers.ts';

export { isValidLabel, LABEL as LABEL_PATTERN, type FieldError } from './credential.ts';

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** Local wall-clock range on a day, `HH:MM`, `to` exclusive and allowed to be `24:00`. */
export interface HourRange {
  from: string;
  to: string;
}

/** When rotations may start: these local days and hours in one IANA time zone. */
export interface RotationWindow {
  days: Weekday[];
  hours: HourRange | HourRange[];
  timeZone: string;
}

/** A period in which no rotation starts: two ISO 8601 instants with an offset, `to` exclusive. */
export interface Blackout {
  from: string;
  to: string;
  reason?: string;
}

/** A policy as the API reads and writes it. */
export interface Policy {
  name: string;
  /** How long after its last rotation a credential must be rotated again (ISO 8601, e.g. P90D). */
  interval: string;
  /** The oldest a key may be (by Twilio's date_created), whatever its rotation history. */
  maxKeyAge?: string;
  /** How much time before the deadline the credentials due together are spread over (default P7D, at most interval/4 when defaulted). */
  spread?: string;
  windows?: RotationWindow[];
  blackouts?: Blackout[];
  /** Subaccount labels (`hipaa`, `tier=gold`) that assign this policy. */
  labels?: string[];
  /** Not managed by the schedule at all (neither rotated nor reported overdue). */
  exclude?: boolean;
  /** false: deadlines and overdue are tracked, but only people (or batches) start rotations. Default true. */
  autoRotate?: boolean;
  /**
   * true: the planner and batches may start rotations of `auth-token` credentials this policy
   * applies to (the account must also have Auth Token rotation enabled). Default false: an Auth
   * Token is rotated only by an admin who confirms it.
   */
  allowAuthToken?: boolean;
  description?: string;
  /**
   * Promote when the credential's consumers have moved (issue 15), instead of only after
   * DRAIN_SECONDS: not before `minDrain` (default PT30S), waiting at most `maxWait` for laggards,
   * then `onMaxWait`: `hold` (default; the rotation stays waiting until they move or an operator
   * force-promotes) or `promote`.
   */
  consumerGate?: { minDrain?: string; maxWait: string; onMaxWait?: 'hold' | 'promote' };
}

export interface CompiledWindow {
  timeZone: string;
  /** Bit n set: local weekday n allowed, 0 = Sunday (as Date#getUTCDay numbers them). */
  dayMask: number;
  /** Minutes of the local day, [from, to), ascending, not overlapping. */
  ranges: ReadonlyArray<readonly [number, number]>;
}

export interface CompiledPolicy {
  name: string;
  source: Policy;
  intervalMs: number;
  maxKeyAgeMs: number | null;
  spreadMs: number;
  windows: readonly CompiledWindow[];
  /** [from, to) in epoch ms, ascending, not overlapping. */
  blackouts: ReadonlyArray<readonly [number, number]>;
  labels: readonly string[];
  exclude: boolean;
  autoRotate: boolean;
  allowAuthToken: boolean;
  /** Share of a week the windows allow (1 without windows): turns the spread into allowed time. */
  allowedShare: number;
  /** Null: promote after DRAIN_SECONDS whatever the consumers report. */
  consumerGate: ConsumerGatePolicy | null;
}

/** Bad policy input; the API answers 400 with this message (every issue, each naming its field). */
export class PolicyValidationError extends PermanentError {
  readonly errors: readonly FieldError[];
  constructor(errors: readonly FieldError[]) {
    super('invalid_policy', errors.map((e) => `${e.path}: ${e.message}`).join('; '));
    this.name = 'PolicyValidationError';
    this.errors = errors;
  }
}

export const DEFAULT_POLICY_NAME = 'default';

/** SPEC: quarterly by default; monthly (30 days) for the `hipaa` label. */
export const DEFAULT_POLICIES: readonly Policy[] = [
  { name: DEFAULT_POLICY_NAME, interval: 'P90D', description: 'Every credential that no label or override assigns elsewhere' },
  { name: 'hipaa', interval: 'P30D', labels: ['hipaa'], description: 'HIPAA workloads: rotated at least every 30 days' },
];

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;
const INSTANT = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?(Z|[+-]\d{2}:\d{2})$/;

const MIN_INTERVAL_MS = HOUR_MS;
const MAX_INTERVAL_MS = 3650 * DAY_MS;
const DEFAULT_SPREAD_MS = 7 * DAY_MS;

const POLICY_FIELDS = new Set(['name', 'interval', 'maxKeyAge', 'spread', 'windows', 'blackouts', 'labels', 'exclude', 'autoRotate', 'allowAuthToken', 'description', 'consumerGate']);
const CONSUMER_GATE_FIELDS = new Set(['minDrain', 'maxWait', 'onMaxWait']);
const DEFAULT_MIN_DRAIN_MS = 30_000;
const MAX_CONSUMER_WAIT_MS = 30 * DAY_MS;
const WINDOW_FIELDS = new Set(['days', 'hours', 'timeZone']);
const RANGE_FIELDS = new Set(['from', 'to']);
const BLACKOUT_FIELDS = new Set(['from', 'to', 'reason']);

/** As batch.ts's Checked<T>. */
export type PolicyCheck = { ok: true; value: CompiledPolicy } | { ok: false; errors: FieldError[] };

/** Check and compile a policy; every problem is reported, each naming its field and what is wrong. */
export function checkPolicy(input: unknown): PolicyCheck {
  const errors: FieldError[] = [];
  const bad = (path: string, message: string): void => void errors.push({ path, message });
  if (!isObject(input)) return { ok: false, errors: [{ path: '(body)', message: 'must be a JSON object' }] };
  unknownFields(input, POLICY_FIELDS, '', bad);

  const name = input.name;
  if (typeof name !== 'string' || !NAME.test(name)) bad('name', `must be 1–63 lower-case letters, digits or '-', starting with a letter or digit (got ${show(name)})`);

  const interval = durationField(input, 'interval', true, bad);
  if (interval !== null && (interval < MIN_INTERVAL_MS || interval > MAX_INTERVAL_MS)) {
    bad('interval', `${show(input.interval)} is out of range: between PT1H and P3650D`);
  }
  const maxKeyAge = durationField(input, 'maxKeyAge', false, bad);
  // A maximum age shorter than the interval would always decide, making the interval a fiction: say so.
  if (maxKeyAge !== null && interval !== null && maxKeyAge < interval) {
    bad('maxKeyAge', `${show(input.maxKeyAge)} is shorter than interval ${show(input.interval)}: it would always decide; set interval to ${show(input.maxKeyAge)} instead`);
  }
  if (maxKeyAge !== null && maxKeyAge > MAX_INTERVAL_MS) bad('maxKeyAge', `${show(input.maxKeyAge)} is out of range: at most P3650D`);

  const spreadGiven = durationField(input, 'spread', false, bad);
  // A spread over half the interval would rotate keys far earlier than the policy asks for.
  if (spreadGiven !== null && interval !== null && (spreadGiven <= 0 || spreadGiven * 2 > interval)) {
    bad('spread', `${show(input.spread)} must be more than zero and at most half the interval (${formatDuration(Math.floor(interval / 2))})`);
  }

  const windows = windowsField(input.windows, bad);
  const blackouts = blackoutsField(input.blackouts, bad);

  const labels: string[] = [];
  if (input.labels !== undefined) {
    if (!Array.isArray(input.labels)) bad('labels', 'must be an array of labels');
    else
      input.labels.forEach((l: unknown, i) => {
        if (!isValidLabel(l)) bad(`labels[${i}]`, `${show(l)} is not a label: a lower-case word, or key=value (e.g. hipaa, tier=gold; a-z, 0-9, "_", ".", "-")`);
        else if (labels.includes(l)) bad(`labels[${i}]`, `"${l}" is listed twice`);
        else labels.push(l);
      });
    if (name === DEFAULT_POLICY_NAME && labels.length > 0) bad('labels', 'the default policy applies where nothing else does: it cannot be assigned by label');
  }
  for (const flag of ['exclude', 'autoRotate', 'allowAuthToken'] as const) {
    if (input[flag] !== undefined && typeof input[flag] !== 'boolean') bad(flag, `must be true or false (got ${show(input[flag])})`);
  }
  if (input.allowAuthToken === true && (input.exclude === true || input.autoRotate === false) && name !== DEFAULT_POLICY_NAME) {
    bad('allowAuthToken', 'allows scheduled Auth Token rotation, which a policy that is excluded or not auto-rotated never does: drop one of them');
  }
  if (input.allowAuthToken === true && name === DEFAULT_POLICY_NAME) {
    bad('allowAuthToken', 'the default policy applies to every credential nothing else claims: allow scheduled Auth Token rotation only in a named policy assigned on purpose');
  }
  if (input.description !== undefined && (typeof input.description !== 'string' || input.description.length > 200)) {
    bad('description', 'must be a string of at most 200 characters');
  }

  const consumerGate = consumerGateField(input.consumerGate, bad);

  // A spread is shared out in window time (spread × the share of the week the windows allow). An
  // explicit spread so short that it holds under an hour of window time would send every credential
  // due at one deadline within seconds of each other: refuse it, saying what would do.
  const share = allowedShare(windows);
  if (spreadGiven !== null && windows.length > 0 && errors.length === 0) {
    const floor = Math.min(HOUR_MS, share * WEEK_MS);
    if (spreadGiven * share < floor) {
      bad('spread', `${show(input.spread)} holds only ${formatDuration(Math.round((spreadGiven * share) / 1000) * 1000)} of window time (the windows allow ${formatDuration(Math.round((share * WEEK_MS) / 60_000) * 60_000)} a week): use at least ${formatDuration(Math.ceil(floor / share / HOUR_MS) * HOUR_MS)}`);
    }
  }

  if (errors.length > 0 || interval === null) return { ok: false, errors };
  const source = input as unknown as Policy;
  return {
    ok: true,
    value: {
      name: source.name,
      source,
      intervalMs: interval,
      maxKeyAgeMs: maxKeyAge,
      spreadMs: spreadGiven ?? Math.min(DEFAULT_SPREAD_MS, Math.floor(interval / 4)),
      windows,
      blackouts,
      labels,
      exclude: source.exclude === true,
      autoRotate: source.autoRotate !== false,
      allowAuthToken: source.allowAuthToken === true,
      allowedShare: share,
      consumerGate,
    },
  };
}

/** checkPolicy, throwing PolicyValidationError (code invalid_policy) on bad input. */
export function compilePolicy(input: unknown): CompiledPolicy {
  const r = checkPolicy(input);
  if (!r.ok) throw new PolicyValidationError(r.errors);
  return r.value;
}

// ---------------------------------------------------------------------------------------------
// Fields

type Report = (path: string, message: string) => void;

function durationField(obj: Record<string, unknown>, field: string, required: boolean, bad: Report): number | null {
  const v = obj[field];
  if (v === undefined) {
    if (required) bad(field, 'is required: an ISO 8601 duration such as P90D');
    return null;
  }
  const r = parseDuration(v);
  if (!r.ok) {
    bad(field, r.message);
    return null;
  }
  return r.ms;
}

function consumerGateField(input: unknown, bad: Report): ConsumerGatePolicy | null {
  if (input === undefined) return null;
  if (!isObject(input)) {
    bad('consumerGate', 'must be an object {minDrain?, maxWait, onMaxWait?}');
    return null;
  }
  unknownFields(input, CONSUMER_GATE_FIELDS, 'consumerGate.', bad);
  const report: Report = (path, message) => bad(`consumerGate.${path}`, message);
  const minDrain = durationField(input, 'minDrain', false, report);
  const maxWait = durationField(input, 'maxWait', true, report);
  const onMaxWait = input.onMaxWait ?? 'hold';
  if (onMaxWait !== 'hold' && onMaxWait !== 'promote') report('onMaxWait', `must be hold (keep the rotation waiting, naming the lagging consumers) or promote (got ${show(input.onMaxWait)})`);
  if (maxWait !== null && maxWait > MAX_CONSUMER_WAIT_MS) report('maxWait', `${show(input.maxWait)} is out of range: at most P30D`);
  const min = minDrain ?? DEFAULT_MIN_DRAIN_MS;
  if (maxWait !== null && min > maxWait) report(minDrain === null ? 'maxWait' : 'minDrain', `minDrain (${minDrain === null ? 'default PT30S' : show(input.minDrain)}) must not be longer than maxWait ${show(input.maxWait)}`);
  if (maxWait === null) return null;
  return { minDrainMs: min, maxWaitMs: maxWait, onMaxWait: onMaxWait === 'promote' ? 'promote' : 'hold' };
}

function windowsField(input: unknown, bad: Report): CompiledWindow[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) {
    bad('windows', 'must be an array of {days, hours, timeZone}');
    return [];
  }
  if (input.length === 0) bad('windows', 'is empty: leave it out to allow any time, or name at least one window');
  const out: CompiledWindow[] = [];
  const where: Array<{ path: string; ranges: Array<{ path: string; r: [number, number] }> }> = [];
  input.forEach((w: unknown, i) => {
    const path = `windows[${i}]`;
    if (!isObject(w)) return bad(path, 'must be an object {days, hours, timeZone}');
    unknownFields(w, WINDOW_FIELDS, `${path}.`, bad);
    let ok = true;

    let dayMask = 0;
    if (!Array.isArray(w.days) || w.days.length === 0) {
      bad(`${path}.days`, `must name at least one day (${WEEKDAYS.join(', ')})`);
      ok = false;
    } else {
      w.days.forEach((d: unknown, k) => {
        const idx = WEEKDAYS.indexOf(d as Weekday);
        if (idx < 0) {
          bad(`${path}.days[${k}]`, `${show(d)} is not a day: one of ${WEEKDAYS.join(', ')}`);
          ok = false;
          return;
        }
        const bit = 1 << ((idx + 1) % 7); // mon → 1 … sun → 0, as getUTCDay numbers them
        if (dayMask & bit) bad(`${path}.days[${k}]`, `"${String(d)}" is listed twice`);
        dayMask |= bit;
      });
    }

    if (typeof w.timeZone !== 'string' || !isValidTimeZone(w.timeZone)) {
      bad(`${path}.timeZone`, w.timeZone === undefined ? 'is required: an IANA time zone such as America/New_York or UTC' : `${show(w.timeZone)} is not a known IANA time zone (e.g. America/New_York, Europe/London, UTC)`);
      ok = false;
    }

    const list = Array.isArray(w.hours) ? (w.hours as unknown[]) : w.hours === undefined ? [] : [w.hours];
    const listed = Array.isArray(w.hours);
    if (list.length === 0) {
      bad(`${path}.hours`, 'must give at least one range {from: "HH:MM", to: "HH:MM"}');
      ok = false;
    }
    const ranges: Array<{ path: string; r: [number, number] }> = [];
    list.forEach((h, k) => {
      const hp = listed ? `${path}.hours[${k}]` : `${path}.hours`;
      if (!isObject(h)) {
        ok = false;
        return bad(hp, 'must be {from: "HH:MM", to: "HH:MM"}');
      }
      unknownFields(h, RANGE_FIELDS, `${hp}.`, bad);
      const from = minuteOfDay(h.from, false);
      const to = minuteOfDay(h.to, true);
      if (from === null) bad(`${hp}.from`, `${show(h.from)} is not a time of day HH:MM (00:00–23:59)`);
      if (to === null) bad(`${hp}.to`, `${show(h.to)} is not a time of day HH:MM (00:01–24:00)`);
      if (from === null || to === null) {
        ok = false;
        return;
      }
      if (from >= to) {
        ok = false;
        return bad(hp, `${String(h.from)}–${String(h.to)} is inverted or empty: from must be before to; a window across midnight is two ranges (…–24:00 on one day, 00:00–… on the next)`);
      }
      ranges.push({ path: hp, r: [from, to] });
    });
    // Overlapping ranges are almost always a typo (09:00–17:00 and 16:00–18:00 meant 17:00): refuse.
    const sorted = [...ranges].sort((a, b) => a.r[0] - b.r[0]);
    for (let k = 1; k < sorted.length; k++) {
      const a = sorted[k - 1] as (typeof sorted)[number];
      const b = sorted[k] as (typeof sorted)[number];
      if (b.r[0] < a.r[1]) {
        bad(b.path, `${hhmm(b.r[0])}–${hhmm(b.r[1])} overlaps ${a.path} (${hhmm(a.r[0])}–${hhmm(a.r[1])})`);
        ok = false;
      }
    }
    if (!ok) return;
    out.push({ timeZone: w.timeZone as string, dayMask, ranges: sorted.map((x) => x.r) });
    where.push({ path, ranges: sorted });
  });

  // Two windows in one zone that share a day and an hour: the same typo across windows. Windows in
  // different zones are not compared (whether they overlap changes with DST); their union is allowed.
  for (let i = 0; i < out.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = out[i] as CompiledWindow;
      const b = out[j] as CompiledWindow;
      const shared = a.dayMask & b.dayMask;
      if (a.timeZone !== b.timeZone || shared === 0) continue;
      const clash = firstOverlap(a.ranges, b.ranges);
      if (clash) {
        const day = WEEKDAYS[(Math.log2(shared & -shared) + 6) % 7];
        bad((where[i] as (typeof where)[number]).path, `overlaps ${(where[j] as (typeof where)[number]).path} on ${day} (${hhmm(clash[0])}–${hhmm(clash[1])} ${a.timeZone})`);
      }
    }
  }
  return out;
}

function blackoutsField(input: unknown, bad: Report): Array<[number, number]> {
  if (input === undefined) return [];
  if (!Array.isArray(input)) {
    bad('blackouts', 'must be an array of {from, to} ISO 8601 instants');
    return [];
  }
  const ok: Array<{ path: string; r: [number, number] }> = [];
  input.forEach((b: unknown, i) => {
    const path = `blackouts[${i}]`;
    if (!isObject(b)) return bad(path, 'must be an object {from, to, reason?}');
    unknownFields(b, BLACKOUT_FIELDS, `${path}.`, bad);
    const from = instant(b.from);
    const to = instant(b.to);
    const hint = 'an ISO 8601 instant with a date, a time and an offset, e.g. 2026-12-24T00:00:00Z or 2026-12-24T00:00-05:00';
    if (from === null) bad(`${path}.from`, `${show(b.from)} is not ${hint}`);
    if (to === null) bad(`${path}.to`, `${show(b.to)} is not ${hint}`);
    if (b.reason !== undefined && (typeof b.reason !== 'string' || b.reason.length > 200)) bad(`${path}.reason`, 'must be a string of at most 200 characters');
    if (from === null || to === null) return;
    if (from >= to) return bad(path, `from ${String(b.from)} is not before to ${String(b.to)}`);
    ok.push({ path, r: [from, to] });
  });
  ok.sort((a, b) => a.r[0] - b.r[0]);
  // Overlapping blackouts are harmless to the planner but usually a mistyped date: refuse, naming both.
  for (let k = 1; k < ok.length; k++) {
    const a = ok[k - 1] as (typeof ok)[number];
    const b = ok[k] as (typeof ok)[number];
    if (b.r[0] < a.r[1]) bad(b.path, `overlaps ${a.path}`);
  }
  return ok.map((x) => x.r);
}

/** Share of the week the windows allow: per zone the union of day × hour ranges; zones added, capped at 1. */
function allowedShare(windows: readonly CompiledWindow[]): number {
  if (windows.length === 0) return 1;
  const byZone = new Map<string, CompiledWindow[]>();
  for (const w of windows) byZone.set(w.timeZone, [...(byZone.get(w.timeZone) ?? []), w]);
  let minutes = 0;
  for (const ws of byZone.values()) {
    for (let day = 0; day < 7; day++) {
      const ranges = ws.filter((w) => w.dayMask & (1 << day)).flatMap((w) => w.ranges);
      minutes += unionLength(ranges);
    }
  }
  return Math.min(1, (minutes * MINUTE_MS) / WEEK_MS);
}

function unionLength(ranges: ReadonlyArray<readonly [number, number]>): number {
  const s = [...ranges].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -Infinity;
  for (const [a, b] of s) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return total;
}

function firstOverlap(a: ReadonlyArray<readonly [number, number]>, b: ReadonlyArray<readonly [number, number]>): [number, number] | null {
  for (const x of a) for (const y of b) if (x[0] < y[1] && y[0] < x[1]) return [Math.max(x[0], y[0]), Math.min(x[1], y[1])];
  return null;
}

function minuteOfDay(v: unknown, isEnd: boolean): number | null {
  if (typeof v !== 'string') return null;
  if (isEnd && v === '24:00') return 24 * 60;
  const m = HHMM.exec(v);
  if (!m) return null;
  return Number(m[1]) * 60 + Number(m[2]);
}

function hhmm(min: number): string {
  return `${String(Math.floor(min / 60)).padStart(2, '0')}:${String(min % 60).padStart(2, '0')}`;
}

/** An ISO 8601 instant with an explicit offset (a local time without one is ambiguous), or null. */
export function parseInstant(v: unknown): number | null {
  return instant(v);
}

function instant(v: unknown): number | null {
  if (typeof v !== 'string') return null;
  const m = INSTANT.exec(v);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const year = Number(y), month = Number(mo), day = Number(d), hour = Number(h), minute = Number(mi), sec = Number(s ?? 0);
  // Date.parse rolls 2026-02-30 over to March 2: check the calendar ourselves.
  if (month < 1 || month > 12 || day < 1 || day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return null;
  if (hour > 23 || minute > 59 || sec > 59) return null;
  let offsetMin = 0;
  if (zone !== 'Z') {
    const sign = zone?.startsWith('-') ? -1 : 1;
    const oh = Number(zone?.slice(1, 3)), om = Number(zone?.slice(4, 6));
    if (oh > 23 || om > 59) return null;
    offsetMin = sign * (oh * 60 + om);
  }
  const ms = Number((frac ?? '0').padEnd(3, '0'));
  return Date.UTC(year, month - 1, day, hour, minute, sec, ms) - offsetMin * MINUTE_MS;
}

function unknownFields(obj: Record<string, unknown>, known: ReadonlySet<string>, prefix: string, bad: Report): void {
  for (const k of Object.keys(obj)) if (!known.has(k)) bad(`${prefix}${k}`, `unknown field (expected one of ${[...known].join(', ')})`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 42 ? `${s.slice(0, 41)}…` : s;
}

// ---------------------------------------------------------------------------------------------
// Assignment

/** The policies in force, by name and by label. Always holds `default`. */
export class PolicyCatalog {
  readonly #byName = new Map<string, CompiledPolicy>();
  readonly #byLabel = new Map<string, CompiledPolicy[]>();

  constructor(policies: readonly CompiledPolicy[]) {
    for (const p of policies) {
      if (this.#byName.has(p.name)) throw new PolicyValidationError([{ path: 'name', message: `policy "${p.name}" is defined twice` }]);
      this.#byName.set(p.name, p);
      for (const l of p.labels) this.#byLabel.set(l, [...(this.#byLabel.get(l) ?? []), p]);
    }
    // Without a default, a credential that nothing assigns would have no deadline: never allow that.
    if (!this.#byName.has(DEFAULT_POLICY_NAME)) this.#byName.set(DEFAULT_POLICY_NAME, compilePolicy(DEFAULT_POLICIES[0]));
  }

  get(name: string): CompiledPolicy | undefined {
    return this.#byName.get(name);
  }

  list(): CompiledPolicy[] {
    return [...this.#byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The policies a label assigns. */
  forLabel(label: string): readonly CompiledPolicy[] {
    return this.#byLabel.get(label) ?? [];
  }
}

/** A catalog from written policies (DEFAULT_POLICIES when none are stored yet). Throws on bad input. */
export function policyCatalog(policies: readonly Policy[] = DEFAULT_POLICIES): PolicyCatalog {
  return new PolicyCatalog(policies.map(compilePolicy));
}

/** What decides a credential's policy. Overrides are policy names stored on the account or credential. */
export interface AssignmentSubject {
  /** `<accountSid>/<name>`. */
  credentialId: string;
  /** The subaccount's labels. */
  labels: readonly string[];
  accountPolicy?: string | null;
  credentialPolicy?: string | null;
}

export type AssignmentSource = 'credential override' | 'account override' | 'label' | 'default';

export interface Assignment {
  policy: CompiledPolicy;
  source: AssignmentSource;
  /** For people (GET /v1/accounts/{sid}): e.g. `label hipaa (policy hipaa)`. */
  reason: string;
}

/**
 * Which policy applies, and why. The most specific wins: a per-credential override, then a
 * per-account override, then the subaccount's labels, then `default`.
 *
 * An override that names a policy that no longer exists is skipped (and the reason says so) rather
 * than failing: the planner must keep every credential on some deadline, and the stricter of the
 * remaining rules is the safe fallback. The API refuses such names when they are set.
 */
export function resolvePolicy(subject: AssignmentSubject, catalog: PolicyCatalog): Assignment {
  const notes: string[] = [];
  const overrides: Array<[AssignmentSource, string | null | undefined]> = [
    ['credential override', subject.credentialPolicy],
    ['account override', subject.accountPolicy],
  ];
  for (const [source, name] of overrides) {
    if (!name) continue;
    const policy = catalog.get(name);
    if (policy) return { policy, source, reason: [...notes, `${source} (policy ${name})`].join('; ') };
    notes.push(`${source} names policy "${name}", which does not exist (ignored)`);
  }

  const matches: Array<{ label: string; policy: CompiledPolicy }> = [];
  for (const label of [...new Set(subject.labels)].sort()) for (const policy of catalog.forLabel(label)) matches.push({ label, policy });
  if (matches.length > 0) {
    const [first, ...others] = [...matches].sort((a, b) => stricterFirst(a.policy, b.policy) || a.label.localeCompare(b.label));
    const win = first as (typeof matches)[number];
    let reason = `label ${win.label} (policy ${win.policy.name})`;
    const losers = others.filter((m) => m.policy.name !== win.policy.name);
    if (losers.length > 0) {
      reason += `; also matched ${losers.map((m) => `label ${m.label} (policy ${m.policy.name}, ${describeStrictness(m.policy)})`).join(', ')}: the stricter policy wins`;
    }
    return { policy: win.policy, source: 'label', reason: [...notes, reason].join('; ') };
  }
  const policy = catalog.get(DEFAULT_POLICY_NAME) as CompiledPolicy;
  return { policy, source: 'default', reason: [...notes, 'default'].join('; ') };
}

/**
 * Tie-break when labels assign different policies: the stricter wins, because a credential that is
 * rotated too often costs a little Twilio traffic while one rotated too rarely fails an audit. In
 * order: a policy that rotates on schedule beats one that excludes or only tracks (a label cannot
 * switch off rotation that another label requires); then the shorter interval; then the shorter
 * maximum key age (none counts as infinite); then the name, so the answer never depends on the
 * order labels or policies were stored in.
 */
export function stricterFirst(a: CompiledPolicy, b: CompiledPolicy): number {
  const rank = (p: CompiledPolicy): number => (p.exclude ? 2 : p.autoRotate ? 0 : 1);
  return (
    rank(a) - rank(b) ||
    a.intervalMs - b.intervalMs ||
    compare(a.maxKeyAgeMs ?? Infinity, b.maxKeyAgeMs ?? Infinity) ||
    a.name.localeCompare(b.name)
  );
}

function compare(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function describeStrictness(p: CompiledPolicy): string {
  if (p.exclude) return 'excluded';
  return `${p.source.interval}${p.autoRotate ? '' : ', not rotated automatically'}`;
}
