import { Type, type Static } from 'typebox';
import { STATUSES, STEPS, type RotationStatus, type Step, type UndoAction } from '../domain/rotation.ts';
import { CREDENTIAL_NAME, CREDENTIAL_NAME_RULE, DEFAULT_CREDENTIAL } from '../domain/credential.ts';

export const AccountSid = Type.String({ pattern: '^AC[0-9a-f]{32}$', description: 'an account SID: AC followed by 32 lowercase hex digits' });
export const RotationId = Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$', description: 'a rotation id: a UUID in lowercase hex (8-4-4-4-12 digits)' });
/**
 * A managed credential's name: isCredentialName as a pattern (its regex, with the reserved name
 * refused), so a bad one is refused with the rule as the message (validation-errors formOf).
 */
const CREDENTIAL_NAME_PATTERN = `^(?!pending$)${CREDENTIAL_NAME.source.slice(1)}`;
export const CredentialName = (description: string = CREDENTIAL_NAME_RULE) => Type.String({ pattern: CREDENTIAL_NAME_PATTERN, description });
export const Status = Type.Unsafe<RotationStatus>({ type: 'string', enum: [...STATUSES] });
export const StepT = Type.Unsafe<Step>({ type: 'string', enum: [...STEPS] });

/** One problem with a request, named by where it is (`labels[2]`, `windows[0].timeZone`). */
export const FieldErrorT = Type.Object({ path: Type.String(), message: Type.String() });

export const ErrorBody = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    requestId: Type.Optional(Type.String()),
    fields: Type.Optional(Type.Array(FieldErrorT, { description: 'every field that is wrong, when the request was checked as a whole (policies, labels, overrides)' })),
  }),
  id: Type.Optional(Type.String()),
});

export const HistoryEntryT = Type.Object({
  step: Type.String(),
  status: Type.String(),
  at: Type.String(),
  detail: Type.Optional(Type.String()),
  by: Type.Optional(Type.String()),
  count: Type.Optional(Type.Integer()),
});

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
/**
 * A string or null as `type: ['string', 'null']` (JSON Schema 2020-12, OpenAPI 3.1) rather than
 * anyOf: fast-json-stringify picks an anyOf branch by running the validator on every value, which
 * made serialising a page of 100 accounts cost more than reading them from Redis.
 */
const NullableString = (opts: { description?: string } = {}) => Type.Unsafe<string | null>({ type: ['string', 'null'], ...opts });

export const RotationT = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  accountSid: Type.String(),
  credential: Type.String({ description: 'the managed credential of the subaccount this rotation rotates (`default` unless named)' }),
  status: Status,
  step: StepT,
  oldKeySid: NullableString(),
  newKeySid: NullableString(),
  reason: NullableString(),
  dryRun: Type.Boolean(),
  trigger: Type.String(),
  requestedBy: NullableString(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  operationalizedAt: NullableString(),
  promoteAfter: NullableString(),
  finishedAt: NullableString(),
  attempts: Type.Integer(),
  undo: Nullable(Type.Object({ reason: Type.String(), deleteAfter: NullableString() })),
  undoRequested: Nullable(
    Type.Object(
      { action: Type.Unsafe<UndoAction>({ type: 'string', enum: ['cancel', 'rollback'] }), at: Type.String(), by: NullableString() },
      { description: 'Set from the moment a cancel or rollback is accepted; status and step still say where the rotation was until the worker has undone it' },
    ),
  ),
  history: Type.Array(HistoryEntryT),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
  lastError: Type.Optional(Type.Object({ code: Type.String(), message: Type.String(), at: Type.String() })),
  holdsSubaccount: Type.Boolean({ description: 'whether this rotation holds its managed credential: in flight, or failed part-way (its undo did not finish) and not abandoned; no other rotation of the credential may start meanwhile (other credentials of the subaccount may)' }),
  urgent: Type.Boolean({ description: 'an emergency rotation (after a leak): its drain is drainSeconds, not DRAIN_SECONDS' }),
  drainSeconds: Type.Unsafe<number | null>({ type: ['integer', 'null'], description: 'the drain an urgent rotation asked for (capped at DRAIN_SECONDS)' }),
  abandoned: Nullable(
    Type.Object({
      at: Type.String(),
      by: Type.Optional(Type.String()),
      leftBehind: Type.Array(Type.String(), { description: 'what the rotation may have left at Twilio and in the store, for the operator to check' }),
    }),
  ),
  consumers: Nullable(
    Type.Object(
      {
        onNewKey: Type.Integer(),
        total: Type.Integer(),
        lagging: Type.Array(Type.Object({ consumer: Type.String(), keySid: Type.String(), lastSeen: Type.String() })),
        at: Type.String({ description: 'when promote last looked' }),
      },
      { description: '"k of n consumers on the new key" as promote last saw it (consumer gate), with the consumers still on another key; null before promote looked or without reporting consumers' },
    ),
  ),
  forcePromote: Nullable(Type.Object({ at: Type.String(), by: Type.Optional(Type.String()), lagging: Type.Array(Type.String(), { description: 'the consumers still on another key when it was forced' }) })),
});

