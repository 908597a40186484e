import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorResponses, StatusReply } from '../schemas.ts';
import type { ReadinessProbe } from './health.ts';

/** GET /v1/status (admin): readiness with the reasons /readyz keeps to itself. */
export const statusRoutes: FastifyPluginAsyncTypebox<{ probe: ReadinessProbe }> = async (app, { probe }) => {
  app.get(
    '/v1/status',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Readiness of each component with the reason when it is not ready (error texts may name paths and hosts)',
        tags: ['operations'],
        response: { 200: StatusReply, ...errorResponses(401, 403, 429) },
      },
    },
    async () => {
      const r = await probe();
      return { status: r.status, checkedAt: r.checkedAt, checks: r.components };
    },
  );
};
