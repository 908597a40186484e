import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { KEY_SID } from '../../domain/compliance.ts';
import type { ComplianceReader, ComplianceFilter } from '../../service/compliance.ts';
import { deleteSprawlKey, type SprawlKeyDeps } from '../../service/sprawl-keys.ts';
import type { ComplianceFacts, ScanStatus } from '../../state/compliance.ts';
import { HttpError } from '../errors.ts';
import { ActionBody, ComplianceQuery, ComplianceReply, errorResponses, NoQuery, ScanReply, SprawlKeyBody, SprawlKeyParams, SprawlKeyReply } from '../schemas.ts';

export interface ComplianceRoutesDeps {
  reader: ComplianceReader;
  facts: ComplianceFacts;
  sprawl: SprawlKeyDeps;
  now: () => number;
}

const CREDENTIAL_CURSOR = /^AC[0-9a-f]{32}\/[a-z0-9][a-z0-9_-]{0,62}$/;
const SID = /^AC[0-9a-f]{32}$/;

/**
 * A report page's JSON (ComplianceReply, its fields in the schema's order) around `itemsJson`. The
 * native serializer stands in for the schema's, which would pick each item's anyOf branch by
 * running a validator on it.
 */
export function replyText(t: number, state: { summary: unknown; lastFinishedAt: string | null } & Record<string, unknown>, section: string, itemsJson: string, nextCursor: string | null): string {
  const { summary, ...scan } = state;
  return `{"generatedAt":"${new Date(t).toISOString()}","scan":${JSON.stringify(scan)},"summary":${JSON.stringify(summary ?? null)},"summaryAsOf":${JSON.stringify(scan.lastFinishedAt)},"section":${JSON.stringify(section)},"items":${itemsJson},"nextCursor":${JSON.stringify(nextCursor)}}`;
}

/** Whether the client asked for CSV: `text/csv` accepted, and not after `application/json`. */
function wantsCsv(accept: string | undefined): boolean {
  if (!accept) return false;
  const types = accept.split(',').map((t) => t.split(';')[0]!.trim().toLowerCase());
  const csv = types.indexOf('text/csv');
  const json = types.indexOf('application/json');
  return csv >= 0 && (json < 0 || csv < json);
}

/**
 * The compliance report (issue 13 item 6), from what the last compliance scan found (the report
 * never calls Twilio: a key list costs one request per subaccount); the sprawl-key delete, which
 * re-checks at Twilio and in the store right before it deletes; and an on-demand scan.
 */
