import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { credentialId, isCredentialName, parseCredentialId } from '../../domain/credential.ts';
import type { AccountRepository } from '../../state/accounts.ts';
import type { ManagedCredential } from '../../state/credentials.ts';
import type { FleetOrder, FleetPageRow } from '../../state/fleet-page.ts';
import type { PolicyRepository } from '../../state/policies.ts';
import { entryOf } from '../../service/fleet.ts';
import { credentialStatus } from '../../service/fleet-status.ts';
import { filterOfQuery, matchesFleetFilter } from '../../service/fleet-filter.ts';
import { newCredentialErrors, type FleetAdmin } from '../../service/fleet-admin.ts';
import type { SubaccountChecker } from '../../service/subaccounts.ts';
import { FieldsError, HttpError } from '../errors.ts';
import { admitSubaccount } from '../admission.ts';
import { AccountSidParams, AddCredentialBody, CredentialParams, CredentialPatchBody, CredentialStatusT, CredentialsQuery, CredentialsReply, errorResponses, NoQuery } from '../schemas.ts';

export interface CredentialRoutesDeps {
  accounts: Pick<AccountRepository, 'get'>;
  /** A page of credentials with their subaccounts, in one round trip (state/fleet-page.ts). */
  fleetPage: (opts: { limit: number; cursor?: string; accountSid?: string; order?: FleetOrder }) => Promise<{ rows: FleetPageRow[]; nextCursor: string | null }>;
  policies: Pick<PolicyRepository, 'catalog'>;
  subaccounts: SubaccountChecker;
  admin: FleetAdmin;
  now: () => number;
}

const SID = /^AC[0-9a-f]{32}$/;

/**
 * Managed credentials: the fleet view (GET /v1/credentials, what the dashboard pages through),
 * another credential of a subaccount (POST), and a credential's override and pause (PATCH).
 */
