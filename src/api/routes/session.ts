import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Principal } from '../tokens.ts';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { errorResponses, NoQuery } from '../schemas.ts';
import { csrfTokenOf, type SessionStore, type SessionStreams } from '../../state/sessions.ts';
import { forgeryCheck, principalOfToken, readCookie, SESSION_COOKIE, type AuthOptions } from '../plugins/auth.ts';
import { HttpError } from '../errors.ts';
import { SIGN_IN_TTL_SECONDS, type OidcSignIn } from '../oidc.ts';
import { OIDC_CALLBACK_PATH } from '../../config.ts';

export interface SessionRoutesDeps {
  auth: AuthOptions;
  store: SessionStore;
  streams: SessionStreams;
  ttlMs: number;
  now: () => number;
  /** SSO sign-in (OIDC_CLIENT_ID …): GET /v1/session/oidc and its callback; absent, they answer 404. */
  oidcSignIn?: OidcSignIn;
}

/** The cookie that binds an SSO sign-in to the browser that started it (Lax: the provider's redirect back is a cross-site navigation). */
const SIGN_IN_COOKIE = 'rotator_oidc';

const SessionBody = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 8192, description: 'an API token (or, with OIDC, a JWT): exchanged, never stored' }) },
  { additionalProperties: false },
);

const SessionReply = Type.Object({
  name: Type.String(),
  role: Type.String(),
  expiresAt: Type.String(),
  csrfToken: Type.String({ description: 'send it as x-csrf-token with every request that changes something' }),
});

