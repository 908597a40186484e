import { Type } from 'typebox';
import { STATUSES, STEPS, type RotationStatus, type Step } from '../domain/rotation.ts';

export const AccountSid = Type.String({ pattern: '^AC[0-9a-f]{32}$', description: 'AC followed by 32 lowercase hex digits' });
export const RotationId = Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$', description: 'rotation id (UUIDv7)' });
export const Status = Type.Unsafe<RotationStatus>({ type: 'string', enum: [...STATUSES] });
export const StepT = Type.Unsafe<Step>({ type: 'string', enum: [...STEPS] });

export const ErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), requestId: Type.Optional(Type.String()) }),
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

export const RotationT = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  accountSid: Type.String(),
  status: Status,
  step: StepT,
  oldKeySid: Nullable(Type.String()),
  newKeySid: Nullable(Type.String()),
  reason: Nullable(Type.String()),
  dryRun: Type.Boolean(),
  trigger: Type.String(),
  requestedBy: Nullable(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  operationalizedAt: Nullable(Type.String()),
  promoteAfter: Nullable(Type.String()),
  finishedAt: Nullable(Type.String()),
  attempts: Type.Integer(),
  undo: Nullable(Type.Object({ reason: Type.String(), deleteAfter: Nullable(Type.String()) })),
  history: Type.Array(HistoryEntryT),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
  lastError: Type.Optional(Type.Object({ code: Type.String(), message: Type.String(), at: Type.String() })),
});

export const StartBody = Type.Object(
  {
    accountSid: AccountSid,
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
    dryRun: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const StartReply = Type.Object({ id: Type.String(), accountSid: Type.String(), status: Status, step: StepT });

export const ListQuery = Type.Object(
  {
    accountSid: Type.Optional(AccountSid),
    status: Type.Optional(Status),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 200, pattern: '^[A-Za-z0-9_-]+$' })),
  },
  { additionalProperties: false },
);

export const IdParams = Type.Object({ id: RotationId }, { additionalProperties: false });
