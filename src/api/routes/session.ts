import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { errorResponses, NoQuery } from '../schemas.ts';
import { csrfTokenOf, type SessionStore, type SessionStreams } from '../../state/sessions.ts';
import { forgeryCheck, principalOfToken, readCookie, SESSION_COOKIE, type AuthOptions } from '../plugins/auth.ts';

export interface SessionRoutesDeps {
  auth: AuthOptions;
  store: SessionStore;
  streams: SessionStreams;
  ttlMs: number;
  now: () => number;
}

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
      req.principal = principal;
      const now = deps.now();
      const { id, record } = await deps.store.create(principal, deps.ttlMs, now);
      reply.header('set-cookie', cookie(req, id, Math.max(1, Math.floor((record.expiresAt - now) / 1000))));
      reply.header('cache-control', 'no-store');
      return reply.status(201).send({ name: record.name, role: record.role, expiresAt: new Date(record.expiresAt).toISOString(), csrfToken: csrfTokenOf(id) });
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
        response: { 200: Type.Union([Type.Object({ signedIn: Type.Literal(true), ...SessionReply.properties }), Type.Object({ signedIn: Type.Literal(false) })]), ...errorResponses(429) },
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store');
      const sid = readCookie(req.headers.cookie, SESSION_COOKIE);
      const record = sid !== undefined ? await deps.store.get(sid, deps.now()) : undefined;
      if (!sid || !record) return { signedIn: false as const };
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
