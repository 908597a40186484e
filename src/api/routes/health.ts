import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

export type ReadinessCheck = () => Promise<void>;

/** Liveness answers while the process runs; readiness says which dependency is down and how to fix it. */
export const healthRoutes: FastifyPluginAsyncTypebox<{ checks: Record<string, ReadinessCheck> }> = async (app, { checks }) => {
  app.get('/healthz', { schema: { summary: 'Liveness', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({ status: 'ok' as const }));

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: Redis and the secret store',
        response: { '2xx': Type.Object({ status: Type.String(), checks: Type.Record(Type.String(), Type.Object({ ok: Type.Boolean(), message: Type.Optional(Type.String()) })) }) },
      },
    },
    async (_req, reply) => {
      const results: Record<string, { ok: boolean; message?: string }> = {};
      await Promise.all(
        Object.entries(checks).map(async ([name, check]) => {
          try {
            await withTimeout(check(), 3_000);
            results[name] = { ok: true };
          } catch (err) {
            results[name] = { ok: false, message: (err as Error).message };
          }
        }),
      );
      const ok = Object.values(results).every((r) => r.ok);
      return reply.status(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not_ready', checks: results });
    },
  );
};

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e: unknown) => (clearTimeout(t), reject(e as Error)),
    );
  });
}