export const StartBody = Type.Object(
  {
    accountSid: AccountSid,
    credential: Type.Optional(
      CredentialName(`${CREDENTIAL_NAME_RULE}. The managed credential of the subaccount to rotate, with its own secret path (SECRET_PATH_TEMPLATE with {name}), lock and history; default \`${DEFAULT_CREDENTIAL}\``),
    ),
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
    dryRun: Type.Optional(Type.Boolean()),
    urgent: Type.Optional(
      Type.Boolean({ description: 'Emergency rotation after a leak (admin role; reason required): the old key is deleted after drainSeconds instead of DRAIN_SECONDS, and promote gates are skipped' }),
    ),
    drainSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400, description: 'With urgent: the drain in seconds (default 0; capped at DRAIN_SECONDS)' })),
    confirm: Type.Optional(Type.String({ maxLength: 34, description: "An Auth Token rotation's confirmation: the account SID repeated (admin role; the account must have authTokenRotation enabled)" })),
  },
  { additionalProperties: false },
);

export const AbandonBody = Type.Object(
  { confirm: Type.String({ pattern: '^AC[0-9a-f]{32}$', description: "the rotation's account SID, to confirm" }) },
  { additionalProperties: false },
);

export const StartReply = Type.Object({
  id: Type.String(),
  accountSid: Type.String(),
  credential: Type.String(),
  status: Status,
  step: StepT,
  kind: Type.Optional(Type.String({ description: 'the credential kind: api-key, restricted-key or auth-token' })),
  dependsOn: Type.Optional(Type.Array(Type.String(), { description: 'an Auth Token rotation: what depends on the token' })),
});

export const Cursor = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_-]+$', description: 'the nextCursor of the previous page' });

export const ListQuery = Type.Object(
  {
    accountSid: Type.Optional(AccountSid),
    credential: Type.Optional(CredentialName()),
    status: Type.Optional(Status),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Cursor),
  },
  { additionalProperties: false },
);

export const IdParams = Type.Object({ id: RotationId }, { additionalProperties: false });

/** No query parameters: an unknown one is refused rather than silently ignored. */
export const NoQuery = Type.Object({}, { additionalProperties: false });

/**
 * An action's body (cancel, rollback, retry): none, an empty one, or `{}`. Typed to accept null
 * because Fastify validates an absent body as null (and app.ts reads an empty JSON body as absent).
 */
export const ActionBody = Type.Unsafe<Record<string, never> | null | undefined>({
  type: ['object', 'null'],
  properties: {},
  additionalProperties: false,
  description: 'No fields: send no body, an empty body or {}',
});

/** A list item: the record without its history (GET /v1/rotations/{id} has it), so a page stays small. */
export const RotationSummaryT = Type.Omit(RotationT, ['history', 'holdsSubaccount', 'urgent', 'drainSeconds', 'abandoned', 'consumers', 'forcePromote']);
export type RotationSummary = Static<typeof RotationSummaryT>;

export const ListReply = Type.Object({ items: Type.Array(RotationSummaryT), nextCursor: NullableString() });

export const StartHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({ minLength: 1, maxLength: 255, pattern: '^[\\x20-\\x7e]+$', description: '1 to 255 printable ASCII characters. Repeats a POST safely: the same key and body return the first answer (kept 24 h, per token)' }),
  ),
});

export const AccountT = Type.Object({
  accountSid: Type.String(),
  friendlyName: Type.String(),
  status: Type.String({ description: 'Twilio status: active, suspended or closed' }),
  currentKeySid: NullableString(),
  keyAgeDays: Type.Integer({ description: 'days since the last rotation, or since Rotator first saw the subaccount' }),
  lastRotatedAt: NullableString(),
  nextRotationAt: Type.String(),
  policy: Type.Unsafe<'quarterly' | 'monthly'>({ type: 'string', enum: ['quarterly', 'monthly'] }),
  overdue: Type.Boolean(),
});

export const AccountsQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
    cursor: Type.Optional(Cursor),
  },
  { additionalProperties: false },
);

export const AccountsReply = Type.Object({ items: Type.Array(AccountT), nextCursor: NullableString() });

