import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { publicRotation } from '../../domain/rotation.ts';
import { decodeCursor, type RotationRepository } from '../../state/rotations.ts';
import type { ActionResult, RotationService } from '../../service/rotations.ts';
import { HttpError } from '../errors.ts';
import { IdempotencyStore, type StoredAnswer } from '../idempotency.ts';
import { ActionBody, errorResponses, ErrorBody, IdParams, ListQuery, ListReply, NoQuery, RotationT, StartBody, StartHeaders, StartReply } from '../schemas.ts';

export interface RotationRoutesDeps {
  repo: RotationRepository;
  service: RotationService;
  idempotency: IdempotencyStore;
}

const ACTIONS = {
  cancel: 'Cancel a rotation before delete-old (the old key is restored)',
  rollback: 'Roll a rotation back before delete-old (the old key is restored)',
  retry: 'Retry a failed rotation: a fully undone one starts again from create-secondary, an interrupted one resumes',
} as const;

const ITEMS_OPEN = Buffer.from('{"items":[');
const COMMA = Buffer.from(',');

export const rotationRoutes: FastifyPluginAsyncTypebox<RotationRoutesDeps> = async (app, { repo, service, idempotency }) => {
  app.post(
    '/v1/rotations',
    {
      config: { role: 'operator', audit: 'rotation.start' },
      schema: {
        summary: "Start a rotation of one subaccount's API key",
        description: 'With an Idempotency-Key header, repeating the request (same key, same body) returns the first answer; the same key with another body is refused with 422.',
        tags: ['rotations'],
        headers: StartHeaders,
        body: StartBody,
        response: { 202: StartReply, 409: ErrorBody, ...errorResponses(400, 401, 403, 413, 415, 422, 429) },
      },
    },
    async (req, reply) => {
      const scope = req.principal?.name ?? '';
      const key = req.headers['idempotency-key'];
      const fingerprint = key !== undefined ? IdempotencyStore.fingerprint('POST /v1/rotations', req.body) : '';
      if (key !== undefined) {
        const claim = await idempotency.claim(scope, key, fingerprint);
        if (claim.kind === 'mismatch') throw new HttpError(422, 'idempotency_key_reused', 'this Idempotency-Key was used with a different request body; use a new key for a new request');
        if (claim.kind === 'in_progress') throw new HttpError(409, 'idempotency_in_progress', 'a request with this Idempotency-Key is still being processed; retry shortly');
        if (claim.kind === 'replay') return replay(claim.answer);
      }
      let answer: StoredAnswer;
      try {
        const result = await service.start({ ...req.body, trigger: 'api', requestedBy: req.principal?.name });
        if (!result.started) {
          const id = result.existing.id;
          req.auditTarget = { rotationId: id, accountSid: req.body.accountSid };
          // A rotation that failed part-way keeps its subaccount until it is retried (its state is half done).
          const message =
            result.existing.status === 'failed'
              ? `rotation ${id} of ${req.body.accountSid} failed part-way and still holds the subaccount: retry it (POST /v1/rotations/${id}/retry) before starting another`
              : `rotation ${id} is already in flight for ${req.body.accountSid}`;
          answer = { status: 409, body: { id, error: { code: 'rotation_in_flight', message } } };
        } else {
          const r = result.record;
          req.auditTarget = { rotationId: r.id, accountSid: r.accountSid };
          answer = { status: 202, body: { id: r.id, accountSid: r.accountSid, status: r.status, step: r.step }, headers: { location: `/v1/rotations/${r.id}` } };
        }
      } catch (err) {
        if (key !== undefined) await idempotency.release(scope, key).catch(() => undefined);
        throw err;
      }
      if (key !== undefined) await idempotency.complete(scope, key, fingerprint, answer);
      return send(answer, false);

      function replay(a: StoredAnswer) {
        const id = typeof a.body.id === 'string' ? a.body.id : undefined;
        req.auditTarget = { ...(id ? { rotationId: id } : {}), accountSid: req.body.accountSid, detail: 'idempotent replay' };
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
      schema: { summary: 'List rotations, newest first', tags: ['rotations'], querystring: ListQuery, response: { 200: ListReply, ...errorResponses(400, 401, 403, 429) } },
    },
    async (req, reply) => {
      const { accountSid, status, limit, cursor } = req.query;
      if (cursor !== undefined && !decodeCursor(cursor)) throw new HttpError(400, 'invalid_cursor', 'cursor is not one this API returned');
      const page = await repo.summaryPage({ accountSid, status, limit: limit ?? 50, cursor });
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
        if (!result) throw new HttpError(404, 'rotation_not_found', `no rotation ${id}`);
        if (result.record) req.auditTarget = { rotationId: id, accountSid: result.record.accountSid };
        if (!result.ok) {
          const code = result.inFlight ? 'rotation_in_flight' : 'action_not_allowed';
          throw new HttpError(409, code, `${action} refused: ${result.reason}`, { id: result.inFlight ?? id });
        }
        return publicRotation(result.record);
      },
    );
  }
};