export const credentialRoutes: FastifyPluginAsyncTypebox<CredentialRoutesDeps> = async (app, { accounts, fleetPage, policies, subaccounts, admin, now }) => {
  /** One credential's row, with its subaccount and the catalog read now. */
  const row = async (c: ManagedCredential) => {
    const [account, catalog] = await Promise.all([accounts.get(c.accountSid), policies.catalog()]);
    return credentialStatus(entryOf(c, account, catalog), now());
  };

  app.get(
    '/v1/credentials',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'The fleet: every managed credential with its key age, policy (and why), deadline, next slot, overdue and pause',
        description:
          'Ordered by id (`AC…/name`), or with `sort=deadline` by policy deadline (scheduled credentials only), either with `order=asc|desc`; paged by cursor (a cursor belongs to its sort and order: 400 `invalid_cursor` otherwise). A page reads `limit` credentials and answers those that pass the filters, so with filters a page may hold fewer items than `limit`, or none, while `nextCursor` is not null: follow it until it is null. ' +
          'Filters: `accountSid`, `label` (a subaccount label), `policy` (the policy that applies), `overdue`, `paused` (by the credential or its subaccount), `failed` (the last finished rotation failed), `inFlight` (a rotation of it is in flight; each item says which, in `inFlight`), `q` (search by subaccount SID, part of the id or of the key SID).',
        tags: ['credentials'],
        querystring: CredentialsQuery,
        response: { 200: CredentialsReply, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (req) => {
      const { inFlight, limit, cursor } = req.query;
      const byDeadline = req.query.sort === 'deadline';
      const order: FleetOrder = `${byDeadline ? 'deadline' : 'id'}${req.query.order === 'desc' ? '-desc' : ''}` as FleetOrder;
      // A search for a subaccount SID reads that subaccount's range of the index, not the fleet.
      const filter = filterOfQuery(req.query);
      if (!filter) return { items: [], nextCursor: null };
      const accountSid = filter.accountSid;
      let after: string | undefined;
      if (cursor !== undefined) {
        after = Buffer.from(cursor, 'base64url').toString('latin1');
        // By deadline the cursor is `<deadline ms>:<id>`; by id, the id.
        const m = /^(\d{1,16}):(.*)$/.exec(after);
        if (byDeadline !== (m !== null)) throw new HttpError(400, 'invalid_cursor', 'cursor belongs to another sort: start again without it');
        const ref = parseCredentialId(m ? m[2]! : after);
        if (!(m ? m[2]! : after).includes('/') || !SID.test(ref.accountSid) || !isCredentialName(ref.name)) throw new HttpError(400, 'invalid_cursor', 'cursor is not one this API returned');
      }
      // A page is one script (the credentials and their subaccounts) and the cached catalog (one GET of its version).
      const [page, catalog] = await Promise.all([fleetPage({ limit: limit ?? 100, cursor: after, accountSid, order }), policies.catalog()]);
      const t = now();
      const items = [];
      for (const { credential: c, account, inFlight: flying } of page.rows) {
        if (inFlight !== undefined && (flying !== null) !== inFlight) continue;
        const e = entryOf(c, account, catalog);
        if (!matchesFleetFilter(e, filter, t)) continue;
        const s = credentialStatus(e, t);
        items.push({ ...s, inFlight: flying });
      }
      return { items, nextCursor: page.nextCursor ? Buffer.from(page.nextCursor, 'latin1').toString('base64url') : null };
    },
  );

  app.post(
    '/v1/accounts/:sid/credentials',
    {
      config: { role: 'operator', audit: 'credential.add' },
      schema: {
        summary: 'Start managing another credential of a subaccount (one key per application and environment)',
        description:
          'Idempotent: 201 with the credential when it is new, 200 when a credential of that name and kind is managed already, 409 `credential_kind_conflict` when the name is managed as another kind. ' +
          'Only an active subaccount of the parent: 404 `subaccount_not_found`, 422 `not_a_subaccount` or `subaccount_inactive` otherwise. ' +
          'The new credential has no current key: its first rotation creates one (a bootstrap) and writes it to its secret path.',
        tags: ['credentials'],
        params: AccountSidParams,
        querystring: NoQuery,
        body: AddCredentialBody,
        response: { 200: CredentialStatusT, 201: CredentialStatusT, ...errorResponses(400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503) },
      },
    },
    async (req, reply) => {
      const sid = req.params.sid;
      const ref = { accountSid: sid, name: req.body.name };
      req.auditTarget = { accountSid: sid, detail: `credential ${req.body.name}` };
      // The input first: a bad name is refused without asking Twilio about the subaccount.
      const errors = newCredentialErrors(ref, req.body.kind);
      if (errors.length) throw new FieldsError('invalid_request', errors);
      await admitSubaccount(subaccounts, sid);
      const r = await admin.addCredential(ref, req.body.kind);
      if (!r.ok) throw new FieldsError('invalid_request', r.errors);
      if ('conflict' in r.value) throw new HttpError(409, 'credential_kind_conflict', r.value.conflict);
      req.auditTarget = { accountSid: sid, detail: `credential ${credentialId(ref)} ${r.value.created ? 'now managed' : 'already managed'}` };
      return reply.status(r.value.created ? 201 : 200).send(await row(r.value.credential));
    },
  );

  app.patch(
    '/v1/accounts/:sid/credentials/:name',
    {
      config: { role: 'operator', audit: 'credential.patch' },
      schema: {
        summary: "Set a credential's policy override or pause",
        description:
          '`policy` names an existing policy (the most specific assignment, over the account\'s override and labels), or null clears it. `paused: true` stops the planner and batches from starting its rotations. ' +
          'Bad input is answered 400 `invalid_request` with `error.fields`. 404 when the credential is not managed. Audited with what changed.',
        tags: ['credentials'],
        params: CredentialParams,
        querystring: NoQuery,
        body: CredentialPatchBody,
        response: { 200: CredentialStatusT, ...errorResponses(400, 401, 403, 404, 413, 415, 429) },
      },
    },
    async (req) => {
      const ref = { accountSid: req.params.sid, name: req.params.name };
      req.auditTarget = { accountSid: ref.accountSid, detail: `credential ${ref.name}` };
      const r = await admin.patchCredential(ref, req.body);
      if (!r) throw new HttpError(404, 'credential_not_found', `${credentialId(ref)} is not a managed credential (POST /v1/accounts/${ref.accountSid}/credentials starts managing it)`);
      if (!r.ok) throw new FieldsError('invalid_request', r.errors);
      req.auditTarget = { accountSid: ref.accountSid, detail: `credential ${ref.name}: ${r.value.changes.join('; ') || 'no change'}` };
      return row(r.value.credential);
    },
  );
};