export const StreamId = Type.String({ pattern: '^[0-9]{1,20}-[0-9]{1,20}$', maxLength: 41, description: 'a stream id (as sent in `id:`)' });

export const EventsQuery = Type.Object({ lastEventId: Type.Optional(StreamId) }, { additionalProperties: false });
export const EventsHeaders = Type.Object({ 'last-event-id': Type.Optional(StreamId) });

const Since = Type.String({ maxLength: 40, pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2}))?$', description: 'an ISO 8601 date or date-time' });

export const AuditQuery = Type.Object(
  {
    accountSid: Type.Optional(AccountSid),
    rotationId: Type.Optional(RotationId),
    since: Type.Optional(Since),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
    cursor: Type.Optional(StreamId),
  },
  { additionalProperties: false },
);

export const AuditExportQuery = Type.Object(
  { accountSid: Type.Optional(AccountSid), rotationId: Type.Optional(RotationId), since: Type.Optional(Since) },
  { additionalProperties: false },
);

export const AuditEntryT = Type.Object({
  id: Type.String(),
  at: Type.String(),
  kind: Type.String(),
  actor: Type.String(),
  role: Type.Optional(Type.String()),
  action: Type.String(),
  rotationId: Type.Optional(Type.String()),
  batchId: Type.Optional(Type.String()),
  accountSid: Type.Optional(Type.String()),
  credential: Type.Optional(Type.String()),
  step: Type.Optional(Type.String()),
  detail: Type.Optional(Type.String()),
  ip: Type.Optional(Type.String()),
  requestId: Type.Optional(Type.String()),
  status: Type.Optional(Type.Integer()),
  checkpoint: Type.Optional(
    Type.Object(
      { trimmedThrough: Type.String(), trimmedHash: Type.String(), trimmedCount: Type.Integer(), exportedTo: Type.String(), sig: Type.String() },
      { description: 'kind checkpoint: entries through trimmedThrough were exported and trimmed past AUDIT_RETENTION_DAYS; sig is HMAC-SHA256 with AUDIT_CHECKPOINT_KEY' },
    ),
  ),
  prev: Type.String(),
  hash: Type.String(),
});

export const AuditReply = Type.Object({ items: Type.Array(AuditEntryT), nextCursor: NullableString() });

/** The error answers a route documents (and serialises through ErrorBody). */
export function errorResponses(...statuses: number[]): Record<number, typeof ErrorBody> {
  return Object.fromEntries(statuses.map((s) => [s, ErrorBody]));
}

export const StatusReply = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('degraded'), Type.Literal('not_ready')]),
  checkedAt: Type.String({ description: 'ISO 8601 time of the check' }),
  checks: Type.Record(
    Type.String(),
    Type.Object({
      ok: Type.Boolean(),
      required: Type.Boolean({ description: 'false: its failure makes the process degraded, not unready' }),
      message: Type.Optional(Type.String({ description: 'why the component is not ready' })),
      ms: Type.Number({ description: 'how long the check took' }),
    }),
  ),
});

// ---------------------------------------------------------------------------------------------
// Compliance (GET /v1/compliance, POST /v1/compliance/scan, the sprawl-key delete)

const LabelT = Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]{0,62}(=[a-z0-9][a-z0-9_.-]{0,62})?$', description: 'a label: a lower-case word or key=value (hipaa, tier=gold)' });

export const ComplianceQuery = Type.Object(
  {
    section: Type.Optional(Type.Unsafe<'credentials' | 'subaccounts'>({ type: 'string', enum: ['credentials', 'subaccounts'], default: 'credentials', description: 'credentials (default): a row per managed credential; subaccounts: a row per subaccount with its key sprawl' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
    cursor: Type.Optional(Cursor),
    overdue: Type.Optional(Type.Boolean({ description: 'credentials: only overdue (true) or only not overdue (false)' })),
    label: Type.Optional(LabelT),
    policy: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'credentials: only those this policy applies to' })),
    sprawl: Type.Optional(Type.Boolean({ description: 'subaccounts: only those whose last scan found sprawl or leftover keys' })),
  },
  { additionalProperties: false },
);

const Nullish = <T extends 'integer' | 'boolean' | 'number'>(type: T, description?: string) => Type.Unsafe<number | boolean | null>({ type: [type, 'null'], ...(description ? { description } : {}) });

