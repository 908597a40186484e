import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { HttpError } from '../errors.ts';
import { roleAtLeast, verifyToken, type Principal, type Role, type TokenEntry } from '../tokens.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** The least role a route needs; routes without one are public (health, docs). */
    role?: Role;
  }
}

/**
 * Bearer tokens checked against hashed API_TOKENS, then the route's role. No tokens configured
 * means every protected route is refused: Rotator never runs open by accident.
 */
export const authPlugin = fp(async (app: FastifyInstance, opts: { tokens: readonly TokenEntry[] }) => {
  app.addHook('onRequest', async (req: FastifyRequest) => {
    const need = req.routeOptions.config?.role;
    if (!need) return;
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/.exec(header) : null;
    if (!match) throw new HttpError(401, 'unauthorized', 'send Authorization: Bearer <token>');
    const principal = verifyToken(opts.tokens, match[1] as string);
    if (!principal) throw new HttpError(401, 'unauthorized', 'unknown or revoked token');
    if (!roleAtLeast(principal.role, need)) throw new HttpError(403, 'forbidden', `this needs the ${need} role; token "${principal.name}" is ${principal.role}`);
    req.principal = principal;
  });
});
