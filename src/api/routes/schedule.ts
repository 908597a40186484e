import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Planner } from '../../service/planner.ts';
import { errorResponses, ScheduleQuery, ScheduleReply, SchedulePauseBody, SchedulePauseReply } from '../schemas.ts';

/**
 * The planner: its state and forecast (viewer), and the fleet-wide pause (admin, audited). A pause
 * stops new scheduled starts from the next tick; rotations in flight finish. Batches and manual
 * rotations are not the planner's and are not stopped by it.
 */
export const scheduleRoutes: FastifyPluginAsyncTypebox<{ planner: Pick<Planner, 'view' | 'pause' | 'resume' | 'paused'> }> = async (app, { planner }) => {
  app.get(
    '/v1/schedule',
    {
      config: { role: 'viewer' },
      schema: {
        summary: "The planner's state (pause, last tick, due, overdue, in flight, held back after failures) and a forecast: what rotates on each of the next `days` days, per policy",
        tags: ['schedule'],
        querystring: ScheduleQuery,
        response: { 200: ScheduleReply, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (req) => planner.view(req.query.days ?? 14),
  );

  app.post(
    '/v1/schedule/pause',
    {
      config: { role: 'admin', audit: 'schedule.pause' },
      schema: {
        summary: 'Pause every scheduled rotation, fleet-wide (rotations in flight finish; manual rotations and batches are not affected)',
        tags: ['schedule'],
        body: SchedulePauseBody,
        response: { 200: SchedulePauseReply, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (req) => {
      const by = req.principal?.name ?? 'unknown';
      req.auditTarget = { detail: `fleet-wide pause: ${req.body.reason}` };
      return { paused: await planner.pause(by, req.body.reason) };
    },
  );

  app.post(
    '/v1/schedule/resume',
    {
      config: { role: 'admin', audit: 'schedule.resume' },
      schema: {
        summary: 'End the fleet-wide pause: the next tick starts what is due, most overdue first, paced by the per-tick budget',
        tags: ['schedule'],
        body: SchedulePauseBody,
        response: { 200: SchedulePauseReply, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (req) => {
      const was = await planner.paused();
      await planner.resume();
      req.auditTarget = { detail: `fleet-wide resume${was ? ` (paused by ${was.by} at ${was.at})` : ' (was not paused)'}: ${req.body.reason}` };
      return { paused: null };
    },
  );
};