export const ComplianceCredentialT = Type.Object({
  accountSid: Type.String(),
  credential: Type.String(),
  kind: Type.String(),
  labels: Type.Array(Type.String()),
  subaccountStatus: Type.String(),
  policy: Type.String(),
  policyInterval: Type.String(),
  maxKeyAge: NullableString(),
  allowedKeyAgeDays: Type.Number({ description: 'the age a key may reach: maxKeyAge where set, else the interval' }),
  keySid: NullableString({ description: "the key the store hands out (its current stage), as the last scan read it or a later rotation wrote it" }),
  keyCreatedAt: NullableString({ description: "Twilio's date_created of that key; null when Twilio does not list it" }),
  keyAgeDays: Nullish('integer'),
  lastRotationAt: NullableString(),
  lastRotationOutcome: NullableString(),
  nextDueAt: NullableString({ description: "the planner's deadline: when it must be rotated by" }),
  overdue: Type.Boolean(),
  withinPolicy: Nullish('boolean', 'null: not assessed (closed subaccount)'),
  finding: NullableString(),
  scannedAt: NullableString({ description: 'when the scan last read this subaccount; null: never' }),
});

const KeyRowT = Type.Object({ sid: Type.String(), friendlyName: Type.String(), createdAt: Type.String(), ageDays: Type.Integer() });

export const ComplianceSubaccountT = Type.Object({
  accountSid: Type.String(),
  friendlyName: Type.String(),
  status: Type.String(),
  keysAtTwilio: Nullish('integer', 'null: not listed (closed, suspended, Twilio failed, or never scanned)'),
  sprawl: Type.Array(KeyRowT, { description: 'keys Rotator did not create and no store stage holds; never deleted by Rotator on its own' }),
  leftover: Type.Array(Type.Object({ ...KeyRowT.properties, rotationId: Type.String() }), { description: "keys of rotations on record that no store stage holds: the subaccount's next rotation deletes them" }),
  finding: NullableString(),
  scannedAt: NullableString(),
});

export const ComplianceSummaryT = Type.Object({
  credentials: Type.Integer(),
  assessed: Type.Integer(),
  withinPolicy: Type.Integer(),
  withinPolicyPercent: Nullish('number'),
  overdue: Type.Integer(),
  oldestKeyAgeDays: Nullish('integer'),
  oldestKey: Nullable(Type.Object({ accountSid: Type.String(), credential: Type.String(), keySid: Type.String() })),
  subaccounts: Type.Integer(),
  closedSubaccounts: Type.Integer(),
  sprawlKeys: Type.Integer(),
  leftoverKeys: Type.Integer(),
});

export const ComplianceScanT = Type.Object({
  lastStartedAt: NullableString(),
  lastFinishedAt: NullableString(),
  ageSeconds: Nullish('integer', 'how old the last finished scan is'),
  subaccounts: Nullish('integer'),
  notListed: Nullish('integer', 'subaccounts whose keys the last scan could not list'),
  running: Nullable(Type.Object({ startedAt: Type.String() })),
  requestedAt: NullableString(),
});

export const ComplianceReply = Type.Object({
  generatedAt: Type.String(),
  scan: ComplianceScanT,
  summary: Nullable(ComplianceSummaryT),
  summaryAsOf: NullableString({ description: 'the totals are those of the last finished scan, as of this time; null: no scan yet' }),
  section: Type.String(),
  items: Type.Array(Type.Union([ComplianceCredentialT, ComplianceSubaccountT])),
  nextCursor: NullableString(),
});

export const ScanReply = Type.Object({ requestedAt: Type.String(), scan: ComplianceScanT });

export const SprawlKeyParams = Type.Object(
  { sid: AccountSid, keySid: Type.String({ minLength: 1, maxLength: 64, description: 'the API key SID (SK and 32 lower-case hex digits)' }) },
  { additionalProperties: false },
);

export const SprawlKeyBody = Type.Object(
  { confirm: Type.String({ maxLength: 64, description: 'the key SID again, to confirm' }) },
  { additionalProperties: false },
);

export const SprawlKeyReply = Type.Object({
  accountSid: Type.String(),
  keySid: Type.String(),
  result: Type.Unsafe<'deleted' | 'absent'>({ type: 'string', enum: ['deleted', 'absent'], description: 'absent: Twilio no longer had it when the delete arrived' }),
});
// The planner (GET /v1/schedule, POST /v1/schedule/pause|resume)

export const ScheduleQuery = Type.Object(
  { days: Type.Optional(Type.Integer({ minimum: 1, maximum: 90, default: 14, description: 'how many days the forecast covers: 1 to 90' })) },
  { additionalProperties: false },
);

export const SchedulePauseBody = Type.Object(
  { reason: Type.String({ minLength: 1, maxLength: 500, description: 'why: recorded with the pause and in the audit trail' }) },
  { additionalProperties: false },
);

const FleetPauseT = Type.Object({ at: Type.String(), by: Type.String(), reason: Type.String() });