function cookie(req: FastifyRequest, value: string, maxAgeSeconds: number): string {
  // Secure where the client reached us over TLS (directly or through a trusted proxy).
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${req.protocol === 'https' ? '; Secure' : ''}`;
}

/**
 * The dashboard's sign-in (issue 14): POST /v1/session trades a pasted API token for an httpOnly,
 * SameSite=Strict session cookie whose session lives in Redis; GET /v1/session says who is signed
 * in and hands the page its CSRF token; DELETE /v1/session ends the session server-side.
 */
export const sessionRoutes: FastifyPluginAsyncTypebox<SessionRoutesDeps> = async (app, deps) => {
  app.post(
    '/v1/session',
    {
      config: { audit: 'session.create' },
      schema: {
        summary: 'Sign in to the dashboard: exchange an API token for a session cookie',
        description:
          'Answers 201 with who signed in and the CSRF token, and sets an httpOnly, SameSite=Strict cookie (Secure over TLS). The token is checked as a Bearer token would be and is not kept. ' +
          'From a browser, only the dashboard\'s own origin may sign in (403 otherwise).',
        tags: ['session'],
        querystring: NoQuery,
        body: SessionBody,
        response: { 201: SessionReply, ...errorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (req, reply) => {
      // Login CSRF: another site must not sign a browser in as someone else.
      if (req.headers.origin !== undefined || req.headers['sec-fetch-site'] !== undefined) forgeryCheck(req, undefined);
      const principal = await principalOfToken(deps.auth, req.body.token);
      return reply.status(201).send(await openSession(req, reply, principal));
    },
  );

  /** The session cookie and the reply that says who signed in: one path for a pasted token and for SSO. */
  const openSession = async (req: FastifyRequest, reply: FastifyReply, principal: Principal) => {
    req.principal = principal;
    const now = deps.now();
    const { id, record } = await deps.store.create(principal, deps.ttlMs, now);
    reply.header('set-cookie', cookie(req, id, Math.max(1, Math.floor((record.expiresAt - now) / 1000))));
    reply.header('cache-control', 'no-store');
    return { name: record.name, role: record.role, expiresAt: new Date(record.expiresAt).toISOString(), csrfToken: csrfTokenOf(id) };
  };

  const sso = deps.oidcSignIn;
  app.get(
    '/v1/session/oidc',
    {
      schema: {
        summary: 'Sign in to the dashboard through the identity provider (OIDC_* configured)',
        description:
          'Answers 302 to the provider\'s authorization endpoint (authorization code flow with PKCE, state and nonce) and sets a short-lived httpOnly cookie that binds the sign-in to this browser. ' +
          `404 \`sso_not_configured\` when OIDC_CLIENT_ID is not set; 503 when the provider's discovery document cannot be read. The provider sends the browser back to ${OIDC_CALLBACK_PATH}.`,
        tags: ['session'],
        querystring: NoQuery,
        response: { 302: Type.Null(), ...errorResponses(404, 429, 503) },
      },
    },
    async (req, reply) => {
      if (!sso) throw new HttpError(404, 'sso_not_configured', 'SSO sign-in is not configured (OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URL): sign in with an API token');
      const { location, binding } = await sso.start();
      reply.header('set-cookie', `${SIGN_IN_COOKIE}=${binding}; Path=/v1/session/oidc; HttpOnly; SameSite=Lax; Max-Age=${SIGN_IN_TTL_SECONDS}${req.protocol === 'https' ? '; Secure' : ''}`);
      reply.header('cache-control', 'no-store');
      return reply.redirect(location, 302);
    },
  );

  app.get(
    OIDC_CALLBACK_PATH,
    {
      config: { audit: 'session.create' },
      schema: {
        summary: 'Where the identity provider sends the browser back: the code is redeemed and a session cookie set',
        description:
          'Checks the state against the one this browser\'s sign-in sent, redeems the code with the PKCE verifier, checks the ID token (signature, issuer, audience, expiry, nonce) and takes the role from its OIDC_ROLE_CLAIM through OIDC_ROLE_MAP. ' +
          'Then sets the same session cookie as POST /v1/session and answers 303 to the dashboard. Refused: 400 `oidc_state_mismatch` / `oidc_nonce_mismatch` / `oidc_callback_invalid`, 401 `oidc_sign_in_unknown` (not started in this browser, used already or expired) / `oidc_refused` / `oidc_code_refused`, 403 when no claim value maps to a role. ' +
          'The query (code, state) is left out of request logs.',
        tags: ['session'],
        querystring: Type.Object({}, { additionalProperties: Type.String({ maxLength: 4096 }) }),
        response: { 303: Type.Null(), ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (req, reply) => {
      if (!sso) throw new HttpError(404, 'sso_not_configured', 'SSO sign-in is not configured');
      // Whatever the outcome, the sign-in's cookie has done its work.
      reply.header('set-cookie', `${SIGN_IN_COOKIE}=; Path=/v1/session/oidc; HttpOnly; SameSite=Lax; Max-Age=0`);
      const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '';
      const r = await sso.finish(readCookie(req.headers.cookie, SIGN_IN_COOKIE), query);
      if (!r.ok) throw new HttpError(r.status, r.code, r.message);
      await openSession(req, reply, r.principal);
      // Appended: the sign-in cookie's clearing above stays.
      return reply.redirect('/', 303);
    },
  );

  app.get(
    '/v1/session',
    {
      schema: {
        summary: 'Who is signed in on this session cookie, and its CSRF token',
        description: 'Public: without a live session it answers `signedIn: false` (the dashboard then shows its sign-in form, with no error in the browser\'s console).',
        tags: ['session'],
        querystring: NoQuery,
        response: { 200: Type.Union([Type.Object({ signedIn: Type.Literal(true), ...SessionReply.properties }), Type.Object({ signedIn: Type.Literal(false), sso: Type.Boolean({ description: 'whether GET /v1/session/oidc signs in through the identity provider' }) })]), ...errorResponses(429) },
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store');
      const sid = readCookie(req.headers.cookie, SESSION_COOKIE);
      const record = sid !== undefined ? await deps.store.get(sid, deps.now()) : undefined;
      if (!sid || !record) return { signedIn: false as const, sso: sso !== undefined };
      return { signedIn: true as const, name: record.name, role: record.role, expiresAt: new Date(record.expiresAt).toISOString(), csrfToken: csrfTokenOf(sid) };
    },
  );

  app.delete(
    '/v1/session',
    {
      config: { role: 'viewer', audit: 'session.delete' },
      schema: {
        summary: 'Sign out: the session ends server-side and its cookie is cleared',
        description: 'Needs the CSRF token and the dashboard\'s origin like every state-changing request on the cookie. A Bearer client has no session: 204 all the same.',
        tags: ['session'],
        querystring: NoQuery,
        response: { 204: Type.Null(), ...errorResponses(401, 403, 429) },
      },
    },
    async (req, reply: FastifyReply) => {
      if (req.sessionId) {
        await deps.store.delete(req.sessionId);
        deps.streams.endAll(req.sessionId);
      }
      reply.header('set-cookie', cookie(req, '', 0));
      return reply.status(204).send();
    },
  );
};
