import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import { HttpError } from '../errors.ts';

export interface RateLimitOptions {
  max: number;
  windowMs: number;
}

type Limiter = ReturnType<FastifyInstance['createRateLimit']>;

/** Probes and scrapers: never limited (a limited readiness probe would take the pod out). */
function exempt(req: FastifyRequest): boolean {
  const url = req.routeOptions.url ?? '';
  return url === '/healthz' || url === '/readyz' || url === '/metrics' || url.startsWith('/docs');
}

/**
 * Two limits from @fastify/rate-limit, each `max` requests per window: per client address, checked
 * before authentication (so guessing tokens is slow), and per principal (token name or OIDC
 * subject), checked after it (so one client cannot starve the rest from many addresses). Counters
 * live in this process. Over the limit: 429 with the standard error body and Retry-After.
 */
export const rateLimitPlugin = fp(async (app: FastifyInstance, opts: RateLimitOptions) => {
  await app.register(rateLimit, { global: false, max: opts.max, timeWindow: opts.windowMs, cache: 10_000 });
  const byAddress = app.createRateLimit({ keyGenerator: (req) => `ip:${req.ip}` });
  const byPrincipal = app.createRateLimit({ keyGenerator: (req) => `principal:${req.principal?.name ?? ''}` });

  const check = async (limiter: Limiter, req: FastifyRequest, reply: FastifyReply, what: string): Promise<void> => {
    const r = await limiter(req);
    if (r.isAllowed) return;
    reply.header('x-ratelimit-limit', r.max).header('x-ratelimit-remaining', r.remaining).header('x-ratelimit-reset', r.ttlInSeconds);
    if (r.isExceeded) {
      reply.header('retry-after', r.ttlInSeconds);
      throw new HttpError(429, 'rate_limited', `too many requests ${what}: at most ${r.max} per ${Math.round(r.timeWindow / 1000)}s; retry in ${r.ttlInSeconds}s`);
    }
  };

  app.addHook('onRequest', async (req, reply) => {
    if (!exempt(req)) await check(byAddress, req, reply, 'from this address');
  });
  // Registered by app.ts after the auth plugin, so the principal is known.
  app.decorate('limitByPrincipal', async (req: FastifyRequest, reply: FastifyReply) => {
    if (req.principal) await check(byPrincipal, req, reply, `for "${req.principal.name}"`);
  });
});

declare module 'fastify' {
  interface FastifyInstance {
    limitByPrincipal(req: FastifyRequest, reply: FastifyReply): Promise<void>;
  }
}