const TickReportT = Type.Object({
  at: Type.String(),
  durationMs: Type.Number(),
  read: Type.Integer({ description: 'entries read from the due set (at most 4 × the budget)' }),
  started: Type.Integer(),
  inFlight: Type.Integer({ description: 'due, but a rotation of the credential was already in flight' }),
  skippedWindow: Type.Integer({ description: 'outside the policy window or in a blackout: re-slotted to the next allowed instant' }),
  skippedPaused: Type.Integer({ description: 'paused, excluded, inactive or no longer managed: taken out of the schedule' }),
  notDue: Type.Integer({ description: 'decided again from fresh state and found not due yet' }),
  lostClaim: Type.Integer({ description: 'another tick claimed it first' }),
  blocked: Type.Integer({ description: 'a failed rotation holds the subaccount, or the start failed' }),
  deferred: Type.Integer({ description: 'due but over the per-tick budget: left for the next tick' }),
  budget: Type.Integer(),
  due: Type.Integer(),
  overdue: Type.Integer(),
  paused: Type.Boolean(),
  rebuilt: Type.Integer({ description: 'credentials replanned by the rebuild in this tick' }),
  by: Type.String({ description: 'host:pid of the process that ran it' }),
});

export const ScheduleReply = Type.Object({
  paused: Type.Union([FleetPauseT, Type.Null()], { description: 'the fleet-wide pause, or null' }),
  tickSeconds: Type.Number(),
  maxStartsPerTick: Type.Integer(),
  lastTick: Type.Union([TickReportT, Type.Null()]),
  stalled: Type.Boolean({ description: 'no tick for three intervals: no worker runs the planner (PLANNER_ENABLED), or its Job Scheduler stopped' }),
  scheduled: Type.Integer({ description: 'credentials the planner rotates (not excluded, manual-only or paused)' }),
  dueNow: Type.Integer({ description: 'slot reached and not yet claimed by a tick' }),
  overdue: Type.Integer({ description: 'scheduled credentials past their deadline' }),
  inFlight: Type.Integer({ description: 'claimed by a tick, rotation not finished' }),
  failing: Type.Object({
    count: Type.Integer(),
    items: Type.Array(Type.Object({ credentialId: Type.String(), retryAt: Type.String(), rotationId: NullableString(), outcome: NullableString() }), { description: 'up to 20, soonest retry first' }),
  }),
  plannedAgainst: Type.Object({ policyVersion: NullableString(), rebuiltAt: NullableString(), rebuilding: Type.Boolean() }),
  forecast: Type.Object({
    days: Type.Integer(),
    timeZone: Type.Literal('UTC'),
    items: Type.Array(Type.Object({ date: Type.String(), count: Type.Integer(), byPolicy: Type.Record(Type.String(), Type.Integer()) }), {
      description: 'slots per UTC day and policy, the first day from now; what is due now is dueNow',
    }),
  }),
});

export const SchedulePauseReply = Type.Object({ paused: Type.Union([FleetPauseT, Type.Null()]) });
// ---- Batches (issue 13 item 5) ----

export const BatchId = Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$', description: 'a batch id: a UUID in lowercase hex (8-4-4-4-12 digits)' });
export const BatchIdParams = Type.Object({ id: BatchId }, { additionalProperties: false });

/**
 * The body is checked by the domain's parseBatchRequest, which names every wrong field and says
 * what is allowed; the schema documents it and only insists on an object.
 */
export const BatchBody = Type.Unsafe<unknown>({
  type: 'object',
  description:
    'selector: "all" | {labels: [..]} | {accountSids: [..]} | {credentials: [{accountSid, name}]} | {filter: {q?, accountSid?, label?, policy?, overdue?, failed?}} (the fleet view\'s filters); reason (required); dryRun (default false); ' +
    'waves: {canary: a count (5) or a percentage ("10%"), step: percent of the selection per later wave (1..100), bakeSeconds}; maxFailureRate: 0..1',
  properties: {
    selector: { description: '"all", or an object with exactly one of labels (all must apply), accountSids, credentials, filter (GET /v1/credentials filters of the same names)' },
    kinds: { type: 'array', items: { type: 'string', enum: ['api-key', 'restricted-key', 'auth-token'] }, description: 'only credentials of these kinds (default every kind); an Auth Token is selected only where its policy says allowAuthToken' },
    reason: { type: 'string', description: 'why (goes into every rotation and the audit trail)' },
    dryRun: { type: 'boolean' },
    waves: { type: 'object', properties: { canary: {}, step: { type: 'integer' }, bakeSeconds: { type: 'integer' } } },
    maxFailureRate: { type: 'number' },
  },
});

