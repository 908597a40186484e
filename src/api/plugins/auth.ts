import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { HttpError } from '../errors.ts';
import { looksLikeJwt, type OidcVerifier } from '../oidc.ts';
import { roleAtLeast, verifyToken, type Principal, type Role, type TokenEntry } from '../tokens.ts';
import { csrfTokenOf, type SessionStore } from '../../state/sessions.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    /** Set when the request was authenticated by the dashboard's session cookie (never logged). */
    sessionId?: string;
    /** For a long request authenticated by a session (the event stream): whether the session still stands. */
    sessionAlive?: () => Promise<boolean>;
  }
  interface FastifyContextConfig {
    /** The least role a route needs; routes without one are public (health, metrics, docs). */
    role?: Role;
  }
}

/** The dashboard's session cookie. `__Host-` where served over TLS would pin it further; the name stays one for both. */
export const SESSION_COOKIE = 'rotator_session';
export const CSRF_HEADER = 'x-csrf-token';

export interface AuthOptions {
  tokens: readonly TokenEntry[];
  /** Bearer JWTs from an SSO provider, when OIDC is configured. */
  oidc?: OidcVerifier;
  /** The dashboard's cookie sessions (absent: Bearer only). */
  sessions?: { store: SessionStore; now: () => number };
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** One cookie's value from a Cookie header, or undefined (no cookie parser for one name). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** This request's own origin (scheme, host and port as the client addressed it). */
export function ownOrigin(req: FastifyRequest): string {
  return `${req.protocol}://${req.host}`;
}

/**
 * A browser sends cookies with requests that other sites make it send; a state-changing request
 * on a cookie is honoured only from this origin (the Origin header, or Sec-Fetch-Site where a
 * browser left Origin out) and with the session's CSRF token, which only a page of this origin can
 * read. Either alone would do against today's browsers; both are cheap.
 */
export function forgeryCheck(req: FastifyRequest, sessionId: string | undefined): void {
  const origin = req.headers.origin;
  if (origin !== undefined ? origin !== ownOrigin(req) : req.headers['sec-fetch-site'] !== 'same-origin') {
    throw new HttpError(403, 'cross_origin_refused', 'a request authenticated by the session cookie must come from the dashboard\'s own origin');
  }
  if (sessionId === undefined) return;
  const sent = req.headers[CSRF_HEADER];
  const want = Buffer.from(csrfTokenOf(sessionId));
  if (typeof sent !== 'string' || sent.length !== want.length || !timingSafeEqual(Buffer.from(sent), want)) {
    throw new HttpError(403, 'csrf_token_invalid', `send the session's CSRF token in the ${CSRF_HEADER} header (GET /v1/session answers it)`);
  }
}

/** A bearer token (an API token or, with OIDC, a JWT) to its principal, or the error to answer. */
export async function principalOfToken(opts: AuthOptions, token: string): Promise<Principal> {
  if (opts.oidc && looksLikeJwt(token)) {
    const result = await opts.oidc(token);
    if (!result.ok) throw new HttpError(result.status, result.code, result.message);
    return result.principal;
  }
  const principal = token.length <= 512 ? verifyToken(opts.tokens, token) : undefined;
  if (!principal) throw new HttpError(401, 'unauthorized', 'unknown or revoked token');
  return principal;
}

/**
 * Bearer tokens checked against hashed API_TOKENS (or, for JWTs, against the OIDC provider's
 * keys), then the route's role. Without an Authorization header, the dashboard's session cookie
 * (state/sessions.ts), with the forgery check on anything that changes state. No tokens configured
 * and no OIDC means every protected route is refused: Rotator never runs open by accident.
 * Messages name the principal, never the token.
 */
export const authPlugin = fp(async (app: FastifyInstance, opts: AuthOptions) => {
  app.decorateRequest('principal', undefined);
  app.decorateRequest('sessionId', undefined);
  app.decorateRequest('sessionAlive', undefined);
  app.addHook('onRequest', async (req: FastifyRequest) => {
    const need = req.routeOptions.config?.role;
    if (!need) return;
    const header = req.headers.authorization;
    const sessions = opts.sessions;
    if (header === undefined && sessions) {
      const sid = readCookie(req.headers.cookie, SESSION_COOKIE);
      if (sid !== undefined) {
        const record = await sessions.store.get(sid, sessions.now());
        if (!record) throw new HttpError(401, 'session_ended', 'the session has ended or expired: sign in again');
        if (!SAFE_METHODS.has(req.method)) forgeryCheck(req, sid);
        req.principal = { name: record.name, role: record.role, expiresAt: record.expiresAt };
        req.sessionId = sid;
        req.sessionAlive = async () => (await sessions.store.get(sid, sessions.now())) !== undefined;
        if (!roleAtLeast(record.role, need)) throw new HttpError(403, 'forbidden', `this needs the ${need} role; "${record.name}" is ${record.role}`);
        return;
      }
    }
    const match = typeof header === 'string' ? /^Bearer ([A-Za-z0-9._~+/=-]{1,8192})$/.exec(header) : null;
    if (!match) throw new HttpError(401, 'unauthorized', 'send Authorization: Bearer <token>');
    const principal = await principalOfToken(opts, match[1] as string);
    req.principal = principal;
    if (!roleAtLeast(principal.role, need)) throw new HttpError(403, 'forbidden', `this needs the ${need} role; "${principal.name}" is ${principal.role}`);
  });
});
