import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { describeFieldErrors, inFlightCount, waveFailure } from '../../domain/batch.ts';
import { isoTime } from '../../state/iso.ts';
import { batchCounts, decodeBatchCursor, type StoredBatch } from '../../state/batches.ts';
import type { BatchAction, BatchService } from '../../service/batches.ts';
import { HttpError } from '../errors.ts';
import { IdempotencyStore, type StoredAnswer } from '../idempotency.ts';
import { ActionBody, BatchBody, BatchIdParams, BatchListQuery, BatchListReply, BatchT, errorResponses, ErrorBody, NoQuery, StartHeaders } from '../schemas.ts';

export interface BatchRoutesDeps {
  batches: BatchService;
  idempotency: IdempotencyStore;
}

const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : isoTime(ms));

/** A batch as the API shows it: waves counted from 1, times in ISO 8601, counts summed. */
export function batchView(b: StoredBatch, withHistory: boolean) {
  const counts = batchCounts(b);
  const inFlight = b.waves.reduce((n, w) => n + inFlightCount(w), 0);
  return {
    id: b.id,
    status: b.status,
    reason: b.reason,
    dryRun: b.dryRun,
    requestedBy: b.requestedBy,
    selector: b.selector,
    waves: b.waveSpec,
    maxFailureRate: b.maxFailureRate,
    total: b.total,
    counts: { started: counts.started, succeeded: counts.succeeded, failed: counts.failed, cancelled: counts.cancelled, skipped: counts.skipped, inFlight },
    currentWave: b.current + 1,
    progress: b.waves.map((w) => ({
      wave: w.index + 1,
      size: w.size,
      started: w.started,
      succeeded: w.succeeded,
      failed: w.failed,
      cancelled: w.cancelled,
      skipped: w.skipped,
      inFlight: inFlightCount(w),
      failureRate: waveFailure(w, b.maxFailureRate).rate,
      startedAt: iso(w.startedAt),
      endedAt: iso(w.endedAt),
      bakeUntil: iso(w.bakeUntil),
    })),
    halt: b.halt ? { wave: b.halt.wave + 1, reason: b.halt.reason, failed: b.halt.failed, counted: b.halt.counted, rate: b.halt.rate, at: isoTime(b.halt.at) } : null,
    pause: b.pause ? { at: isoTime(b.pause.at), by: b.pause.by } : null,
    cancel: b.cancel ? { at: isoTime(b.cancel.at), by: b.cancel.by, inFlight: b.cancel.inFlight, notStarted: b.cancel.notStarted } : null,
    createdAt: isoTime(b.createdAt),
    updatedAt: isoTime(b.updatedAt),
    finishedAt: iso(b.finishedAt),
    ...(withHistory ? { history: b.history.map((e) => ({ ...e, at: isoTime(e.at), ...(e.wave !== undefined ? { wave: e.wave + 1 } : {}) })) } : {}),
  };
}

const ACTION_SUMMARY: Record<BatchAction, string> = {
  pause: 'Pause a batch: no new rotation starts; those in flight run on and are counted',
  resume: 'Resume a paused batch where it left off',
  cancel: 'Cancel a batch: nothing more starts; rotations in flight are cancelled (undone) where still possible, else finish',
};