const Counts = {
  started: Type.Integer(),
  succeeded: Type.Integer(),
  failed: Type.Integer(),
  cancelled: Type.Integer(),
  skipped: Type.Integer(),
  inFlight: Type.Integer(),
};

export const BatchWaveT = Type.Object({
  wave: Type.Integer({ description: 'counted from 1; wave 1 is the canary' }),
  size: Type.Integer(),
  ...Counts,
  failureRate: Type.Number({ description: 'failed / (size − cancelled − skipped)' }),
  startedAt: NullableString(),
  endedAt: NullableString(),
  bakeUntil: NullableString({ description: 'the next wave may start from then' }),
});

export const BatchEventT = Type.Object({ at: Type.String(), type: Type.String(), wave: Type.Optional(Type.Integer()), by: Type.Optional(Type.Union([Type.String(), Type.Null()])), detail: Type.String() });

export const BatchT = Type.Object({
  id: Type.String(),
  status: Type.String({ description: 'planned, running, baking, paused, halted, cancelled or completed' }),
  reason: Type.String(),
  dryRun: Type.Boolean(),
  requestedBy: NullableString(),
  selector: Type.Unknown(),
  waves: Type.Object({ canary: Type.Union([Type.Integer(), Type.String()]), step: Type.Integer(), bakeSeconds: Type.Integer() }),
  maxFailureRate: Type.Number(),
  total: Type.Integer({ description: 'credentials selected' }),
  counts: Type.Object(Counts),
  currentWave: Type.Integer({ description: 'counted from 1' }),
  progress: Type.Array(BatchWaveT),
  halt: Nullable(Type.Object({ wave: Type.Integer(), reason: Type.String(), failed: Type.Integer(), counted: Type.Integer(), rate: Type.Number(), at: Type.String() })),
  pause: Nullable(Type.Object({ at: Type.String(), by: NullableString() })),
  cancel: Nullable(Type.Object({ at: Type.String(), by: NullableString(), inFlight: Type.Integer(), notStarted: Type.Integer() })),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  finishedAt: NullableString({ description: 'when the batch stopped with nothing left in flight' }),
  history: Type.Optional(Type.Array(BatchEventT)),
});

export const BatchListQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })), cursor: Type.Optional(Cursor) },
  { additionalProperties: false },
);
export const BatchListReply = Type.Object({ items: Type.Array(BatchT), nextCursor: NullableString() });

// ---------------------------------------------------------------------------------------------
// Fleet: policies, labels, managed credentials (issue 13)

const Duration = Type.String({ description: 'an ISO 8601 duration, e.g. P90D, PT12H' });
const HourRangeT = Type.Object({ from: Type.String({ description: 'HH:MM, local time' }), to: Type.String({ description: 'HH:MM, exclusive; 24:00 allowed' }) }, { additionalProperties: false });

/** A policy as written. Documents PUT's body; the route checks it with checkPolicy, which names every wrong field at once. */
export const PolicyT = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'a policy name: 1 to 63 lower-case letters, digits or "-". In PUT, may be left out (the path names it)' }),
    interval: Duration,
    maxKeyAge: Type.Optional(Type.String({ description: 'an ISO 8601 duration: the oldest a key may be by Twilio\'s date_created; at least the interval' })),
    spread: Type.Optional(Type.String({ description: 'an ISO 8601 duration: how much time before the deadline the credentials due together are spread over (default P7D, at most interval/4)' })),
    windows: Type.Optional(
      Type.Array(
        Type.Object(
          {
            days: Type.Array(Type.Unsafe<string>({ type: 'string', enum: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] })),
            hours: Type.Union([HourRangeT, Type.Array(HourRangeT)]),
            timeZone: Type.String({ description: 'an IANA time zone, e.g. America/New_York' }),
          },
          { additionalProperties: false },
        ),
        { description: 'when rotations may start; none: any time' },
      ),
    ),
    blackouts: Type.Optional(
      Type.Array(
        Type.Object({ from: Type.String({ description: 'ISO 8601 instant with an offset' }), to: Type.String({ description: 'ISO 8601 instant with an offset, exclusive' }), reason: Type.Optional(Type.String()) }, { additionalProperties: false }),
        { description: 'periods in which no rotation starts' },
      ),
    ),
    labels: Type.Optional(Type.Array(Type.String(), { description: 'subaccount labels that assign this policy' })),
    exclude: Type.Optional(Type.Boolean({ description: 'take the credentials it applies to out of the schedule and the report' })),
    autoRotate: Type.Optional(Type.Boolean({ description: 'false: deadlines are tracked, but only people or batches start rotations (default true)' })),
    allowAuthToken: Type.Optional(Type.Boolean({ description: 'true: the planner and batches may rotate auth-token credentials this policy applies to (default false; not on the default policy, nor with exclude or autoRotate: false)' })),
    description: Type.Optional(Type.String({ maxLength: 200 })),
    consumerGate: Type.Optional(
      Type.Object(
        {
          minDrain: Type.Optional(Type.String({ description: 'an ISO 8601 duration: the least time between operationalize and promote (default PT30S)' })),
          maxWait: Type.String({ description: 'an ISO 8601 duration (at most P30D): how long promote waits for consumers still reporting the old key' }),
          onMaxWait: Type.Optional(Type.Unsafe<'hold' | 'promote'>({ type: 'string', enum: ['hold', 'promote'], description: 'then: hold (default; waiting, the laggards named, until they move or an operator force-promotes) or promote' })),
        },
        { additionalProperties: false, description: 'promote once every live consumer reports the new key (POST /v1/consumers/heartbeat) instead of only after DRAIN_SECONDS' },
      ),
    ),
  },
  { additionalProperties: false },
);

