import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { credentialOf, holdsCredential, publicRotation, type RotationRecord } from '../../domain/rotation.ts';
import { DEFAULT_CREDENTIAL } from '../../domain/credential.ts';
import { decodeCursor, type RotationRepository } from '../../state/rotations.ts';
import { StartRefusedError, type ActionResult, type RotationService } from '../../service/rotations.ts';
import { authTokenDependents } from '../../domain/auth-token.ts';
import type { SubaccountChecker } from '../../service/subaccounts.ts';
import { roleAtLeast } from '../tokens.ts';
import { HttpError } from '../errors.ts';
import { admitSubaccount } from '../admission.ts';
import { IdempotencyStore, type StoredAnswer } from '../idempotency.ts';
import { AbandonBody, ActionBody, errorResponses, ErrorBody, IdParams, ListQuery, ListReply, NoQuery, RotationT, StartBody, StartHeaders, StartReply } from '../schemas.ts';

export interface RotationRoutesDeps {
  repo: RotationRepository;
  service: RotationService;
  idempotency: IdempotencyStore;
  subaccounts: SubaccountChecker;
}

/**
 * The 409 of a managed credential that a rotation holds: in flight (`rotation_in_flight`), or
 * failed part-way and waiting for a retry or an abandon (`subaccount_held_by_failed_rotation`, a
 * code kept from when the subaccount was the unit), which a client must not wait out.
 */
function heldAnswer(holder: RotationRecord): { code: string; message: string } {
  const credential = credentialOf(holder);
  if (holder.status === 'failed' && holdsCredential(holder)) {
    return {
      code: 'subaccount_held_by_failed_rotation',
      message: `rotation ${holder.id} of credential ${credential} failed part-way and still holds the credential: retry it (POST /v1/rotations/${holder.id}/retry) or have an admin abandon it (POST /v1/rotations/${holder.id}/abandon) before starting another`,
    };
  }
  return { code: 'rotation_in_flight', message: `rotation ${holder.id} is already in flight for credential ${credential}` };
}

const ACTIONS = {
  cancel: 'Cancel a rotation before delete-old (the old key is restored)',
  rollback: 'Roll a rotation back before delete-old (the old key is restored)',
  retry: 'Retry a failed rotation: a fully undone one starts again from create-secondary, an interrupted one resumes',
} as const;

const ITEMS_OPEN = Buffer.from('{"items":[');
const COMMA = Buffer.from(',');

