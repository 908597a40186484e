/**
 * Batches (issue 13, item 5): rotating a selection of managed credentials in waves — a canary
 * first, then steps — halting when a wave fails too often. Pure: no I/O, no clock of its own
 * (every time is epoch ms passed in).
 *
 * The state is one plain JSON object (`BatchState`) so it can live in Redis and be changed by a
 * script or under optimistic concurrency (`rev` grows by one on every change; a transition that
 * changes nothing returns the very same object). Transitions touch `items` only for the
 * credentials they name, or, for `decide`/`inFlightRotations`, the current wave's: a store that
 * keeps items in a hash may pass a state whose `items` holds just those.
 *
 * A run: `createBatch` (planned) → `decide` (running; returns what to start) → `claimStarts`
 * (before starting the rotations) → `recordOutcomes` → the wave ends → baking for bakeSeconds →
 * `decide` starts the next wave … → completed. Halted, cancelled and paused batches start nothing
 * new; rotations already in flight always run to their end (finish or undo, as the rotation
 * itself decides) and are still recorded.
 */
import { credentialId, isCredentialName, LABEL, type Checked, type CredentialRef, type FieldError } from './credential.ts';

export { credentialId, describeFieldErrors, parseCredentialId, type Checked, type CredentialRef, type FieldError } from './credential.ts';
import { CREDENTIAL_KINDS, type CredentialKind } from './credential.ts';
import { ACCOUNT_SID } from './rotation.ts';

// ---------------------------------------------------------------------------------------------
// The request


export type BatchSelector = 'all' | { labels: string[] } | { accountSids: string[] } | { credentials: CredentialRef[] } | { filter: BatchFilter };

/**
 * The fleet view's filters as a selector (the dashboard's "rotate these N"): GET /v1/credentials's
 * query parameters of the same names select the same credentials (service/fleet-filter.ts).
 */
export interface BatchFilter {
  q?: string;
  accountSid?: string;
  label?: string;
  policy?: string;
  overdue?: boolean;
  failed?: boolean;
}
const FILTER_FIELDS = ['q', 'accountSid', 'label', 'policy', 'overdue', 'failed'] as const;

function parseFilter(v: unknown, errors: FieldError[]): { filter: BatchFilter } | null {
  const before = errors.length;
  if (!isObject(v)) {
    errors.push({ path: 'selector.filter', message: `must be an object of GET /v1/credentials filters (${FILTER_FIELDS.join(', ')}), not ${describe(v)}` });
    return null;
  }
  unknownFields(v, FILTER_FIELDS, 'selector.filter', errors);
  const filter: BatchFilter = {};
  for (const k of ['q', 'accountSid', 'label', 'policy'] as const) {
    const x = v[k];
    if (x === undefined) continue;
    if (typeof x !== 'string' || x.length === 0 || x.length > 127) errors.push({ path: `selector.filter.${k}`, message: `must be a non-empty string of at most 127 characters, not ${describe(x)}` });
    else filter[k] = x;
  }
  if (filter.accountSid !== undefined && !ACCOUNT_SID.test(filter.accountSid)) errors.push({ path: 'selector.filter.accountSid', message: `must be an Account SID ("AC" and 32 lower-case hex digits), not ${describe(filter.accountSid)}` });
  for (const k of ['overdue', 'failed'] as const) {
    const x = v[k];
    if (x === undefined) continue;
    if (typeof x !== 'boolean') errors.push({ path: `selector.filter.${k}`, message: `must be true or false, not ${describe(x)}` });
    else filter[k] = x;
  }
  return errors.length === before ? { filter } : null;
}

/**
 * The canary: a number of credentials (`5`) or a share of the selection (`"10%"`), the int-or-string
 * convention of Kubernetes' `maxUnavailable`, so neither reading of a bare number is ever guessed.
 */
export type CanarySpec = number | `${number}%`;

export interface WaveSpec {
  canary: CanarySpec;
  /** Each wave after the canary: this percentage (whole number, 1..100) of the whole selection. */
  step: number;
  /** How long a finished wave is watched before the next one starts. */
  bakeSeconds: number;
}

export interface BatchRequest {
  selector: BatchSelector;
  /** Only credentials of these kinds (api-key, restricted-key, auth-token); absent: every kind. */
  kinds?: CredentialKind[];
  reason: string;
  dryRun: boolean;
  waves: WaveSpec;
  /** 0..1: a wave whose failure rate goes above it halts the batch. */
  maxFailureRate: number;
}

