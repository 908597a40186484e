import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { accountView, type AccountRepository } from '../../state/accounts.ts';
import { HttpError } from '../errors.ts';
import { AccountsQuery, AccountsReply, errorResponses } from '../schemas.ts';

const SID = /^AC[0-9a-f]{32}$/;

/** GET /v1/accounts: the managed subaccounts, by SID, with key age and when the next rotation is due. */
export const accountRoutes: FastifyPluginAsyncTypebox<{ accounts: AccountRepository; now: () => number }> = async (app, { accounts, now }) => {
  app.get(
    '/v1/accounts',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Managed subaccounts: current key, its age, last and next rotation, policy, overdue',
        tags: ['accounts'],
        querystring: AccountsQuery,
        response: { 200: AccountsReply, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (req, reply) => {
      const { limit, cursor } = req.query;
      let after: string | undefined;
      if (cursor !== undefined) {
        after = Buffer.from(cursor, 'base64url').toString('latin1');
        if (!SID.test(after)) throw new HttpError(400, 'invalid_cursor', 'cursor is not one this API returned');
      }
      const page = await accounts.list({ limit: limit ?? 100, cursor: after });
      const t = now();
      const items = page.items.map((a) => accountView(a, t));
      // accountView builds exactly AccountT's shape (test/unit/list-pages.test.ts compares the
      // bytes), so the native serializer stands in for the schema's, which cost a quarter of the
      // request's CPU on a page of 100.
      reply.type('application/json; charset=utf-8').serializer(JSON.stringify);
      return { items, nextCursor: page.nextCursor ? Buffer.from(page.nextCursor, 'latin1').toString('base64url') : null };
    },
  );
};