/** POST/GET /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/pause|resume|cancel. */
export const batchRoutes: FastifyPluginAsyncTypebox<BatchRoutesDeps> = async (app, { batches, idempotency }) => {
  app.post(
    '/v1/batches',
    {
      config: { role: 'operator', audit: 'batch.create' },
      schema: {
        summary: 'Rotate a selection of managed credentials in waves: a canary first, halting when a wave fails too often',
        description:
          'The selection is made from the fleet as it is now (active, unpaused subaccounts and credentials). 400 names the field that is wrong, including `selector: matches no credential that can be rotated`. ' +
          'Answers 202 with the planned batch; its runner starts at once on a worker. With an Idempotency-Key header, repeating the request (same key, same body) returns the first answer.',
        tags: ['batches'],
        headers: StartHeaders,
        body: BatchBody,
        response: { 202: BatchT, ...errorResponses(400, 401, 403, 409, 413, 415, 422, 429) },
      },
    },
    async (req, reply) => {
      const by = req.principal?.name ?? null;
      const scope = by ?? '';
      const key = req.headers['idempotency-key'];
      const fingerprint = key !== undefined ? IdempotencyStore.fingerprint('POST /v1/batches', req.body) : '';
      if (key !== undefined) {
        const claim = await idempotency.claim(scope, key, fingerprint);
        if (claim.kind === 'mismatch') throw new HttpError(422, 'idempotency_key_reused', 'this Idempotency-Key was used with a different request body; use a new key for a new request');
        if (claim.kind === 'in_progress') throw new HttpError(409, 'idempotency_in_progress', 'a request with this Idempotency-Key is still being processed; retry shortly');
        if (claim.kind === 'replay') {
          const id = typeof claim.answer.body.id === 'string' ? claim.answer.body.id : undefined;
          req.auditTarget = { ...(id ? { batchId: id } : {}), detail: 'idempotent replay' };
          return send(claim.answer, true);
        }
      }
      let answer: StoredAnswer;
      try {
        const created = await batches.create(req.body, by);
        if (!created.ok) throw new HttpError(400, 'invalid_request', describeFieldErrors(created.errors));
        const b = created.value;
        req.auditTarget = { batchId: b.id, detail: `${b.credentials.length} credentials in ${b.waves.length} waves${b.dryRun ? ', dry run' : ''}: ${b.reason}`.slice(0, 500) };
        const stored = await batches.get(b.id);
        answer = { status: 202, body: batchView(stored!, true), headers: { location: `/v1/batches/${b.id}` } };
      } catch (err) {
        // A refused request is no answer worth repeating: the client may fix it under the same key.
        if (key !== undefined) await idempotency.release(scope, key).catch(() => undefined);
        throw err;
      }
      if (key !== undefined) await idempotency.complete(scope, key, fingerprint, answer);
      return send(answer, false);

      function send(a: StoredAnswer, replayed: boolean) {
        if (replayed) reply.header('idempotent-replayed', 'true');
        for (const [h, v] of Object.entries(a.headers ?? {})) reply.header(h, v);
        return reply.status(202).send(a.body as never);
      }
    },
  );

  app.post(
    '/v1/batches/preview',
    {
      config: { role: 'operator' },
      schema: {
        summary: 'How many credentials a batch of this body would rotate now, without starting anything',
        description:
          'The same body as POST /v1/batches, checked and selected the same way (400 names a wrong field), so the count said before "rotate these N" is the batch\'s. ' +
          'With `selector: {filter: {…}}` (the fleet view\'s filters: q, accountSid, label, policy, overdue, failed) the selection is what GET /v1/credentials lists with those filters, less what cannot be rotated (`leftOut`, counted by why).',
        tags: ['batches'],
        querystring: NoQuery,
        body: BatchBody,
        response: {
          200: Type.Object({ total: Type.Integer({ description: 'credentials the batch would rotate' }), leftOut: Type.Record(Type.String(), Type.Integer(), { description: 'matched but not rotatable, by why' }) }),
          ...errorResponses(400, 401, 403, 413, 415, 429),
        },
      },
    },
    async (req) => {
      const selected = await batches.preview(req.body);
      if (!selected.ok) throw new HttpError(400, 'invalid_request', describeFieldErrors(selected.errors));
      return { total: selected.value.ids.length, leftOut: selected.value.leftOut };
    },
  );

  app.get(
    '/v1/batches',
    {
      config: { role: 'viewer' },
      schema: { summary: 'Batches, newest first (without their history)', tags: ['batches'], querystring: BatchListQuery, response: { 200: BatchListReply, ...errorResponses(400, 401, 403, 429) } },
    },
    async (req) => {
      const { limit, cursor } = req.query;
      if (cursor !== undefined && !decodeBatchCursor(cursor)) throw new HttpError(400, 'invalid_cursor', 'cursor is not one this API returned');
      const page = await batches.list({ limit: limit ?? 50, cursor });
      return { items: page.items.map((b) => batchView(b, false)), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/v1/batches/:id',
    {
      config: { role: 'viewer' },
      schema: { summary: 'One batch: status, progress per wave, counts, halt reason, history', tags: ['batches'], params: BatchIdParams, querystring: NoQuery, response: { 200: BatchT, ...errorResponses(400, 401, 403, 404, 429) } },
    },
    async (req) => {
      const b = await batches.get(req.params.id);
      if (!b) throw new HttpError(404, 'batch_not_found', `no batch ${req.params.id}`);
      return batchView(b, true);
    },
  );

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    app.post(
      `/v1/batches/:id/${action}`,
      {
        config: { role: 'operator', audit: `batch.${action}` },
        schema: {
          summary: ACTION_SUMMARY[action],
          description: "Answers the batch after the action (the same when it already held), or 409 saying why the batch's state forbids it.",
          tags: ['batches'],
          params: BatchIdParams,
          querystring: NoQuery,
          body: ActionBody,
          response: { 200: BatchT, 409: ErrorBody, ...errorResponses(400, 401, 403, 404, 415, 429) },
        },
      },
      async (req: FastifyRequest<{ Params: { id: string } }>) => {
        const id = req.params.id;
        req.auditTarget = { batchId: id };
        const r = await batches.act(id, action, req.principal?.name ?? null);
        if (!r) throw new HttpError(404, 'batch_not_found', `no batch ${id}`);
        if (!r.ok) throw new HttpError(409, 'action_not_allowed', `${action} refused: ${r.reason}`, { id });
        if (!r.changed) req.auditTarget = { batchId: id, detail: `already ${r.batch.status}` };
        return batchView(r.batch, true);
      },
    );
  }
};