export const complianceRoutes: FastifyPluginAsyncTypebox<ComplianceRoutesDeps> = async (app, { reader, facts, sprawl, now }) => {
  async function scanState(t: number) {
    return scanStateOf(await facts.status(), t);
  }
  function scanStateOf(s: ScanStatus, t: number) {
    return {
      lastStartedAt: s.last?.startedAt ?? null,
      lastFinishedAt: s.last?.finishedAt ?? null,
      ageSeconds: s.last ? Math.max(0, Math.floor((t - Date.parse(s.last.finishedAt)) / 1000)) : null,
      subaccounts: s.last?.subaccounts ?? null,
      notListed: s.last?.notListed ?? null,
      running: s.running,
      requestedAt: s.requestedAtMs === null ? null : new Date(s.requestedAtMs).toISOString(),
      summary: s.last?.summary ?? null,
    };
  }

  app.get(
    '/v1/compliance',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Compliance report: per credential its policy, key age, last rotation, next due, overdue; per subaccount the key sprawl; totals',
        description:
          'Built from the last compliance scan (COMPLIANCE_SCAN_SECONDS, or POST /v1/compliance/scan): `scan` says when it ran, each row when its subaccount was read (`scannedAt`). ' +
          '`section=credentials` (default) pages the managed credentials by id; `section=subaccounts` pages the subaccounts by SID with their sprawl keys (`sprawl=true`: only those with sprawl or leftover keys). ' +
          'Filters on credentials: `overdue`, `label`, `policy`; a filtered page examines at most 1,000 credentials, so it may hold fewer than `limit` rows (even none) and still have a `nextCursor`: follow it until null. ' +
          '`summary` is the whole fleet as of the last scan (`summaryAsOf`), unfiltered. ' +
          'With `Accept: text/csv` the whole report is streamed as one CSV table (RFC 4180; a `subaccount` record, its `credential` records, then its `sprawl-key` and `leftover-key` records), filters applied, paging ignored; the `compliance-scanned-at` header says when the last scan finished.',
        tags: ['compliance'],
        querystring: ComplianceQuery,
        response: { 200: ComplianceReply, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (req, reply) => {
      const { section = 'credentials', limit = 100, cursor, overdue, label, policy, sprawl: sprawlOnly } = req.query;
      const t = now();
      const filter: ComplianceFilter = { ...(overdue !== undefined ? { overdue } : {}), ...(label !== undefined ? { label } : {}), ...(policy !== undefined ? { policy } : {}) };
      if (wantsCsv(req.headers.accept)) {
        const scan = await facts.lastScan();
        const day = new Date(t).toISOString().slice(0, 10);
        return reply
          .type('text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="rotator-compliance-${day}.csv"`)
          .header('compliance-scanned-at', scan?.finishedAt ?? 'never')
          .header('cache-control', 'no-store')
          .send(Readable.from(reader.csv({ filter, now: t })) as never);
      }
      if (section === 'subaccounts' && (overdue !== undefined || policy !== undefined)) throw new HttpError(400, 'invalid_request', 'overdue and policy filter credentials: use them with section=credentials');
      if (section === 'credentials' && sprawlOnly !== undefined) throw new HttpError(400, 'invalid_request', 'sprawl filters subaccounts: use it with section=subaccounts');
      if (section === 'subaccounts' && label !== undefined) throw new HttpError(400, 'invalid_request', 'label filters credentials: use it with section=credentials');
      let after: string | undefined;
      if (cursor !== undefined) {
        after = Buffer.from(cursor, 'base64url').toString('latin1');
        if (!(section === 'credentials' ? CREDENTIAL_CURSOR : SID).test(after)) throw new HttpError(400, 'invalid_cursor', 'cursor is not one this API returned for this section');
      }
      const cursorOf = (next: string | null) => (next ? Buffer.from(next, 'latin1').toString('base64url') : null);
      if (section === 'credentials') {
        // The scan's status comes in the page's own round trip.
        const page = await reader.credentialPage({ limit, after, filter, now: t, withScan: true });
        const state = scanStateOf(page.scan!, t);
        // The rows come rendered (their JSON text, kept between requests while their inputs hold),
        // so the page is joined as text: ComplianceReply's bytes, as the schema's serializer would
        // write them (test/unit/compliance-page.test.ts), without building or serialising 100 rows.
        return reply.type('application/json; charset=utf-8').send(replyText(t, state, 'credentials', `[${page.rows.join(',')}]`, cursorOf(page.nextCursor)) as never);
      }
      const [state, page] = await Promise.all([scanState(t), reader.subaccountPage({ limit, after, sprawlOnly: sprawlOnly === true, now: t })]);
      return reply.type('application/json; charset=utf-8').send(replyText(t, state, 'subaccounts', JSON.stringify(page.items), cursorOf(page.nextCursor)) as never);
    },
  );

  app.post(
    '/v1/compliance/scan',
    {
      config: { role: 'admin', audit: 'compliance.scan' },
      schema: {
        summary: 'Ask the workers for a compliance scan now',
        description: 'A worker starts it within a second or two (one scan at a time across all processes; a request while one runs starts another after it). The scan lists every active subaccount\'s keys at Twilio, one request each, under TWILIO_MAX_CONCURRENCY.',
        tags: ['compliance'],
        querystring: NoQuery,
        body: ActionBody,
        response: { 202: ScanReply, ...errorResponses(400, 401, 403, 415, 429) },
      },
    },
    async (req, reply) => {
      const t = now();
      await facts.request(t);
      const { summary: _summary, ...scan } = await scanState(t);
      return reply.status(202).send({ requestedAt: new Date(t).toISOString(), scan });
    },
  );

  app.post(
    '/v1/accounts/:sid/keys/:keySid/delete',
    {
      config: { role: 'admin', audit: 'compliance.key.delete' },
      schema: {
        summary: 'Delete a sprawl key: one at Twilio that Rotator did not create and that no store stage holds',
        description:
          '`confirm` must repeat the key SID (400 `confirmation_required` otherwise). Checked right before the delete, at Twilio and in the store, not from the report: ' +
          '409 `key_in_store` for the current, pending or previous key of any credential of the subaccount; 409 `rotator_key` for a key Rotator created for a rotation on record (it deletes those itself); ' +
          '409 `subaccount_closed`; 409 `keys_unknown` when Twilio did not list the keys; 404 `key_not_found` when Twilio does not list this key. Every request is audited with the key SID. ' +
          'Needs an API process with the Twilio admin credential (503 `twilio_unavailable` otherwise).',
        tags: ['compliance'],
        params: SprawlKeyParams,
        querystring: NoQuery,
        body: SprawlKeyBody,
        response: { 200: SprawlKeyReply, ...errorResponses(400, 401, 403, 404, 409, 415, 429, 502, 503) },
      },
      // Before validation, so a request refused for its body is audited with the key it named too.
      preValidation: async (req) => {
        const { sid, keySid } = req.params as { sid?: unknown; keySid?: unknown };
        if (typeof sid === 'string' && SID.test(sid)) req.auditTarget = { accountSid: sid, ...(typeof keySid === 'string' && KEY_SID.test(keySid) ? { detail: `key ${keySid}` } : {}) };
      },
    },
    async (req) => {
      const { sid, keySid } = req.params;
      // Only a well-formed key SID goes into the audit entry (never raw input).
      req.auditTarget = { accountSid: sid, ...(KEY_SID.test(keySid) ? { detail: `key ${keySid}` } : {}) };
      const r = await deleteSprawlKey(sprawl, sid, { keySid, confirm: req.body.confirm });
      if (!r.ok) {
        if (KEY_SID.test(keySid)) req.auditTarget.detail = `key ${keySid}: refused (${r.code})`;
        throw new HttpError(r.status, r.code, r.reason);
      }
      req.auditTarget.detail = `key ${keySid}: ${r.result}`;
      req.log.warn({ accountSid: sid, keySid, result: r.result, by: req.principal?.name }, 'sprawl key deleted at Twilio');
      return { accountSid: sid, keySid, result: r.result };
    },
  );
};
