import type { FastifyBaseLogger } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

export type ReadinessCheck = () => Promise<void>;

export interface ComponentReadiness {
  ok: boolean;
  /** Why not: may name file paths, hosts, the Vault address. For the log and admins only. */
  message?: string;
  ms: number;
}

export interface Readiness {
  ok: boolean;
  checkedAt: string;
  components: Record<string, ComponentReadiness>;
}

export type ReadinessProbe = () => Promise<Readiness>;

const CHECK_TIMEOUT_MS = 3_000;

/**
 * Runs every readiness check at once (each within 3 s). Why a component is not ready goes to the
 * log — once per change, since probes come every few seconds — and to GET /v1/status (admin);
 * the public /readyz says only ok or not per component.
 */
export function readinessProbe(checks: Record<string, ReadinessCheck>, log: FastifyBaseLogger, now: () => number = Date.now): ReadinessProbe {
  const lastProblem = new Map<string, string>();
  return async () => {
    const components: Record<string, ComponentReadiness> = {};
    await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        const t0 = now();
        try {
          await withTimeout(check(), CHECK_TIMEOUT_MS);
          components[name] = { ok: true, ms: now() - t0 };
          if (lastProblem.delete(name)) log.info({ component: name }, `${name} is ready again`);
        } catch (err) {
          const message = (err as Error).message;
          components[name] = { ok: false, message, ms: now() - t0 };
          if (lastProblem.get(name) !== message) log.warn({ component: name, err: { message } }, `not ready: ${name}`);
          lastProblem.set(name, message);
        }
      }),
    );
    return { ok: Object.values(components).every((c) => c.ok), checkedAt: new Date(now()).toISOString(), components };
  };
}

const PublicComponent = Type.Object({ ok: Type.Boolean() }, { additionalProperties: false });
const ReadyReply = Type.Object({ status: Type.String(), checks: Type.Record(Type.String(), PublicComponent) });

/** Liveness answers while the process runs; readiness says which component is down, not why (that is GET /v1/status). */
export const healthRoutes: FastifyPluginAsyncTypebox<{ probe: ReadinessProbe }> = async (app, { probe }) => {
  app.get('/healthz', { schema: { summary: 'Liveness', tags: ['operations'], response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({ status: 'ok' as const }));

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: ok or not per component (Redis, the secret store); why is in the log and GET /v1/status',
        tags: ['operations'],
        response: { 200: ReadyReply, 503: ReadyReply },
      },
    },
    async (_req, reply) => {
      const r = await probe();
      // Built field by field: an error text (a path, the Vault address) must not reach an unauthenticated caller.
      const checks = Object.fromEntries(Object.entries(r.components).map(([name, c]) => [name, { ok: c.ok }]));
      return reply.status(r.ok ? 200 : 503).send({ status: r.ok ? 'ready' : 'not_ready', checks });
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
