import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { type AccountRecord, type AccountRepository } from '../../state/accounts.ts';
import type { CredentialRepository } from '../../state/credentials.ts';
import type { PolicyRepository } from '../../state/policies.ts';
import { isoTime } from '../../state/iso.ts';
import { entryOf } from '../../service/fleet.ts';
import { credentialStatus } from '../../service/fleet-status.ts';
import type { FleetAdmin } from '../../service/fleet-admin.ts';
import { FieldsError, HttpError } from '../errors.ts';
import { roleAtLeast } from '../tokens.ts';
import { AccountDetailT, AccountPatchBody, AccountPatchReply, AccountSidParams, AccountsQuery, AccountsReply, errorResponses, NoQuery } from '../schemas.ts';

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
      const page = await accounts.listJson({ limit: limit ?? 100, cursor: after }, now());
      // Each item is accountView's JSON text, built from the stored fields (AccountsReply's bytes:
      // test/api/accounts-page.test.ts compares them), so the page is joined as text: the schema's
      // serializer cost a quarter of the request's CPU on a page of 100, JSON.stringify of the
      // built objects most of what was left.
      const nextCursor = page.nextCursor ? JSON.stringify(Buffer.from(page.nextCursor, 'latin1').toString('base64url')) : 'null';
      return reply.type('application/json; charset=utf-8').send(`{"items":[${page.items.join(',')}],"nextCursor":${nextCursor}}` as never);
    },
  );
};

export interface AccountFleetDeps {
  accounts: Pick<AccountRepository, 'get'>;
  credentials: Pick<CredentialRepository, 'forAccount'>;
  policies: Pick<PolicyRepository, 'catalog'>;
  admin: FleetAdmin;
  now: () => number;
}

/**
 * One subaccount as the fleet sees it: labels, override, pause, and each managed credential with
 * the policy that applies and why (GET); labels, override and pause set by an operator (PATCH).
 */
export const accountFleetRoutes: FastifyPluginAsyncTypebox<AccountFleetDeps> = async (app, { accounts, credentials, policies, admin, now }) => {
  /** Undefined when Rotator knows neither the subaccount nor a credential of it. */
  const detail = async (sid: string, account?: AccountRecord) => {
    const [record, creds, catalog] = await Promise.all([account ?? accounts.get(sid), credentials.forAccount(sid), policies.catalog()]);
    if (!record && creds.length === 0) return undefined;
    const t = now();
    return {
      accountSid: sid,
      // A credential rotated before any inventory sync: the subaccount itself is not described yet.
      friendlyName: record?.friendlyName ?? '',
      status: record?.status ?? 'unknown',
      labels: record?.labels ?? [],
      paused: record?.paused ?? false,
      authTokenRotation: record?.authTokenRotation ?? false,
      policyOverride: record?.policyOverride ?? null,
      firstSeenAt: isoTime(record?.firstSeenAtMs ?? Math.min(...creds.map((c) => c.firstSeenAtMs))),
      credentials: creds.map((c) => credentialStatus(entryOf(c, record, catalog), t)),
    };
  };

  app.get(
    '/v1/accounts/:sid',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'One subaccount: labels, override, pause, and every managed credential with its key age, policy (and why), deadline and next slot',
        tags: ['accounts'],
        params: AccountSidParams,
        querystring: NoQuery,
        response: { 200: AccountDetailT, ...errorResponses(400, 401, 403, 404, 429) },
      },
    },
    async (req) => {
      const d = await detail(req.params.sid);
      if (!d) throw notFound(req.params.sid);
      return d;
    },
  );

  app.patch(
    '/v1/accounts/:sid',
    {
      config: { role: 'operator', audit: 'account.patch' },
      schema: {
        summary: "Set a subaccount's labels, policy override or pause",
        description:
          '`labels` replaces the labels ([] clears); each is a lower-case word or key=value (hipaa, tier=gold). `policy` names an existing policy, or null clears the override. `paused: true` stops the planner and batches from starting rotations of its credentials (one in flight finishes). ' +
          '`authTokenRotation: true` (admin role) allows rotating the account\'s Auth Token, which is off by default. ' +
          'Bad input is answered 400 `invalid_request` with `error.fields` naming every wrong field (`labels[2]`, `policy`). With MANAGE_NEW_SUBACCOUNTS=label, labelling an active subaccount starts managing its default credential. Audited with what changed.',
        tags: ['accounts'],
        params: AccountSidParams,
        querystring: NoQuery,
        body: AccountPatchBody,
        response: { 200: AccountPatchReply, ...errorResponses(400, 401, 403, 404, 413, 415, 429) },
      },
    },
    async (req) => {
      const sid = req.params.sid;
      req.auditTarget = { accountSid: sid };
      if (req.body.authTokenRotation !== undefined && (!req.principal || !roleAtLeast(req.principal.role, 'admin'))) {
        throw new HttpError(403, 'forbidden', `enabling or disabling Auth Token rotation needs the admin role; "${req.principal?.name ?? 'anonymous'}" is ${req.principal?.role ?? 'nobody'}`);
      }
      const r = await admin.patchAccount(sid, req.body);
      if (!r) throw notFound(sid);
      if (!r.ok) throw new FieldsError('invalid_request', r.errors);
      req.auditTarget = { accountSid: sid, detail: r.value.changes.join('; ') || 'no change' };
      return { ...(await detail(sid, r.value.account))!, changes: r.value.changes };
    },
  );
};

function notFound(sid: string): HttpError {
  return new HttpError(404, 'account_not_found', `Rotator knows no subaccount ${sid}: the inventory (synced from Twilio every ACCOUNT_SYNC_SECONDS) does not list it and no credential of it is managed`);
}