export const rotationRoutes: FastifyPluginAsyncTypebox<RotationRoutesDeps> = async (app, { repo, service, idempotency, subaccounts }) => {
  app.post(
    '/v1/rotations',
    {
      config: { role: 'operator', audit: 'rotation.start' },
      schema: {
        summary: "Start a rotation of one managed credential (a subaccount's API key)",
        description:
          'A managed credential is (subaccount, name): `{accountSid}` rotates the subaccount\'s `default` credential, `{accountSid, credential}` the named one, each with its own secret path, lock and history. ' +
          'Only an active subaccount of the configured parent may be rotated: the parent itself or another parent\'s account is refused with 422 `not_a_subaccount`, an unknown SID with 404 `subaccount_not_found`, a suspended or closed subaccount with 422 `subaccount_inactive`. ' +
          'A credential held by another rotation answers 409 with its id: `rotation_in_flight`, or `subaccount_held_by_failed_rotation` when that rotation failed part-way (retry or abandon it); rotations of different credentials of one subaccount run side by side. ' +
          'A credential of kind `auth-token` (the subaccount\'s Auth Token) is guarded: refused with 409 `auth_token_rotation_disabled` unless an admin enabled it for the account (PATCH /v1/accounts/{sid} `authTokenRotation: true`), 403 without the admin role, 400 `confirmation_required` unless `confirm` repeats the account SID (a dry run needs none); the answer lists `dependsOn`, and the audit entry has its own action `rotation.start.auth-token`. ' +
          '`urgent: true` (admin role, `reason` required) is an emergency rotation after a leak: the drain is `drainSeconds` (default 0) instead of DRAIN_SECONDS, so consumers that cache the key longer fail until they re-read the store. ' +
          'With an Idempotency-Key header, repeating the request (same key, same body) returns the first answer; the same key with another body is refused with 422.',
        tags: ['rotations'],
        headers: StartHeaders,
        body: StartBody,
        response: { 202: StartReply, 409: ErrorBody, ...errorResponses(400, 401, 403, 404, 413, 415, 422, 429, 502, 503) },
      },
    },
    async (req, reply) => {
      const { urgent, drainSeconds, reason, dryRun, accountSid } = req.body;
      const credential = req.body.credential ?? DEFAULT_CREDENTIAL;
      if (drainSeconds !== undefined && !urgent) throw new HttpError(400, 'invalid_request', 'drainSeconds applies only to an urgent rotation (urgent: true)');
      if (urgent) {
        req.auditTarget = { accountSid, credential, detail: `urgent: drain ${drainSeconds ?? 0}s` };
        if (!req.principal || !roleAtLeast(req.principal.role, 'admin')) throw new HttpError(403, 'forbidden', `an urgent rotation needs the admin role; "${req.principal?.name ?? 'anonymous'}" is ${req.principal?.role ?? 'nobody'}`);
        if (!reason) throw new HttpError(400, 'invalid_request', 'an urgent rotation needs a reason (what leaked, and where)');
        if (dryRun) throw new HttpError(400, 'invalid_request', 'an urgent rotation cannot be a dry run');
      }
      const scope = req.principal?.name ?? '';
      const key = req.headers['idempotency-key'];
      const fingerprint = key !== undefined ? IdempotencyStore.fingerprint('POST /v1/rotations', startFingerprintBody(req.body)) : '';
      if (key !== undefined) {
        const claim = await idempotency.claim(scope, key, fingerprint);
        if (claim.kind === 'mismatch') throw new HttpError(422, 'idempotency_key_reused', 'this Idempotency-Key was used with a different request body; use a new key for a new request');
        if (claim.kind === 'in_progress') throw new HttpError(409, 'idempotency_in_progress', 'a request with this Idempotency-Key is still being processed; retry shortly');
        if (claim.kind === 'replay') return replay(claim.answer);
      }
      let answer: StoredAnswer;
      try {
        await admitSubaccount(subaccounts, accountSid);
        const admin = !!req.principal && roleAtLeast(req.principal.role, 'admin');
        let result;
        try {
          result = await service.start({ ...req.body, credential, trigger: 'api', requestedBy: req.principal?.name, admin });
        } catch (err) {
          if (!(err instanceof StartRefusedError)) throw err;
          req.auditTarget = { accountSid, credential, action: 'rotation.start.auth-token', detail: `AUTH TOKEN ROTATION REFUSED: ${err.message}` };
          throw new HttpError(err.status, err.code, err.message);
        }
        if (!result.started) {
          const id = result.existing.id;
          req.auditTarget = { ...req.auditTarget, rotationId: id, accountSid, credential };
          answer = { status: 409, body: { id, error: heldAnswer(result.existing) } };
        } else {
          const r = result.record;
          const authToken = r.kind === 'auth-token';
          req.auditTarget = {
            ...req.auditTarget,
            rotationId: r.id,
            accountSid: r.accountSid,
            credential: r.credential,
            // Prominent: its own action, and a detail that says what it is and who confirmed it.
            ...(authToken ? { action: 'rotation.start.auth-token', detail: `AUTH TOKEN ROTATION of ${r.accountSid}${r.dryRun ? ' (dry run)' : ` confirmed by ${req.principal?.name ?? 'unknown'}`}` } : {}),
          };
          const body = { id: r.id, accountSid: r.accountSid, credential: r.credential, status: r.status, step: r.step, ...(r.kind !== 'api-key' ? { kind: r.kind } : {}), ...(authToken ? { dependsOn: authTokenDependents(r.accountSid) } : {}) };
          answer = { status: 202, body, headers: { location: `/v1/rotations/${r.id}` } };
        }
      } catch (err) {
        if (key !== undefined) await idempotency.release(scope, key).catch(() => undefined);
        throw err;
      }
      if (key !== undefined) await idempotency.complete(scope, key, fingerprint, answer);
      return send(answer, false);

      function replay(a: StoredAnswer) {
        const id = typeof a.body.id === 'string' ? a.body.id : undefined;
        req.auditTarget = { ...(id ? { rotationId: id } : {}), accountSid: req.body.accountSid, credential, detail: 'idempotent replay' };
        return send(a, true);
      }
      function send(a: StoredAnswer, replayed: boolean) {
        if (replayed) reply.header('idempotent-replayed', 'true');
        for (const [h, v] of Object.entries(a.headers ?? {})) reply.header(h, v);
        const body = a.status >= 400 ? { ...a.body, error: { ...(a.body.error as object), requestId: req.id } } : a.body;
        return reply.status(a.status as 202 | 409).send(body as never);
      }
    },
  );

  app.get(
    '/v1/rotations',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List rotations, newest first',
        description: 'Filters combine: `accountSid` and `credential` together list one managed credential\'s rotations; `credential` alone lists the rotations of that name in every subaccount.',
        tags: ['rotations'],
        querystring: ListQuery,
        response: { 200: ListReply, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (req, reply) => {
      const { accountSid, credential, status, limit, cursor } = req.query;
      if (cursor !== undefined && !decodeCursor(cursor)) throw new HttpError(400, 'invalid_cursor', 'cursor is not one this API returned');
      const page = await repo.summaryPage({ accountSid, credential, status, limit: limit ?? 50, cursor });
      // The items are stored as the JSON text ListReply's schema makes of them
      // (test/unit/list-pages.test.ts compares the bytes): the page is sent as those bytes, with
      // nothing parsed or serialised per request.
      const parts: Buffer[] = [ITEMS_OPEN];
      for (const item of page.items) parts.push(item, COMMA);
      if (page.items.length) parts.pop();
      parts.push(Buffer.from(`],"nextCursor":${JSON.stringify(page.nextCursor)}}`));
      // A Buffer is sent as it is: the response schema (ListReply) documents the page.
      return reply.type('application/json; charset=utf-8').send(Buffer.concat(parts) as never);
    },
  );

  app.get(
    '/v1/rotations/:id',
    {
      config: { role: 'viewer' },
      schema: { summary: 'One rotation with its history', tags: ['rotations'], params: IdParams, querystring: NoQuery, response: { 200: RotationT, ...errorResponses(400, 401, 403, 404, 429) } },
    },
    async (req) => {
      const rec = await repo.get(req.params.id);
      if (!rec) throw new HttpError(404, 'rotation_not_found', `no rotation ${req.params.id}`);
      return publicRotation(rec);
    },
  );

  for (const action of ['cancel', 'rollback', 'retry'] as const) {
    app.post(
      `/v1/rotations/:id/${action}`,
      {
        config: { role: 'operator', audit: `rotation.${action}` },
        schema: {
          summary: ACTIONS[action],
          description: 'Answers the record after the action, or 409 saying why the action does not apply in the rotation\'s current state.',
          tags: ['rotations'],
          params: IdParams,
          querystring: NoQuery,
          body: ActionBody,
          response: { 200: RotationT, ...errorResponses(400, 401, 403, 404, 409, 415, 429) },
        },
      },
      async (req) => {
        const id = req.params.id;
        const result: ActionResult | undefined = action === 'retry' ? await service.retry(id, req.principal?.name) : await service.undo(id, action, req.principal?.name);
        return publicRotation(actionOutcome(req, id, action, result));
      },
    );
  }

  app.post(
    '/v1/rotations/:id/abandon',
    {
      config: { role: 'admin', audit: 'rotation.abandon' },
      schema: {
        summary: 'Abandon a failed rotation that still holds its credential',
        description:
          "For a rotation whose undo could not finish (e.g. the subaccount was closed mid-rotation) and that a retry cannot complete. `confirm` must be the rotation's account SID. " +
          'The credential is released for new rotations; Twilio and the store are not touched, and the record lists what may be left behind (`abandoned.leftBehind`) for the operator to check. ' +
          "The next rotation of the credential deletes a leftover key named for this rotation that no stage of its store entry holds. 409 when the rotation is not failed or does not hold its credential; 422 when `confirm` is not the rotation's account SID.",
        tags: ['rotations'],
        params: IdParams,
        querystring: NoQuery,
        body: AbandonBody,
        response: { 200: RotationT, ...errorResponses(400, 401, 403, 404, 409, 422, 429) },
      },
    },
    async (req) => {
      const id = req.params.id;
      const record = actionOutcome(req, id, 'abandon', await service.abandon(id, req.body.confirm, req.principal?.name));
      req.log.warn({ rotationId: id, accountSid: record.accountSid, credential: record.credential, leftBehind: record.abandoned?.leftBehind }, 'rotation abandoned; the credential is released');
      return publicRotation(record);
    },
  );
};

/**
 * The body an Idempotency-Key is bound to: `credential: "default"` means what no credential means,
 * so it is left out (and bodies fingerprinted before managed credentials still match).
 */
function startFingerprintBody<T extends { credential?: string }>(body: T): Omit<T, 'credential'> | T {
  if (body.credential !== DEFAULT_CREDENTIAL) return body;
  const { credential: _default, ...rest } = body;
  return rest;
}

/**
 * What every action route answers for the service's result: 404 for no such rotation, the error
 * saying why it was refused (409, or 422 for a confirmation that does not match), else the record.
 * The audit entry names the rotation and its subaccount either way.
 */
function actionOutcome(req: FastifyRequest, id: string, action: string, result: ActionResult | undefined): RotationRecord {
  if (!result) throw new HttpError(404, 'rotation_not_found', `no rotation ${id}`);
  if (result.record) req.auditTarget = { rotationId: id, accountSid: result.record.accountSid, credential: result.record.credential };
  if (result.ok) return result.record;
  if (result.mismatch) throw new HttpError(422, 'confirmation_mismatch', `${action} refused: ${result.reason}`, { id });
  const code = result.inFlight ? (result.heldByFailed ? 'subaccount_held_by_failed_rotation' : 'rotation_in_flight') : 'action_not_allowed';
  throw new HttpError(409, code, `${action} refused: ${result.reason}`, { id: result.inFlight ?? id });
}
