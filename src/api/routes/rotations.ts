import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { publicRotation } from '../../domain/rotation.ts';
import { decodeCursor, type RotationRepository } from '../../state/rotations.ts';
import type { RotationService } from '../../service/rotations.ts';
import { HttpError } from '../errors.ts';
import { ErrorBody, IdParams, ListQuery, RotationT, StartBody, StartReply } from '../schemas.ts';

export interface RotationRoutesDeps {
  repo: RotationRepository;
  service: RotationService;
}

export const rotationRoutes: FastifyPluginAsyncTypebox<RotationRoutesDeps> = async (app, { repo, service }) => {
  app.post(
    '/v1/rotations',
    {
      config: { role: 'operator' },
      schema: {
        summary: 'Start a rotation of one subaccount\'s API key',
        body: StartBody,
        response: { 202: StartReply, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const result = await service.start({ ...req.body, trigger: 'api', requestedBy: req.principal?.name });
      if (!result.started) {
        throw new HttpError(409, 'rotation_in_flight', `rotation ${result.existing.id} is already in flight for ${req.body.accountSid}`, { id: result.existing.id });
      }
      const r = result.record;
      return reply.status(202).header('location', `/v1/rotations/${r.id}`).send({ id: r.id, accountSid: r.accountSid, status: r.status, step: r.step });
    },
  );

  app.get(
    '/v1/rotations',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List rotations, newest first',
        querystring: ListQuery,
        response: { 200: Type.Object({ items: Type.Array(RotationT), nextCursor: Type.Union([Type.String(), Type.Null()]) }) },
      },
    },
    async (req) => {
      const { accountSid, status, limit, cursor } = req.query;
      if (cursor !== undefined && !decodeCursor(cursor)) throw new HttpError(400, 'invalid_cursor', 'cursor is not one this API returned');
      const page = await repo.list({ accountSid, status, limit: limit ?? 50, cursor });
      return { items: page.items.map(publicRotation), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/v1/rotations/:id',
    { config: { role: 'viewer' }, schema: { summary: 'One rotation with its history', params: IdParams, response: { 200: RotationT, 404: ErrorBody } } },
    async (req) => {
      const rec = await repo.get(req.params.id);
      if (!rec) throw new HttpError(404, 'rotation_not_found', `no rotation ${req.params.id}`);
      return publicRotation(rec);
    },
  );

  for (const action of ['cancel', 'rollback'] as const) {
    app.post(
      `/v1/rotations/:id/${action}`,
      {
        config: { role: 'operator' },
        schema: {
          summary: action === 'cancel' ? 'Cancel a rotation before delete-old (the old key is restored)' : 'Roll a rotation back before delete-old',
          params: IdParams,
          response: { 200: RotationT, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req) => {
        const result = await service.undo(req.params.id, action, req.principal?.name);
        if (!result) throw new HttpError(404, 'rotation_not_found', `no rotation ${req.params.id}`);
        if (!result.ok) throw new HttpError(409, 'action_not_allowed', result.reason, { id: req.params.id });
        return publicRotation(result.record);
      },
    );
  }
};