/** PUT's body: a policy whose name may be left out. Checked by checkPolicy (all fields at once), not by the schema. */
export const PolicyBody = Type.Object({ ...PolicyT.properties, name: Type.Optional(PolicyT.properties.name) }, { additionalProperties: false });

export const PolicyViewT = Type.Object({
  ...PolicyT.properties,
  builtIn: Type.Boolean({ description: 'one of Rotator\'s built-in policies (default, hipaa): DELETE reverts it to its definition instead of removing it' }),
  overrides: Type.Integer({ description: 'how many account and credential overrides name it' }),
});

export const PoliciesReply = Type.Object({ items: Type.Array(PolicyViewT) });
export const PolicyNameParams = Type.Object(
  { name: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'a policy name: 1 to 63 lower-case letters, digits or "-", starting with a letter or digit' }) },
  { additionalProperties: false },
);
export const PolicyDeleteReply = Type.Object({
  name: Type.String(),
  deleted: Type.Boolean(),
  revertedTo: Type.Optional(PolicyViewT),
});

const SidParam = Type.String({ pattern: '^AC[0-9a-f]{32}$', description: 'an account SID: AC followed by 32 lowercase hex digits' });
export const AccountSidParams = Type.Object({ sid: SidParam }, { additionalProperties: false });
const CredentialNameParam = Type.String({ minLength: 1, maxLength: 63, description: 'a credential name: lower-case letters, digits, "_" and "-", starting with a letter or digit; "pending" is reserved' });
export const CredentialParams = Type.Object({ sid: SidParam, name: CredentialNameParam }, { additionalProperties: false });

const PolicyRef = Type.Unsafe<string | null>({ type: ['string', 'null'], maxLength: 63, description: 'the name of an existing policy; null clears the override' });

export const AccountPatchBody = Type.Object(
  {
    labels: Type.Optional(Type.Array(Type.String({ maxLength: 127 }), { maxItems: 64, description: 'replaces the labels ([] clears): hipaa, pci, tier=gold…' })),
    policy: Type.Optional(PolicyRef),
    paused: Type.Optional(Type.Boolean({ description: 'neither the planner nor a batch starts rotations of its credentials' })),
    authTokenRotation: Type.Optional(Type.Boolean({ description: "allow rotating this account's Auth Token (admin role; off by default)" })),
  },
  { additionalProperties: false },
);

