import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { HttpError } from '../errors.ts';
import { looksLikeJwt, type OidcVerifier } from '../oidc.ts';
import { roleAtLeast, verifyToken, type Principal, type Role, type TokenEntry } from '../tokens.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** The least role a route needs; routes without one are public (health, metrics, docs). */
    role?: Role;
  }
}

export interface AuthOptions {
  tokens: readonly TokenEntry[];
  /** Bearer JWTs from an SSO provider, when OIDC is configured. */
  oidc?: OidcVerifier;
}

/**
 * Bearer tokens checked against hashed API_TOKENS (or, for JWTs, against the OIDC provider's
 * keys), then the route's role. No tokens configured and no OIDC means every protected route is
 * refused: Rotator never runs open by accident. Messages name the principal, never the token.
 */
export const authPlugin = fp(async (app: FastifyInstance, opts: AuthOptions) => {
  app.decorateRequest('principal', undefined);
  app.addHook('onRequest', async (req: FastifyRequest) => {
    const need = req.routeOptions.config?.role;
    if (!need) return;
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([A-Za-z0-9._~+/=-]{1,8192})$/.exec(header) : null;
    if (!match) throw new HttpError(401, 'unauthorized', 'send Authorization: Bearer <token>');
    const token = match[1] as string;
    let principal: Principal | undefined;
    if (opts.oidc && looksLikeJwt(token)) {
      const result = await opts.oidc(token);
      if (!result.ok) throw new HttpError(result.status, result.code, result.message);
      principal = result.principal;
    } else {
      principal = token.length <= 512 ? verifyToken(opts.tokens, token) : undefined;
      if (!principal) throw new HttpError(401, 'unauthorized', 'unknown or revoked token');
    }
    req.principal = principal;
    if (!roleAtLeast(principal.role, need)) throw new HttpError(403, 'forbidden', `this needs the ${need} role; "${principal.name}" is ${principal.role}`);
  });
});
