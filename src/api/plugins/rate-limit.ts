import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isIPv6 } from 'node:net';
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
 * The per-address limit's key. An IPv6 client is usually given a whole /64 (SLAAC, privacy
 * addresses), so it could take a fresh address for every request: IPv6 addresses count per /64.
 * IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, a dual-stack socket) count as their IPv4 address.
 */
export function addressBucket(ip: string): string {
  if (!isIPv6(ip)) return ip;
  const groups = expandIpv6(ip);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`;
  }
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (`::` expanded, a trailing dotted IPv4 part folded in, zone dropped). */
function expandIpv6(ip: string): number[] {
  let text = ip.split('%')[0]!;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string): number[] => (part ? part.split(':').map((g) => parseInt(g, 16)) : []);
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/**
 * Two limits from @fastify/rate-limit, each `max` requests per window: per client address, checked
 * before authentication (so guessing tokens is slow), and per principal (token name or OIDC
 * subject), checked after it (so one client cannot starve the rest from many addresses). Counters
 * live in this process. Over the limit: 429 with the standard error body and Retry-After.
 */
export const rateLimitPlugin = fp(async (app: FastifyInstance, opts: RateLimitOptions) => {
  await app.register(rateLimit, { global: false, max: opts.max, timeWindow: opts.windowMs, cache: 10_000 });
  const byAddress = app.createRateLimit({ keyGenerator: (req) => `ip:${addressBucket(req.ip)}` });
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