export const MAX_REASON_LENGTH = 500;
/** Longer explicit lists are a mistake or an attack: larger fleets are chosen by label or `all`. */
export const MAX_SELECTOR_ITEMS = 10_000;
/** A week: a larger bake is almost certainly milliseconds typed where seconds were meant. */
export const MAX_BAKE_SECONDS = 604_800;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `"${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function unknownFields(obj: Json, allowed: readonly string[], at: string, errors: FieldError[]): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) errors.push({ path: join(at, key), message: `unknown field (allowed: ${allowed.join(', ')})` });
  }
}

function join(at: string, key: string): string {
  return at ? `${at}.${key}` : key;
}

/**
 * Checks a `POST /v1/batches` body. Everything that can be known without the fleet; what needs the
 * selection (a canary larger than it, a selector matching nothing) is `planWaves`' and
 * `selectCredentials`' to say.
 */
export function parseBatchRequest(input: unknown): Checked<BatchRequest> {
  const errors: FieldError[] = [];
  if (!isObject(input)) return { ok: false, errors: [{ path: '(body)', message: `must be a JSON object, not ${describe(input)}` }] };
  unknownFields(input, ['selector', 'kinds', 'reason', 'dryRun', 'waves', 'maxFailureRate'], '', errors);

  const selector = parseSelector(input.selector, errors);
  let kinds: CredentialKind[] | undefined;
  if (input.kinds !== undefined) {
    if (!Array.isArray(input.kinds) || input.kinds.length === 0) errors.push({ path: 'kinds', message: `must be a non-empty list of ${CREDENTIAL_KINDS.join(', ')}, not ${describe(input.kinds)}` });
    else {
      input.kinds.forEach((k: unknown, i) => {
        if (!(CREDENTIAL_KINDS as readonly unknown[]).includes(k)) errors.push({ path: `kinds[${i}]`, message: `must be one of ${CREDENTIAL_KINDS.join(', ')}, not ${describe(k)}` });
      });
      kinds = [...new Set(input.kinds as CredentialKind[])];
    }
  }

  let reason = '';
  if (typeof input.reason !== 'string') errors.push({ path: 'reason', message: input.reason === undefined ? 'is required: say why (it goes into the audit trail)' : `must be a string, not ${describe(input.reason)}` });
  else if (input.reason.trim() === '') errors.push({ path: 'reason', message: 'must not be empty: say why (it goes into the audit trail)' });
  else if (input.reason.length > MAX_REASON_LENGTH) errors.push({ path: 'reason', message: `must be at most ${MAX_REASON_LENGTH} characters (is ${input.reason.length})` });
  // eslint-disable-next-line no-control-regex
  else if (/[\u0000-\u001f\u007f]/.test(input.reason)) errors.push({ path: 'reason', message: 'must not contain control characters (line breaks, tabs, …)' });
  else reason = input.reason;

  let dryRun = false;
  if (input.dryRun !== undefined) {
    if (typeof input.dryRun !== 'boolean') errors.push({ path: 'dryRun', message: `must be true or false, not ${describe(input.dryRun)}` });
    else dryRun = input.dryRun;
  }

  const waves = parseWaveSpec(input.waves, errors);

  let maxFailureRate = 0;
  const rate = input.maxFailureRate;
  if (rate === undefined) errors.push({ path: 'maxFailureRate', message: 'is required: the share of a wave (0..1) that may fail before the batch halts' });
  else if (typeof rate !== 'number' || !Number.isFinite(rate)) errors.push({ path: 'maxFailureRate', message: `must be a number from 0 to 1, not ${describe(rate)}` });
  else if (rate < 0 || rate > 1) errors.push({ path: 'maxFailureRate', message: `must be from 0 to 1 (a share, not a percentage), not ${rate}` });
  else maxFailureRate = rate;

  if (errors.length > 0 || !selector || !waves) return { ok: false, errors };
  return { ok: true, value: { selector, ...(kinds ? { kinds } : {}), reason, dryRun, waves, maxFailureRate } };
}

const SELECTOR_KINDS = ['labels', 'accountSids', 'credentials', 'filter'] as const;

function parseSelector(v: unknown, errors: FieldError[]): BatchSelector | null {
  const before = errors.length;
  const shape = 'must be "all" or an object with exactly one of labels, accountSids, credentials';
  if (v === undefined) {
    errors.push({ path: 'selector', message: 'is required: "all" or an object with exactly one of labels, accountSids, credentials' });
    return null;
  }
  if (v === 'all') return 'all';
  if (!isObject(v)) {
    errors.push({ path: 'selector', message: `${shape}, not ${describe(v)}` });
    return null;
  }
  unknownFields(v, SELECTOR_KINDS, 'selector', errors);
  const given = SELECTOR_KINDS.filter((k) => v[k] !== undefined);
  if (given.length !== 1) {
    errors.push({ path: 'selector', message: given.length === 0 ? shape : `has ${given.join(' and ')}: give exactly one` });
    return null;
  }
  const kind = given[0]!;
  if (kind === 'filter') return parseFilter(v.filter, errors);
  const path = `selector.${kind}`;
  const list = v[kind];
  if (!Array.isArray(list)) {
    errors.push({ path, message: `must be a list, not ${describe(list)}` });
    return null;
  }
  if (list.length === 0) {
    errors.push({ path, message: 'must not be empty' });
    return null;
  }
  if (list.length > MAX_SELECTOR_ITEMS) {
    errors.push({ path, message: `has ${list.length} items; at most ${MAX_SELECTOR_ITEMS} (select larger sets by label or "all")` });
    return null;
  }
  const seen = new Map<string, number>();
  const dup = (key: string, i: number): void => {
    const first = seen.get(key);
    if (first !== undefined) errors.push({ path: `${path}[${i}]`, message: `repeats ${path}[${first}]` });
    else seen.set(key, i);
  };
  list.forEach((item: unknown, i) => {
    const at = `${path}[${i}]`;
    if (kind === 'labels') {
      if (typeof item !== 'string' || !LABEL.test(item)) errors.push({ path: at, message: `must be a label such as "hipaa" or "tier=gold" (lower case, digits, "_", ".", "-"), not ${describe(item)}` });
      else dup(item, i);
    } else if (kind === 'accountSids') {
      if (typeof item !== 'string' || !ACCOUNT_SID.test(item)) errors.push({ path: at, message: `must be an Account SID ("AC" and 32 lower-case hex digits), not ${describe(item)}` });
      else dup(item, i);
    } else {
      if (!isObject(item)) {
        errors.push({ path: at, message: `must be an object {accountSid, name}, not ${describe(item)}` });
        return;
      }
      const n = errors.length;
      unknownFields(item, ['accountSid', 'name'], at, errors);
      if (typeof item.accountSid !== 'string' || !ACCOUNT_SID.test(item.accountSid)) errors.push({ path: `${at}.accountSid`, message: `must be an Account SID ("AC" and 32 lower-case hex digits), not ${describe(item.accountSid)}` });
      if (typeof item.name !== 'string' || !isCredentialName(item.name)) errors.push({ path: `${at}.name`, message: `must be a credential name (1–63 of a-z, 0-9, "_", "-", starting with a letter or digit), not ${describe(item.name)}` });
      if (errors.length === n) dup(credentialId(item as unknown as CredentialRef), i);
    }
  });
  if (errors.length > before) return null;
  if (kind === 'labels') return { labels: list as string[] };
  if (kind === 'accountSids') return { accountSids: list as string[] };
  return { credentials: (list as CredentialRef[]).map((c) => ({ accountSid: c.accountSid, name: c.name })) };
}

function parseWaveSpec(v: unknown, errors: FieldError[]): WaveSpec | null {
  if (!isObject(v)) {
    errors.push({ path: 'waves', message: v === undefined ? 'is required: {canary, step, bakeSeconds}' : `must be an object {canary, step, bakeSeconds}, not ${describe(v)}` });
    return null;
  }
  const before = errors.length;
  unknownFields(v, ['canary', 'step', 'bakeSeconds'], 'waves', errors);

  const canary = v.canary;
  const canaryShape = 'a number of credentials (e.g. 5) or a percentage of the selection (e.g. "10%")';
  if (canary === undefined) errors.push({ path: 'waves.canary', message: `is required: ${canaryShape}` });
  else if (typeof canary === 'number') {
    if (!Number.isInteger(canary)) errors.push({ path: 'waves.canary', message: `must be a whole number of credentials, not ${canary}` });
    else if (canary < 1) errors.push({ path: 'waves.canary', message: `must be at least 1 credential, not ${canary}: a batch starts with a canary` });
  } else if (typeof canary === 'string') {
    const m = /^(\d{1,3})%$/.exec(canary);
    const pct = m ? Number(m[1]) : NaN;
    if (!m) errors.push({ path: 'waves.canary', message: `must be ${canaryShape}, not ${describe(canary)}` });
    else if (pct < 1 || pct > 100) errors.push({ path: 'waves.canary', message: `must be from 1% to 100%, not ${canary}` });
  } else errors.push({ path: 'waves.canary', message: `must be ${canaryShape}, not ${describe(canary)}` });

  const step = v.step;
  if (step === undefined) errors.push({ path: 'waves.step', message: 'is required: the percentage of the selection each wave after the canary rotates (1..100)' });
  else if (typeof step !== 'number' || !Number.isInteger(step)) errors.push({ path: 'waves.step', message: `must be a whole percentage from 1 to 100, not ${describe(step)}` });
  else if (step <= 0 || step > 100) errors.push({ path: 'waves.step', message: `must be from 1 to 100 (percent of the selection), not ${step}` });

  const bake = v.bakeSeconds;
  if (bake === undefined) errors.push({ path: 'waves.bakeSeconds', message: 'is required: seconds to watch a finished wave before the next starts (0 for none)' });
  else if (typeof bake !== 'number' || !Number.isInteger(bake)) errors.push({ path: 'waves.bakeSeconds', message: `must be a whole number of seconds, not ${describe(bake)}` });
  else if (bake < 0) errors.push({ path: 'waves.bakeSeconds', message: `must not be negative, not ${bake}` });
  else if (bake > MAX_BAKE_SECONDS) errors.push({ path: 'waves.bakeSeconds', message: `must be at most ${MAX_BAKE_SECONDS} (a week), not ${bake}: is it in milliseconds?` });

  if (errors.length > before) return null;
  return { canary: canary as CanarySpec, step: step as number, bakeSeconds: bake as number };
}

// ---------------------------------------------------------------------------------------------
// Selection and the wave plan

/** What the selection needs to know of each managed credential. */
export interface FleetCredential {
  accountSid: string;
  name: string;
  /** The labels that apply to the credential (its subaccount's). */
  labels: readonly string[];
  /** Twilio's status of the subaccount: active, suspended, closed. */
  subaccountStatus: string;
  /** Paused (per account or credential): a batch leaves it alone, as the planner does. */
  paused?: boolean;
  kind?: CredentialKind;
  /** The policy that applies allows scheduled and batch Auth Token rotation (policy allowAuthToken). */
  allowAuthToken?: boolean;
}

export interface Selection {
  /** In plan order (`orderCredentials`). */
  ids: string[];
  /** Credentials that `all` or a label matched but that cannot be rotated, counted by why. */
  leftOut: Record<string, number>;
}

/**
 * Why a credential cannot be rotated by a batch now, or null. Only active subaccounts: Twilio
 * answers 20003 for every request of a suspended or closed one, so their rotations would only fail
 * and trip the halt rule for a reason that says nothing about the rotation.
 */
export function notRotatable(c: FleetCredential): string | null {
  if (c.subaccountStatus !== 'active') return `subaccount ${c.subaccountStatus}`;
  if (c.paused) return 'paused';
  // The most guarded operation (domain/auth-token.ts): a batch rotates an Auth Token only where its policy allows.
  if (c.kind === 'auth-token' && !c.allowAuthToken) return 'auth token not allowed by policy';
  return null;
}

/**
 * The credentials a selector names. `all` and `labels` (every listed label must apply) quietly
 * leave out what cannot be rotated and count it; an explicit list that names such a credential,
 * or one that is not managed, is an error naming the item, since the operator asked for it.
 */
export function selectCredentials(selector: BatchSelector, all: Iterable<FleetCredential>, kinds?: readonly CredentialKind[]): Checked<Selection> {
  // A kind filter narrows the fleet before the selector applies, as labels do.
  const fleet = kinds ? [...all].filter((c) => kinds.includes(c.kind ?? 'api-key')) : all;
  const errors: FieldError[] = [];
  const ids: string[] = [];
  const leftOut: Record<string, number> = {};
  const leave = (why: string): void => {
    leftOut[why] = (leftOut[why] ?? 0) + 1;
  };

  // A filter was applied to the fleet by the caller (service/batches.ts): what is left is all of it.
  if (selector === 'all' || 'labels' in selector || 'filter' in selector) {
    const wanted = selector === 'all' || 'filter' in selector ? [] : selector.labels;
    for (const c of fleet) {
      if (!wanted.every((l) => c.labels.includes(l))) continue;
      const why = notRotatable(c);
      if (why) leave(why);
      else ids.push(credentialId(c));
    }
    if (ids.length === 0) {
      const path = selector === 'all' ? 'selector' : 'filter' in selector ? 'selector.filter' : 'selector.labels';
      const out = Object.entries(leftOut).map(([why, n]) => `${n} ${why}`).join(', ');
      errors.push({ path, message: `matches no credential that can be rotated${out ? ` (matched but left out: ${out})` : ''}` });
    }
  } else if ('accountSids' in selector) {
    const bySub = new Map<string, FleetCredential[]>();
    for (const c of fleet) {
      const list = bySub.get(c.accountSid);
      if (list) list.push(c);
      else bySub.set(c.accountSid, [c]);
    }
    selector.accountSids.forEach((sid, i) => {
      const creds = bySub.get(sid);
      if (!creds) return errors.push({ path: `selector.accountSids[${i}]`, message: `${sid} is not a managed subaccount` });
      const subWhy = creds[0]!.subaccountStatus !== 'active' ? `subaccount ${creds[0]!.subaccountStatus}` : null;
      if (subWhy) return errors.push({ path: `selector.accountSids[${i}]`, message: `${sid} cannot be rotated: ${subWhy}` });
      const before = ids.length;
      for (const c of creds) {
        const why = notRotatable(c);
        if (why) leave(why);
        else ids.push(credentialId(c));
      }
      if (ids.length === before) errors.push({ path: `selector.accountSids[${i}]`, message: `${sid} has no credential that can be rotated (all paused)` });
    });
  } else {
    const byId = new Map<string, FleetCredential>();
    for (const c of fleet) byId.set(credentialId(c), c);
    selector.credentials.forEach((ref, i) => {
      const id = credentialId(ref);
      const c = byId.get(id);
      if (!c) return errors.push({ path: `selector.credentials[${i}]`, message: `${id} is not a managed credential` });
      const why = notRotatable(c);
      if (why) return errors.push({ path: `selector.credentials[${i}]`, message: `${id} cannot be rotated: ${why}` });
      ids.push(id);
    });
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, value: { ids: orderCredentials(ids), leftOut } };
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The order credentials are rotated in: ascending credential id (`AC…/name`) in code-unit order,
 * duplicates dropped. It depends on nothing but the set (not on the order the fleet was read in,
 * nor on the locale), so a re-planned batch gets the same waves; Account SIDs are random hex, so
 * the canary is an arbitrary sample of the fleet, and one subaccount's credentials sit together.
 */
export function orderCredentials(ids: Iterable<string>): string[] {
  return [...new Set(ids)].sort(compareCodeUnits);
}

/** Integer ceil(percent × total / 100), exact (no floating point) for any fleet size. */
function percentOf(percent: number, total: number): number {
  return Math.floor((percent * total + 99) / 100);
}

/** The canary's size for a selection of `total`: a count as given; a percentage rounded up, so never 0. */
export function canarySize(canary: CanarySpec, total: number): number {
  return typeof canary === 'number' ? canary : percentOf(Number(canary.slice(0, -1)), total);
}

/** Each later wave: step% of the whole selection, rounded up (so at least 1 and the plan always ends). */
export function stepSize(step: number, total: number): number {
  return Math.max(1, percentOf(step, total));
}

/**
 * The waves' sizes for `total` selected credentials: the canary first, then waves of step% of the
 * total (as CodeDeploy's Linear10Percent… counts it: of the whole, not of what is left), the last
 * wave taking the remainder (it may be smaller than a step, never larger). The sizes partition the
 * plan order: wave k is the next `sizes[k]` credentials.
 */
export function planWaves(total: number, spec: Pick<WaveSpec, 'canary' | 'step'>): Checked<number[]> {
  if (!Number.isInteger(total) || total < 1) return { ok: false, errors: [{ path: 'selector', message: 'matches no credential: a batch needs at least one' }] };
  const canary = canarySize(spec.canary, total);
  if (canary > total) {
    return { ok: false, errors: [{ path: 'waves.canary', message: `${canary} is more than the ${total} selected credential${total === 1 ? '' : 's'}` }] };
  }
  const step = stepSize(spec.step, total);
  const sizes = [canary];
  for (let left = total - canary; left > 0; left -= step) sizes.push(Math.min(step, left));
  return { ok: true, value: sizes };
}

// ---------------------------------------------------------------------------------------------
// The batch record and its state machine

/**
 * planned: created, nothing started · running: the current wave's rotations are being started or
 * are in flight · baking: the current wave ended, the next waits out bakeSeconds · paused: an
 * operator stopped new starts · halted: a wave failed too often (final) · cancelled: an operator
 * stopped the batch (final) · completed: every wave ended within the failure threshold (final).
 */
export const BATCH_STATUSES = ['planned', 'running', 'baking', 'paused', 'halted', 'cancelled', 'completed'] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];

/** Statuses from which nothing new ever starts. */
export const STOPPED: ReadonlySet<BatchStatus> = new Set(['halted', 'cancelled', 'completed']);

/** How a credential's part in the batch ended; `skipped` was never started. */
export type ItemOutcome = 'succeeded' | 'failed' | 'cancelled' | 'skipped';

export interface BatchItem {
  /** Index into `waves`. */
  wave: number;
  /** The rotation started for it; null when skipped. */
  rotationId: string | null;
  startedAt: number | null;
  /** null while the rotation is in flight. */
  outcome: ItemOutcome | null;
  endedAt: number | null;
  detail?: string;
}

export interface WaveProgress {
  /** 0 is the canary. */
  index: number;
  /** Its credentials are `credentials.slice(offset, offset + size)`. */
  offset: number;
  size: number;
  started: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  skipped: number;
  startedAt: number | null;
  endedAt: number | null;
  /** endedAt + bakeSeconds: the next wave may start from then. */
  bakeUntil: number | null;
}

export interface BatchHalt {
  wave: number;
  failed: number;
  /** The rotations the rate is taken over: the wave's size less cancelled and skipped ones. */
  counted: number;
  /** How many of the wave had finished when the halt was decided. */
  finished: number;
  rate: number;
  maxFailureRate: number;
  at: number;
  reason: string;
}

export interface BatchCancel {
  at: number;
  by: string | null;
  /** Rotations in flight at the cancel: they run to their end and are still recorded. */
  inFlight: number;
  /** Credentials the batch will now never start. */
  notStarted: number;
}

export type BatchEventType = 'planned' | 'started' | 'wave-started' | 'wave-ended' | 'baking' | 'halted' | 'paused' | 'resumed' | 'cancelled' | 'completed' | 'settled';

/** A batch-level change, for `/v1/events`, the audit trail and the record's own history. */
export interface BatchEvent {
  at: number;
  type: BatchEventType;
  wave?: number;
  by?: string | null;
  detail: string;
}

export interface BatchState {
  schema: 1;
  id: string;
  reason: string;
  dryRun: boolean;
  requestedBy: string | null;
  selector: BatchSelector;
  waveSpec: WaveSpec;
  maxFailureRate: number;
  status: BatchStatus;
  /** Every selected credential id, in plan order. */
  credentials: string[];
  waves: WaveProgress[];
  /** Index of the wave being run or baked (the last one once completed). */
  current: number;
  /** By credential id: only credentials that were started or skipped. */
  items: Record<string, BatchItem>;
  pause: { at: number; by: string | null; from: BatchStatus } | null;
  halt: BatchHalt | null;
  cancel: BatchCancel | null;
  createdAt: number;
  updatedAt: number;
  /** When the batch stopped for good with nothing left in flight. */
  finishedAt: number | null;
  history: BatchEvent[];
  rev: number;
}

export const MAX_BATCH_HISTORY = 100;

export interface Transition {
  /** The same object as the input when nothing changed. */
  state: BatchState;
  events: BatchEvent[];
}

/** A wave's label in messages: people count from 1. */
export function waveName(s: Pick<BatchState, 'waves'>, index: number): string {
  return index === 0 ? `wave 1 of ${s.waves.length} (canary)` : `wave ${index + 1} of ${s.waves.length}`;
}

export function inFlightCount(w: WaveProgress): number {
  return w.started - w.succeeded - w.failed - w.cancelled;
}

/** A wave has ended when every credential in it has an outcome. */
export function waveEnded(w: WaveProgress): boolean {
  return w.succeeded + w.failed + w.cancelled + w.skipped === w.size;
}

/**
 * The halt rule. A wave's failure rate is failed / (size − cancelled − skipped): rotations an
 * operator cancelled or that never started say nothing about whether rotating works. Halt when it
 * goes above maxFailureRate (strictly: 0 halts on the first failure, 1 never halts). It is decided
 * as soon as it is certain, before the wave ends: failures only grow and the denominator only
 * shrinks, so a rate already above the threshold with the full denominator stays above it.
 */
export function waveFailure(w: WaveProgress, maxFailureRate: number): { failed: number; counted: number; rate: number; exceeded: boolean } {
  const counted = w.size - w.cancelled - w.skipped;
  const rate = counted > 0 ? w.failed / counted : 0;
  return { failed: w.failed, counted, rate, exceeded: rate > maxFailureRate };
}

/**
 * How a finished rotation counts for its batch. An operator's rollback counts as a failure: it
 * says the new key was bad, which is what the halt rule watches for; a cancel does not.
 */
export function outcomeOfRotation(status: string): Exclude<ItemOutcome, 'skipped'> | null {
  switch (status) {
    case 'succeeded':
      return 'succeeded';
    case 'failed':
    case 'rolled_back':
      return 'failed';
    case 'cancelled':
      return 'cancelled';
    default:
      return null;
  }
}

export interface NewBatch {
  id: string;
  request: BatchRequest;
  /** The selected credential ids (`selectCredentials`); ordered here. */
  credentials: Iterable<string>;
  at: number;
  by?: string | null;
}

/** A planned batch, or the errors of a selection the waves cannot be planned on. */
export function createBatch(input: NewBatch): Checked<BatchState> {
  const credentials = orderCredentials(input.credentials);
  const planned = planWaves(credentials.length, input.request.waves);
  if (!planned.ok) return planned;
  let offset = 0;
  const waves = planned.value.map((size, index): WaveProgress => {
    const w = { index, offset, size, started: 0, succeeded: 0, failed: 0, cancelled: 0, skipped: 0, startedAt: null, endedAt: null, bakeUntil: null };
    offset += size;
    return w;
  });
  const { request: r, at } = input;
  const event: BatchEvent = { at, type: 'planned', by: input.by ?? null, detail: `${credentials.length} credential${credentials.length === 1 ? '' : 's'} in ${waves.length} wave${waves.length === 1 ? '' : 's'} (${planned.value.join(', ')})${r.dryRun ? ', dry run' : ''}` };
  return {
    ok: true,
    value: {
      schema: 1,
      id: input.id,
      reason: r.reason,
      dryRun: r.dryRun,
      requestedBy: input.by ?? null,
      selector: r.selector,
      waveSpec: { ...r.waves },
      maxFailureRate: r.maxFailureRate,
      status: 'planned',
      credentials,
      waves,
      current: 0,
      items: {},
      pause: null,
      halt: null,
      cancel: null,
      createdAt: at,
      updatedAt: at,
      finishedAt: null,
      history: [event],
      rev: 0,
    },
  };
}

interface Draft {
  prev: BatchState;
  s: BatchState;
  events: BatchEvent[];
  changed: boolean;
  itemsCopied: boolean;
}

function draft(prev: BatchState): Draft {
  return { prev, s: { ...prev, waves: prev.waves.map((w) => ({ ...w })) }, events: [], changed: false, itemsCopied: false };
}

function setItem(d: Draft, id: string, item: BatchItem): void {
  if (!d.itemsCopied) {
    d.s.items = { ...d.s.items };
    d.itemsCopied = true;
  }
  d.s.items[id] = item;
  d.changed = true;
}

function emit(d: Draft, event: BatchEvent): void {
  d.events.push(event);
  d.changed = true;
}

function commit(d: Draft, at: number): Transition {
  if (!d.changed) return { state: d.prev, events: [] };
  const s = d.s;
  s.rev = d.prev.rev + 1;
  s.updatedAt = at;
  if (d.events.length > 0) {
    const all = [...d.prev.history, ...d.events];
    // Keep the first entry (what was planned) and the most recent ones.
    s.history = all.length > MAX_BATCH_HISTORY ? [all[0]!, ...all.slice(all.length - MAX_BATCH_HISTORY + 1)] : all;
  }
  return { state: s, events: d.events };
}

function inFlightTotal(s: BatchState): number {
  // Only the current wave can have rotations in flight: a wave starts after the one before ended.
  const w = s.waves[s.current];
  return w ? inFlightCount(w) : 0;
}

/**
 * Everything that follows from the counters and the clock, applied until nothing more changes:
 * a wave whose credentials all have outcomes ends (the bake starts then); the halt rule; after
 * the bake the next wave starts (the same call, when bakeSeconds is 0); after the last, completed;
 * a stopped batch with nothing left in flight is finished.
 */
function settle(d: Draft, at: number): void {
  const s = d.s;
  for (;;) {
    if (s.status === 'planned') break;
    const w = s.waves[s.current]!;
    if (w.endedAt === null && waveEnded(w)) {
      w.endedAt = at;
      const last = s.current === s.waves.length - 1;
      w.bakeUntil = last ? at : at + s.waveSpec.bakeSeconds * 1000;
      emit(d, { at, type: 'wave-ended', wave: w.index, detail: `${waveName(s, w.index)} ended: ${w.succeeded} succeeded, ${w.failed} failed, ${w.cancelled} cancelled, ${w.skipped} skipped` });
    }
    if (s.status !== 'halted' && s.status !== 'cancelled' && s.status !== 'completed') {
      const f = waveFailure(w, s.maxFailureRate);
      if (f.exceeded) {
        const finished = w.succeeded + w.failed + w.cancelled + w.skipped;
        const pct = (x: number): string => `${Number((x * 100).toFixed(1))}%`;
        const reason =
          `${waveName(s, w.index)}: ${f.failed} of ${f.counted} rotations failed (${pct(f.rate)}), above maxFailureRate ${s.maxFailureRate} (${pct(s.maxFailureRate)})` +
          (w.cancelled + w.skipped > 0 ? `; ${w.cancelled + w.skipped} cancelled or skipped not counted` : '') +
          (finished < w.size ? `; decided with ${finished} of ${w.size} finished` : '');
        s.halt = { wave: w.index, failed: f.failed, counted: f.counted, finished, rate: f.rate, maxFailureRate: s.maxFailureRate, at, reason };
        s.status = 'halted';
        s.pause = null;
        emit(d, { at, type: 'halted', wave: w.index, detail: reason });
      }
    }
    if (s.status !== 'running' && s.status !== 'baking') break;
    if (w.endedAt === null) break;
    if (s.current === s.waves.length - 1) {
      s.status = 'completed';
      emit(d, { at, type: 'completed', detail: `all ${s.waves.length} waves ended within maxFailureRate ${s.maxFailureRate}` });
      break;
    }
    if (at < w.bakeUntil!) {
      if (s.status !== 'baking') {
        s.status = 'baking';
        emit(d, { at, type: 'baking', wave: w.index, detail: `${waveName(s, w.index + 1)} starts after the bake, at ${new Date(w.bakeUntil!).toISOString()}` });
      }
      break;
    }
    s.current += 1;
    s.status = 'running';
    const next = s.waves[s.current]!;
    next.startedAt = at;
    emit(d, { at, type: 'wave-started', wave: next.index, detail: `${waveName(s, next.index)}: ${next.size} credential${next.size === 1 ? '' : 's'}` });
  }
  if (STOPPED.has(s.status) && s.finishedAt === null && inFlightTotal(s) === 0) {
    s.finishedAt = at;
    d.changed = true;
    if (s.status !== 'completed') emit(d, { at, type: 'settled', detail: `the ${s.status} batch has nothing left in flight` });
  }
}

/** Apply the clock: a planned batch starts its canary; a bake that is over starts the next wave. Idempotent. */
export function advance(state: BatchState, now: number): Transition {
  const d = draft(state);
  if (d.s.status === 'planned') {
    d.s.status = 'running';
    const w = d.s.waves[0]!;
    w.startedAt = now;
    emit(d, { at: now, type: 'started', detail: `${d.s.credentials.length} credentials, ${d.s.waves.length} waves${d.s.dryRun ? ', dry run' : ''}` });
    emit(d, { at: now, type: 'wave-started', wave: 0, detail: `${waveName(d.s, 0)}: ${w.size} credential${w.size === 1 ? '' : 's'}` });
  }
  settle(d, now);
  return commit(d, now);
}

export interface Decision extends Transition {
  /** Credential ids to claim (`claimStarts`) and then start, in plan order; all in the current wave. */
  start: string[];
  /** When the batch next has something to do by the clock alone (the end of a bake), else null. */
  wakeAt: number | null;
}

/**
 * What to start now: `advance`, then the current wave's credentials not yet started or skipped,
 * and none while the batch is not running. Never beyond the current wave, which is what keeps a
 * halted canary from touching anything outside it. `maxInFlight` caps the wave's rotations in
 * flight at once (the Twilio cap paces them anyway; this keeps a pause quick to take hold).
 */
export function decide(state: BatchState, now: number, opts: { maxInFlight?: number } = {}): Decision {
  const t = advance(state, now);
  const s = t.state;
  const w = s.waves[s.current]!;
  if (s.status !== 'running') return { ...t, start: [], wakeAt: s.status === 'baking' ? w.bakeUntil : null };
  let room = Math.max(0, (opts.maxInFlight ?? Infinity) - inFlightCount(w));
  const start: string[] = [];
  for (let i = w.offset; i < w.offset + w.size && room > 0; i++) {
    const id = s.credentials[i]!;
    if (s.items[id] === undefined) {
      start.push(id);
      room--;
    }
  }
  return { ...t, start, wakeAt: null };
}

/** Where a credential sits in the plan (binary search: the plan is sorted), or -1. */
export function planIndex(s: Pick<BatchState, 'credentials'>, id: string): number {
  let lo = 0;
  let hi = s.credentials.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const c = compareCodeUnits(s.credentials[mid]!, id);
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** The wave a plan position belongs to. */
export function waveOfIndex(s: Pick<BatchState, 'waves'>, index: number): number {
  return s.waves.findIndex((w) => index >= w.offset && index < w.offset + w.size);
}

export interface Refusal {
  credentialId: string;
  reason: string;
}

export interface ClaimResult extends Transition {
  /** Newly marked started: start their rotations now. */
  claimed: string[];
  /** Already marked started with the same rotation id: a retried claim; start (idempotently) again. */
  already: string[];
  /** Not to be started, and why. */
  refused: Refusal[];
}

/**
 * Mark credentials started, before their rotations are started — the guard that nothing is
 * started twice, keyed by credential id. A credential already marked with the same rotation id is
 * a retry (crash between the claim and the start) and answers `already`; with another rotation id
 * it is refused. Only the current wave of a running batch can be claimed, so a claim racing a pause,
 * a halt or a cancel under optimistic concurrency is refused, not applied.
 */
export function claimStarts(state: BatchState, claims: ReadonlyArray<{ credentialId: string; rotationId: string }>, at: number): ClaimResult {
  const d = draft(state);
  const s = d.s;
  const claimed: string[] = [];
  const already: string[] = [];
  const refused: Refusal[] = [];
  for (const { credentialId: id, rotationId } of claims) {
    const item = s.items[id];
    if (item) {
      if (item.rotationId !== null && item.rotationId === rotationId) already.push(id);
      else refused.push({ credentialId: id, reason: item.outcome === 'skipped' ? `already skipped: ${item.detail ?? ''}`.trimEnd() : `already started as rotation ${item.rotationId}` });
      continue;
    }
    if (typeof rotationId !== 'string' || rotationId === '') {
      refused.push({ credentialId: id, reason: 'a rotation id is required' });
      continue;
    }
    if (s.status !== 'running') {
      refused.push({ credentialId: id, reason: `the batch is ${s.status}` });
      continue;
    }
    const idx = planIndex(s, id);
    if (idx < 0) {
      refused.push({ credentialId: id, reason: 'not in this batch' });
      continue;
    }
    const wave = waveOfIndex(s, idx);
    if (wave !== s.current) {
      refused.push({ credentialId: id, reason: `in ${waveName(s, wave)}; the current wave is ${s.current + 1}` });
      continue;
    }
    setItem(d, id, { wave, rotationId, startedAt: at, outcome: null, endedAt: null });
    s.waves[wave]!.started += 1;
    claimed.push(id);
  }
  return { ...commit(d, at), claimed, already, refused };
}

/**
 * A claimed credential's rotation turned out to be another one: starting it answered 409 with
 * the rotation already in flight for that credential. The batch follows that rotation instead
 * of starting a second (nothing is rotated twice). Only while the outcome is still open.
 */
export function adoptRotation(state: BatchState, id: string, fromRotationId: string, toRotationId: string, at: number): { ok: true; state: BatchState } | { ok: false; reason: string } {
  const item = state.items[id];
  if (!item || item.rotationId === null) return { ok: false, reason: `${id} was not started by this batch` };
  if (item.rotationId === toRotationId) return { ok: true, state };
  if (item.rotationId !== fromRotationId) return { ok: false, reason: `${id} is followed as rotation ${item.rotationId}, not ${fromRotationId}` };
  if (item.outcome !== null) return { ok: false, reason: `${id} already ended (${item.outcome})` };
  const d = draft(state);
  setItem(d, id, { ...item, rotationId: toRotationId, detail: `adopted rotation ${toRotationId} already in flight` });
  return { ok: true, state: commit(d, at).state };
}

export interface OutcomeResult extends Transition {
  recorded: string[];
  already: string[];
  refused: Refusal[];
}

/**
 * Record how started rotations ended, then apply what follows (wave end, halt, bake, completion).
 * The rotation id must be the one the batch follows, so another rotation of the same credential
 * (the planner's, a manual one) ending is not mistaken for it. The first outcome is final: the
 * halt rule decided on it; a later retry of a failed rotation is the rotation's own story.
 * Accepted in every status: rotations in flight when a batch stopped still end and are counted.
 */
export function recordOutcomes(
  state: BatchState,
  outcomes: ReadonlyArray<{ credentialId: string; rotationId: string; outcome: Exclude<ItemOutcome, 'skipped'>; detail?: string }>,
  at: number,
): OutcomeResult {
  const d = draft(state);
  const s = d.s;
  const recorded: string[] = [];
  const already: string[] = [];
  const refused: Refusal[] = [];
  for (const o of outcomes) {
    const item = s.items[o.credentialId];
    if (!item || item.rotationId === null) {
      refused.push({ credentialId: o.credentialId, reason: 'not started by this batch' });
      continue;
    }
    if (item.rotationId !== o.rotationId) {
      refused.push({ credentialId: o.credentialId, reason: `the batch follows rotation ${item.rotationId}, not ${o.rotationId}` });
      continue;
    }
    if (item.outcome !== null) {
      if (item.outcome === o.outcome) already.push(o.credentialId);
      else refused.push({ credentialId: o.credentialId, reason: `already recorded as ${item.outcome}` });
      continue;
    }
    setItem(d, o.credentialId, { ...item, outcome: o.outcome, endedAt: at, ...(o.detail ? { detail: o.detail } : {}) });
    s.waves[item.wave]![o.outcome] += 1;
    recorded.push(o.credentialId);
  }
  if (recorded.length > 0) settle(d, at);
  return { ...commit(d, at), recorded, already, refused };
}

/**
 * Credentials of the current wave that will not be started after all (no longer managed, its
 * subaccount closed or paused since the batch was planned). They count toward the wave's end but
 * not its failure rate. Only what `decide` would still start may be skipped.
 */
export function skipCredentials(state: BatchState, skips: ReadonlyArray<{ credentialId: string; reason: string }>, at: number): OutcomeResult {
  const d = draft(state);
  const s = d.s;
  const recorded: string[] = [];
  const already: string[] = [];
  const refused: Refusal[] = [];
  for (const k of skips) {
    const item = s.items[k.credentialId];
    if (item) {
      if (item.outcome === 'skipped') already.push(k.credentialId);
      else refused.push({ credentialId: k.credentialId, reason: `already started as rotation ${item.rotationId}` });
      continue;
    }
    if (s.status !== 'running') {
      refused.push({ credentialId: k.credentialId, reason: `the batch is ${s.status}` });
      continue;
    }
    const idx = planIndex(s, k.credentialId);
    const wave = idx < 0 ? -1 : waveOfIndex(s, idx);
    if (wave !== s.current) {
      refused.push({ credentialId: k.credentialId, reason: idx < 0 ? 'not in this batch' : `in ${waveName(s, wave)}; the current wave is ${s.current + 1}` });
      continue;
    }
    setItem(d, k.credentialId, { wave, rotationId: null, startedAt: null, outcome: 'skipped', endedAt: at, detail: k.reason });
    s.waves[wave]!.skipped += 1;
    recorded.push(k.credentialId);
  }
  if (recorded.length > 0) settle(d, at);
  return { ...commit(d, at), recorded, already, refused };
}

/** An operator's action: applied (`changed` false when it already held: a retried request), or refused with a reason (HTTP 409). */
export type ActionResult = ({ ok: true; changed: boolean } & Transition) | { ok: false; reason: string };

function unchanged(state: BatchState): ActionResult {
  return { ok: true, changed: false, state, events: [] };
}

function stoppedReason(s: BatchState): string {
  if (s.status === 'halted') return `the batch halted (${s.halt?.reason ?? 'failure rate'}); start a new batch for the credentials it did not reach`;
  return `the batch is ${s.status}`;
}

/** Stop starting new rotations; those in flight run on and are recorded, and a wave can still end and bake meanwhile. */
export function pauseBatch(state: BatchState, at: number, by: string | null = null): ActionResult {
  if (state.status === 'paused') return unchanged(state);
  if (STOPPED.has(state.status)) return { ok: false, reason: `cannot pause: ${stoppedReason(state)}` };
  const d = draft(state);
  d.s.pause = { at, by, from: state.status };
  d.s.status = 'paused';
  emit(d, { at, type: 'paused', by, detail: `no new rotations start; ${inFlightTotal(state)} in flight run on` });
  return { ok: true, changed: true, ...commit(d, at) };
}

/**
 * Carry on from where the pause left off, as if it had not happened: a wave that ended meanwhile
 * bakes from when it ended, so a long pause may start the next wave at once. A halted batch does
 * not resume: the halt is a safety decision on record, and overriding it is a new batch.
 */
export function resumeBatch(state: BatchState, at: number, by: string | null = null): ActionResult {
  if (state.status === 'running' || state.status === 'baking' || state.status === 'planned') return unchanged(state);
  if (state.status !== 'paused') return { ok: false, reason: `cannot resume: ${stoppedReason(state)}` };
  const d = draft(state);
  d.s.status = state.pause?.from === 'planned' ? 'planned' : 'running';
  d.s.pause = null;
  emit(d, { at, type: 'resumed', by, detail: `resumed after ${Math.round((at - (state.pause?.at ?? at)) / 1000)} s paused` });
  settle(d, at);
  return { ok: true, changed: true, ...commit(d, at) };
}

/**
 * Stop the batch for good. Nothing more starts; rotations in flight are not abandoned half-way:
 * each finishes or undoes itself as the rotation decides (`inFlightRotations` lists them for a
 * caller that asks each to cancel), and their outcomes are still recorded. The record says how
 * many were in flight and how many were never started.
 */
export function cancelBatch(state: BatchState, at: number, by: string | null = null): ActionResult {
  if (state.status === 'cancelled') return unchanged(state);
  if (state.status === 'completed' || state.status === 'halted') return { ok: false, reason: `cannot cancel: ${stoppedReason(state)}` };
  const d = draft(state);
  const s = d.s;
  const inFlight = inFlightTotal(s);
  const touched = s.waves.reduce((n, w) => n + w.started + w.skipped, 0);
  s.cancel = { at, by, inFlight, notStarted: s.credentials.length - touched };
  s.status = 'cancelled';
  s.pause = null;
  emit(d, { at, type: 'cancelled', by, detail: `${s.cancel.notStarted} credential${s.cancel.notStarted === 1 ? '' : 's'} will not be started; ${inFlight} rotation${inFlight === 1 ? '' : 's'} in flight finish or undo` });
  settle(d, at);
  return { ok: true, changed: true, ...commit(d, at) };
}

/** The rotations the batch started that have not ended (all in the current wave). */
export function inFlightRotations(state: BatchState): Array<{ credentialId: string; rotationId: string }> {
  const w = state.waves[state.current];
  if (!w || inFlightCount(w) === 0) return [];
  const out: Array<{ credentialId: string; rotationId: string }> = [];
  for (let i = w.offset; i < w.offset + w.size; i++) {
    const id = state.credentials[i]!;
    const item = state.items[id];
    if (item && item.rotationId !== null && item.outcome === null) out.push({ credentialId: id, rotationId: item.rotationId });
  }
  return out;
}

/** Nothing will ever change again: stopped, and no rotation in flight. */
export function isFinished(state: BatchState): boolean {
  return state.finishedAt !== null;
}
