import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { isRedisStreamId, type AuditLog } from '../../state/audit.ts';
import { HttpError } from '../errors.ts';
import { AuditExportQuery, AuditQuery, AuditReply, errorResponses } from '../schemas.ts';

/** GET /v1/audit (newest first, paged) and GET /v1/audit/export (JSON lines, oldest first, streamed). Admin only. */
export const auditRoutes: FastifyPluginAsyncTypebox<{ audit: AuditLog }> = async (app, { audit }) => {
  app.get(
    '/v1/audit',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Audit entries, newest first: API actions and rotation step transitions, hash-chained',
        description: 'Filtered pages may hold fewer than `limit` entries: keep following `nextCursor` until it is null.',
        tags: ['audit'],
        querystring: AuditQuery,
        response: { 200: AuditReply, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (req) => {
      const { accountSid, rotationId, since, limit, cursor } = req.query;
      if (cursor && !isRedisStreamId(cursor)) throw new HttpError(400, 'invalid_cursor', `cursor ${cursor} is not a stream id (each part at most 18446744073709551615)`);
      return audit.list({ accountSid, rotationId, sinceMs: sinceMs(since), limit: limit ?? 100, cursor });
    },
  );

  app.get(
    '/v1/audit/export',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'The audit trail as JSON lines (application/x-ndjson), oldest first, with prev and hash on every line',
        description: 'An unfiltered export can be checked offline: npm run audit:verify -- --file <export>.',
        tags: ['audit'],
        querystring: AuditExportQuery,
        response: {
          200: { description: 'one audit entry per line', content: { 'application/x-ndjson': { schema: { type: 'string' } } } },
          ...errorResponses(400, 401, 403, 429),
        },
      },
    },
    async (req, reply) => {
      const { accountSid, rotationId, since } = req.query;
      const entries = audit.entries({ accountSid, rotationId, sinceMs: sinceMs(since) });
      const lines = (async function* () {
        for await (const e of entries) yield `${JSON.stringify(e)}\n`;
      })();
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      return reply
        .type('application/x-ndjson; charset=utf-8')
        .header('content-disposition', `attachment; filename="rotator-audit-${stamp}.jsonl"`)
        .send(Readable.from(lines) as never);
    },
  );
};

function sinceMs(since: string | undefined): number | undefined {
  if (since === undefined) return undefined;
  const ms = Date.parse(since);
  if (!Number.isFinite(ms)) throw new HttpError(400, 'invalid_request', `since must be an ISO 8601 date or date-time (got "${since.slice(0, 40)}")`);
  return ms;
}