export const CredentialPatchBody = Type.Object(
  { policy: Type.Optional(PolicyRef), paused: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

export const AddCredentialBody = Type.Object(
  { name: CredentialNameParam, kind: Type.Optional(Type.Unsafe<'api-key' | 'restricted-key' | 'auth-token'>({ type: 'string', enum: ['api-key', 'restricted-key', 'auth-token'], description: 'what is rotated (default api-key): a Standard API key, a restricted API key (the new key copies its policy) or the subaccount Auth Token (guarded)' })) },
  { additionalProperties: false },
);

export const CredentialStatusT = Type.Object({
  id: Type.String({ description: 'AC…/name' }),
  accountSid: Type.String(),
  name: Type.String(),
  kind: Type.String(),
  subaccountStatus: Type.String({ description: 'Twilio status of the subaccount as the inventory last saw it' }),
  labels: Type.Array(Type.String()),
  currentKeySid: NullableString({ description: 'the key the store hands out, as of the last rotation Rotator finished' }),
  keyAgeDays: Type.Integer(),
  keyAgeFrom: Type.Unsafe<'key_created' | 'last_rotation' | 'first_seen'>({
    type: 'string',
    enum: ['key_created', 'last_rotation', 'first_seen'],
    description: "what keyAgeDays counts from: Twilio's date_created of the current key; else the last rotation; else when Rotator first saw the credential (the key may be older)",
  }),
  keySince: Type.String({ description: 'the instant keyAgeDays counts from' }),
  lastRotatedAt: NullableString({ description: 'when the last successful rotation finished' }),
  lastRotation: Type.Unsafe<{ id: string; at: string; outcome: string } | null>({
    type: ['object', 'null'],
    properties: { id: { type: 'string' }, at: { type: 'string' }, outcome: { type: 'string', description: 'succeeded, failed, cancelled, rolled_back' } },
    required: ['id', 'at', 'outcome'],
    description: 'the last rotation that finished, whatever its outcome',
  }),
  policy: Type.Object({
    name: Type.String(),
    source: Type.Unsafe<string>({ type: 'string', enum: ['credential override', 'account override', 'label', 'default'] }),
    reason: Type.String({ description: 'why this policy applies, e.g. "label hipaa (policy hipaa)"' }),
  }),
  policyOverride: NullableString({ description: "the credential's own override" }),
  deadline: NullableString({ description: 'the latest it may be rotated under its policy; null when the policy excludes it' }),
  deadlineBy: Type.Unsafe<'interval' | 'max key age' | null>({ type: ['string', 'null'], enum: ['interval', 'max key age', null] }),
  nextRotationAt: NullableString({ description: "the planner's slot for it; null when nothing starts it automatically (see notScheduled)" }),
  notScheduled: NullableString({ description: 'why the planner starts nothing for it: paused, excluded, not auto-rotated, subaccount not active' }),
  late: Type.Boolean({ description: 'no allowed time before the deadline (windows, blackouts): the slot is after it' }),
  overdue: Type.Boolean(),
  paused: Type.Boolean(),
  pausedBy: Type.Unsafe<'credential' | 'account' | null>({ type: ['string', 'null'], enum: ['credential', 'account', null] }),
  inFlight: Type.Optional(
    Type.Unsafe<{ id: string; status: string; step: string } | null>({
      type: ['object', 'null'],
      properties: { id: { type: 'string' }, status: { type: 'string' }, step: { type: 'string' } },
      required: ['id', 'status', 'step'],
      description: 'the rotation of this credential in flight (GET /v1/credentials only); null when none',
    }),
  ),
});

export const AccountDetailT = Type.Object({
  accountSid: Type.String(),
  friendlyName: Type.String(),
  status: Type.String({ description: 'Twilio status: active, suspended or closed' }),
  labels: Type.Array(Type.String()),
  paused: Type.Boolean(),
  authTokenRotation: Type.Boolean({ description: "whether this account's Auth Token may be rotated (PATCH by an admin)" }),
  policyOverride: NullableString({ description: "the account's policy override" }),
  firstSeenAt: Type.String(),
  credentials: Type.Array(CredentialStatusT, { description: 'its managed credentials, by name; empty when none is managed' }),
});

export const AccountPatchReply = Type.Object({ ...AccountDetailT.properties, changes: Type.Array(Type.String(), { description: 'what this request changed' }) });

export const CredentialsQuery = Type.Object(
  {
    accountSid: Type.Optional(AccountSid),
    label: Type.Optional(Type.String({ maxLength: 127, description: 'only subaccounts with this label' })),
    policy: Type.Optional(Type.String({ maxLength: 63, description: 'only credentials this policy applies to' })),
    overdue: Type.Optional(Type.Boolean()),
    paused: Type.Optional(Type.Boolean({ description: 'paused by the credential or its subaccount' })),
    failed: Type.Optional(Type.Boolean({ description: 'whether the last finished rotation failed' })),
    inFlight: Type.Optional(Type.Boolean({ description: 'whether a rotation of the credential is in flight' })),
    sort: Type.Optional(
      Type.Unsafe<'account' | 'deadline'>({
        type: 'string',
        enum: ['account', 'deadline'],
        description: '`account` (default): by id, the subaccount SID then the name; `deadline`: by the policy deadline, from the planner\'s index, which holds scheduled credentials only (paused, excluded and not auto-rotated ones have no deadline and are not listed)',
      }),
    ),
    order: Type.Optional(Type.Unsafe<'asc' | 'desc'>({ type: 'string', enum: ['asc', 'desc'], description: 'asc (default) or desc' })),
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'search: a subaccount SID (AC…) reads that subaccount only; anything else matches part of the id (AC…/name) or of the current key SID, ignoring case' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100, description: 'how many credentials a page reads; with filters, a page may hold fewer' })),
    cursor: Type.Optional(Cursor),
  },
  { additionalProperties: false },
);

export const CredentialsReply = Type.Object({ items: Type.Array(CredentialStatusT), nextCursor: NullableString() });
