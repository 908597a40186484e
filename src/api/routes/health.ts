import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

export type ReadinessCheck = () => Promise<void>;

export interface HealthOptions {
  /** Each must pass for the process to be ready (otherwise 503). */
  checks: Record<string, ReadinessCheck>;
  /**
   * Reported, but a failure only makes the answer `degraded` (still 200): no worker on the queue
   * means rotations wait, while the API still serves reads, so it should not leave the load balancer.
   */
  advisory?: Record<string, ReadinessCheck>;
}

const Component = Type.Union([Type.Literal('ok'), Type.Literal('fail')]);

/**
 * Liveness answers while the process runs. Readiness answers ok/fail per component and nothing
 * more (it is public: no addresses, paths or error text); why a component fails goes to the log,
 * once when it starts failing and once when it recovers.
 */
export const healthRoutes: FastifyPluginAsyncTypebox<HealthOptions> = async (app, { checks, advisory = {} }) => {
  app.get('/healthz', { schema: { summary: 'Liveness', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({ status: 'ok' as const }));

  const failing = new Map<string, string>();
  const run = async (name: string, check: ReadinessCheck): Promise<'ok' | 'fail'> => {
    try {
      await withTimeout(check(), 3_000);
      if (failing.delete(name)) app.log.info({ check: name }, `readiness: ${name} recovered`);
      return 'ok';
    } catch (err) {
      const message = (err as Error).message;
      if (failing.get(name) !== message) app.log.warn({ check: name, err: { message } }, `readiness: ${name} failing`);
      failing.set(name, message);
      return 'fail';
    }
  };

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: Redis, the secret store, Twilio (the admin credential) and whether a worker is connected',
        response: { '2xx': Type.Object({ status: Type.Union([Type.Literal('ready'), Type.Literal('degraded'), Type.Literal('not_ready')]), checks: Type.Record(Type.String(), Component) }) },
      },
    },
    async (_req, reply) => {
      const entries = [...Object.entries(checks).map(([n, c]) => [n, c, true] as const), ...Object.entries(advisory).map(([n, c]) => [n, c, false] as const)];
      const results = await Promise.all(entries.map(async ([name, check, required]) => ({ name, required, result: await run(name, check) })));
      const ready = results.every((r) => !r.required || r.result === 'ok');
      const complete = results.every((r) => r.result === 'ok');
      const status = !ready ? 'not_ready' : complete ? 'ready' : 'degraded';
      return reply.status(ready ? 200 : 503).send({ status, checks: Object.fromEntries(results.map((r) => [r.name, r.result])) });
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
