import type { FastifyBaseLogger } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

export type ReadinessCheck = () => Promise<void>;

export interface ComponentReadiness {
  ok: boolean;
  /** false: reported, but its failure leaves the process ready (`degraded`). */
  required: boolean;
  /** Why not: may name file paths, hosts, the Vault address. For the log and admins only. */
  message?: string;
  ms: number;
}

export interface Readiness {
  /** Every required component is ok. */
  ok: boolean;
  status: 'ready' | 'degraded' | 'not_ready';
  checkedAt: string;
  components: Record<string, ComponentReadiness>;
}

export type ReadinessProbe = () => Promise<Readiness>;

const CHECK_TIMEOUT_MS = 3_000;

/**
 * Runs every readiness check at once (each within 3 s). `required` checks must pass for the
 * process to be ready; `advisory` ones only make it `degraded` (no worker on the queue means
 * rotations wait, while the API still serves reads, so it should not leave the load balancer).
 * Why a component is not ready goes to the log — once when it starts failing and once when it
 * recovers, since probes come every few seconds — and to GET /v1/status (admin); the public
 * /readyz says only ok or fail per component.
 */
export function readinessProbe(
  checks: { required: Record<string, ReadinessCheck>; advisory?: Record<string, ReadinessCheck> },
  log: FastifyBaseLogger,
  now: () => number = Date.now,
): ReadinessProbe {
  const lastProblem = new Map<string, string>();
  const entries = [...Object.entries(checks.required).map(([n, c]) => [n, c, true] as const), ...Object.entries(checks.advisory ?? {}).map(([n, c]) => [n, c, false] as const)];
  return async () => {
    const components: Record<string, ComponentReadiness> = {};
    await Promise.all(
      entries.map(async ([name, check, required]) => {
        const t0 = now();
        try {
          await withTimeout(check(), CHECK_TIMEOUT_MS);
          components[name] = { ok: true, required, ms: now() - t0 };
          if (lastProblem.delete(name)) log.info({ check: name }, `readiness: ${name} recovered`);
        } catch (err) {
          const message = (err as Error).message;
          components[name] = { ok: false, required, message, ms: now() - t0 };
          if (lastProblem.get(name) !== message) log.warn({ check: name, err: { message } }, `readiness: ${name} failing`);
          lastProblem.set(name, message);
        }
      }),
    );
    const all = Object.values(components);
    const ok = all.every((c) => c.ok || !c.required);
    const status = !ok ? 'not_ready' : all.every((c) => c.ok) ? 'ready' : 'degraded';
    return { ok, status, checkedAt: new Date(now()).toISOString(), components };
  };
}

const Component = Type.Union([Type.Literal('ok'), Type.Literal('fail')]);
const ReadyReply = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('degraded'), Type.Literal('not_ready')]),
  checks: Type.Record(Type.String(), Component),
});

/** Liveness answers while the process runs; readiness says which component is down, not why (that is GET /v1/status). */
export const healthRoutes: FastifyPluginAsyncTypebox<{ probe: ReadinessProbe; draining?: () => boolean }> = async (app, { probe, draining }) => {
  app.get('/healthz', { schema: { summary: 'Liveness', tags: ['operations'], response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({ status: 'ok' as const }));

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: Redis, the secret store and Twilio (the admin credential) must be ok; no worker connected makes it degraded (still 200); 503 with `shutdown: fail` while the process drains after SIGTERM. Why is in the log and GET /v1/status',
        tags: ['operations'],
        response: { 200: ReadyReply, 503: ReadyReply },
      },
    },
    async (_req, reply) => {
      // Shutting down (SIGTERM): still serving what is in flight, but no longer taking new work.
      if (draining?.()) return reply.status(503).send({ status: 'not_ready' as const, checks: { shutdown: 'fail' as const } });
      const r = await probe();
      // Built field by field: an error text (a path, the Vault address) must not reach an unauthenticated caller.
      const checks = Object.fromEntries(Object.entries(r.components).map(([name, c]) => [name, c.ok ? ('ok' as const) : ('fail' as const)]));
      return reply.status(r.ok ? 200 : 503).send({ status: r.status, checks });
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
